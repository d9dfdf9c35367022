#!/bin/sh
# Container entry point, shaped like the Traefik image's: flags alone run the router, a
# Switchyard command runs that command, anything else runs as given (a shell, for example).
set -e
case "$1" in
  ""|-*) set -- switchyard run "$@" ;;
  run|check|explain|healthcheck|demo|whoami|version) set -- switchyard "$@" ;;
esac
exec "$@"
