#!/usr/bin/env bash
# The optional mypyc build of the modules setup.py lists (issue #15), and the tests run
# against it. Installs what it lacks first: gcc, Python's headers, mypy (which ships mypyc).
#
#   .ci/compiled.sh test      # build into build/compiled, then run those modules' tests and
#                             # tests/unit/test_compiled.py (compiled against pure) on it
#   .ci/compiled.sh build     # only the build (what bench/compiled.py measures)
#   .ci/compiled.sh install   # compile in place, into src/ (make compiled; make pure undoes it)
#
# `test` and `build` leave src/ alone: the tests import build/compiled, where the sources
# are copied beside the extensions, through PYTHONPATH, so every other run on this checkout
# stays pure Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TREE=build/compiled
MODE="${1:-test}"

TESTS=(
  tests/unit/test_compiled.py
  tests/unit/test_clienthello.py tests/fuzz/test_clienthello_fuzz.py
  tests/unit/test_proxyproto.py tests/fuzz/test_proxyproto_fuzz.py tests/unit/test_proxy_tlvs.py
  tests/unit/test_postgres_detect.py tests/unit/test_preamble.py
  tests/unit/test_ipcheck.py
  tests/unit/test_rules_lexer.py tests/unit/test_rules_parser.py tests/unit/test_rules_matchers.py
  tests/unit/test_rules_rule.py tests/unit/test_rules_priority.py tests/fuzz/test_rule_parser_fuzz.py
  tests/unit/test_routing_table.py tests/unit/test_decision.py tests/unit/test_explain.py
  tests/integration/test_proxy_flow.py
)

apt_install() {
  echo "installing $*"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v gcc >/dev/null || apt_install gcc
# A pyenv or python.org build carries its headers; Debian's python3 needs python3-dev.
"$PYTHON" -c 'import pathlib, sys, sysconfig
sys.exit(not pathlib.Path(sysconfig.get_paths()["include"], "Python.h").exists())' \
  || apt_install python3-dev
"$PYTHON" -c 'import mypyc.build' 2>/dev/null || "$PYTHON" -m pip install -q mypy
describe() { "$PYTHON" -c 'from switchyard.compiled import describe; print(describe())'; }

start=$SECONDS
mkdir -p build
case "$MODE" in
  install)
    # mypy is not in pip's isolated build environment, so the build runs in this one.
    SWITCHYARD_COMPILE=1 "$PYTHON" -m pip install -q --no-build-isolation -e '.[test]'
    echo "compiled in place in $((SECONDS - start)) s: $(describe)"
    [[ "$(describe)" != "pure Python" ]] || { echo "the build stayed pure Python" >&2; exit 1; }
    exit 0 ;;
  build|test) ;;
  *) echo "usage: $0 [test|build|install]" >&2; exit 2 ;;
esac

rm -rf "$TREE"
SWITCHYARD_COMPILE=1 "$PYTHON" setup.py -q build_ext -j 2 --build-lib "$TREE" \
  >build/compile.log 2>&1 || { cat build/compile.log; exit 1; }
tar -C src --exclude='*.so' --exclude=__pycache__ -cf - switchyard | tar -C "$TREE" -xf -
echo "compiled in $((SECONDS - start)) s: $(PYTHONPATH="$TREE" describe)"
[[ "$MODE" == build ]] && exit 0

# SWITCHYARD_COMPILED_RUN: test_compiled.py fails, instead of skipping, when a module
# setup.py lists did not come out compiled.
start=$SECONDS
PYTHONPATH="$TREE" SWITCHYARD_COMPILED_RUN=1 "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
echo "compiled tests ran in $((SECONDS - start)) s"
