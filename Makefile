# Two entry points for newcomers: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install demo demo-tools test deps lint bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

# System tools the tests drive as real peers (openssl s_client, curl).
deps:
	@command -v openssl >/dev/null && command -v curl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl curl >/dev/null)

# The demo prints nc / openssl s_client commands to try: make sure they exist.
demo-tools:
	@command -v nc >/dev/null && command -v openssl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netcat-openbsd openssl >/dev/null)

demo: install demo-tools
	switchyard demo

# The relay scenarios run twice: zero-copy splice (the default on Linux) and the portable path.
test: install deps
	$(PYTHON) -m pytest -q -p no:cacheprovider
	SWITCHYARD_SPLICE=0 $(PYTHON) -m pytest -q -p no:cacheprovider \
	  tests/integration/test_proxy_flow.py tests/integration/test_services_lifecycle.py \
	  tests/e2e/test_lifecycle.py

lint:
	ruff check src tests
	mypy src
