# Switchyard in a container, used the way the Traefik image is: flags, TRAEFIK_* variables
# or /etc/traefik/traefik.yml configure it, and `healthcheck` asks its /ping.
#   docker build -t switchyard .
#   docker run --rm -p 80:80 -e TRAEFIK_ENTRYPOINTS_WEB_ADDRESS=:80 -e TRAEFIK_PING=true switchyard
ARG PYTHON=python:3.12-slim-bookworm
FROM ${PYTHON}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md /tmp/switchyard/
COPY src /tmp/switchyard/src
# One layer: the sources are gone from the image once installed.
RUN pip install --no-cache-dir /tmp/switchyard \
 && rm -rf /tmp/switchyard \
 && useradd --system --uid 65532 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin switchyard \
 && mkdir -p /etc/traefik
COPY deploy/docker/entrypoint.sh /usr/local/bin/switchyard-entrypoint

# Not root. Docker (20.10 and later) lets containers bind ports below 1024 without
# privileges; to read the Docker socket, add the socket's group (group_add in compose).
USER switchyard:switchyard
EXPOSE 80 443 8080
# Needs ping on (TRAEFIK_PING=true, or ping: {} in traefik.yml). Configured with flags only?
# Repeat them: healthcheck: test: ["CMD", "switchyard", "healthcheck", "--ping", ...].
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
  CMD ["switchyard", "healthcheck"]
ENTRYPOINT ["switchyard-entrypoint"]
CMD []
