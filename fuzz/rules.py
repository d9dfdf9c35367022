"""Atheris: any rule text parses or raises RuleError, and a parsed rule answers every connection.

    python fuzz/rules.py -atheris_runs=1000000      # first byte "2" picks the v2 syntax
"""

from _entry import load_properties, run

properties = load_properties("test_rule_parser_fuzz")

if __name__ == "__main__":
    run(properties.check_one_input,
        [b"3" + text.encode() for text in properties.REGRESSIONS]
        + [b"2" + text.encode() for text in properties.REGRESSIONS])
