"""The error raised for a rule that does not parse or whose matchers are invalid."""

from __future__ import annotations


class RuleError(ValueError):
    """A rule is invalid; the message names the rule, the position and the problem.

    ``offset`` is a 0-based index into ``rule`` (a character index, not bytes);
    ``line`` and ``column`` are 1-based and are what the message shows.
    """

    def __init__(self, rule: str, offset: int, problem: str) -> None:
        self.rule = rule
        self.offset = offset
        self.problem = problem
        self.line = rule.count("\n", 0, offset) + 1
        self.column = offset - (rule.rfind("\n", 0, offset) + 1) + 1
        where = f"column {self.column}"
        if "\n" in rule:
            where = f"line {self.line}, {where}"
        super().__init__(f"rule {rule}: {where}: {problem}")

    def __reduce__(self) -> tuple[type[RuleError], tuple[str, int, str]]:
        # The default reduction replays ``args`` (the message) into __init__, which needs three.
        return (RuleError, (self.rule, self.offset, self.problem))
