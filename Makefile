# Two entry points for newcomers: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install demo demo-tools test deps lint bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

# System tools the tests drive as real peers (openssl s_client, curl, Redis and etcd servers)
# and the browser the dashboard test drives through playwright (Debian's chromium).
deps:
	@command -v openssl >/dev/null && command -v curl >/dev/null && command -v redis-server >/dev/null && \
	  command -v etcd >/dev/null && command -v etcdctl >/dev/null && test -x /usr/bin/chromium || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl curl redis-server etcd-server etcd-client chromium >/dev/null)

# The demo prints nc / openssl s_client commands to try: make sure they exist.
demo-tools:
	@command -v nc >/dev/null && command -v openssl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netcat-openbsd openssl >/dev/null)

demo: install demo-tools
	switchyard demo

RELAY_TESTS = tests/integration/test_proxy_flow.py tests/integration/test_services_lifecycle.py \
	tests/e2e/test_lifecycle.py

# The relay scenarios run three ways: the default (splice once a stream is busy),
# splice from the first byte, and the portable path without splice.
test: install deps
	$(PYTHON) -m pytest -q -p no:cacheprovider
	SWITCHYARD_SPLICE=always $(PYTHON) -m pytest -q -p no:cacheprovider $(RELAY_TESTS)
	SWITCHYARD_SPLICE=0 $(PYTHON) -m pytest -q -p no:cacheprovider $(RELAY_TESTS)

lint:
	ruff check src tests
	mypy src
