# Two entry points for newcomers: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install demo test deps lint bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

# System tools the tests drive as real peers (openssl s_client, curl).
deps:
	@command -v openssl >/dev/null && command -v curl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl curl >/dev/null)

demo: install
	switchyard demo

test: install deps
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	ruff check src tests
	mypy src
