"""Atheris: the PROXY protocol reader is total, stable and answers NEED_MORE only for a prefix.

    python fuzz/proxyproto.py -atheris_runs=2000000
"""

from _entry import load_properties, run

properties = load_properties("test_proxyproto_fuzz")

if __name__ == "__main__":
    run(properties.check_one_input, properties.REGRESSIONS)
