# Two entry points for newcomers: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install demo demo-tools test test-portable deps lint bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

# Real peers the tests drive, as Debian packages: "command:package" pairs. Only
# what is missing is installed, so a machine that has everything skips apt.
TEST_TOOLS = openssl:openssl curl:curl nc:netcat-openbsd redis-server:redis-server \
	etcd:etcd-server etcdctl:etcd-client chromium:chromium haproxy:haproxy \
	pebble:pebble psql:postgresql-client pg_ctlcluster:postgresql \
	dockerd:docker.io busybox:busybox-static mariadbd:mariadb-server mariadb:mariadb-client \
	zooinspector:zookeeper postfix:postfix

deps:
	@missing=""; for pair in $(TEST_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# The demo prints nc / openssl s_client commands to try: make sure they exist.
demo-tools:
	@command -v nc >/dev/null && command -v openssl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netcat-openbsd openssl >/dev/null)

demo: install demo-tools
	switchyard demo

RELAY_TESTS = tests/integration/test_proxy_flow.py tests/integration/test_services_lifecycle.py \
	tests/e2e/test_lifecycle.py

# The whole suite runs on the fast engine (splice once a stream is busy); the relay
# scenarios again with splice from the first byte, and on the portable engine without
# splice, with the TLS termination, HTTP entry point and reload scenarios too (the
# whole suite on it as well is `make test-portable`: it would take CI past its time).
# Then the compiled modules' tests against a mypyc build, where a compiler is present.
PORTABLE_TESTS = $(RELAY_TESTS) tests/integration/test_tls_termination.py \
	tests/integration/test_http_entrypoints.py tests/integration/test_reload.py
test: install deps
	$(PYTHON) -m pytest -q -p no:cacheprovider
	SWITCHYARD_SPLICE=always $(PYTHON) -m pytest -q -p no:cacheprovider $(RELAY_TESTS)
	SWITCHYARD_ENGINE=portable SWITCHYARD_SPLICE=0 $(PYTHON) -m pytest -q -p no:cacheprovider \
	  $(PORTABLE_TESTS)
	PYTHON=$(PYTHON) .ci/compiled.sh test

test-portable: install deps
	SWITCHYARD_ENGINE=portable $(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	ruff check src tests
	mypy src

# Issue #15's optional mypyc build of the hot pure modules that setup.py lists.
# `compiled` compiles them in place, into src/ (what SWITCHYARD_COMPILE=1 pip install does);
# `pure` deletes the extensions again. `test-compiled` runs those modules' tests against a
# build in build/compiled and leaves src/ pure; `compiled-tree` is only that build, for
# bench/compiled.py.
.PHONY: compiled pure test-compiled compiled-tree
compiled:
	PYTHON=$(PYTHON) .ci/compiled.sh install

pure:
	find src -name '*.so' -delete
	rm -rf build/compiled

test-compiled:
	PYTHON=$(PYTHON) .ci/compiled.sh test

compiled-tree:
	PYTHON=$(PYTHON) .ci/compiled.sh build
