"""Default router priority for a rule, as Traefik computes it when none is configured."""

from __future__ import annotations

from switchyard.rules.errors import RuleError
from switchyard.rules.parser import MatcherCall, parse


def default_priority(text: str) -> int:
    """-1 for a lone ``HostSNI(`*`)``, else the rule's length in UTF-8 bytes.

    Negation is folded into the leaf before the check, so ``!HostSNI(`*`)`` is -1 as well;
    a rule that does not parse still gets its length.
    """
    try:
        tree = parse(text)
    except RuleError:
        tree = None
    if isinstance(tree, MatcherCall) and tree.name == "HostSNI" and tree.args == ("*",):
        return -1
    # surrogatepass: text that is not valid Unicode still has a length, it just never parses.
    return len(text.encode("utf-8", "surrogatepass"))


def default_http_priority(text: str) -> int:
    """An HTTP router's priority when none is configured: the rule's length in UTF-8 bytes.

    Unlike TCP there is no catch-all exception: ``Host(`*`)`` is 9, like any 9-byte rule.
    """
    return len(text.encode("utf-8", "surrogatepass"))
