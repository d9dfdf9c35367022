"""Atheris: the ClientHello reader is total, stable and answers NEED_MORE only for a prefix.

    python fuzz/clienthello.py -atheris_runs=2000000
"""

from _entry import load_properties, run

properties = load_properties("test_clienthello_fuzz")

if __name__ == "__main__":
    run(properties.check_one_input, properties.REGRESSIONS)
