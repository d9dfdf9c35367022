"""Compiled rules: parse and validate rule text once, then match connections quickly."""

from __future__ import annotations

from switchyard.rules.combine import compile_tree
from switchyard.rules.matchers import Predicate, build_matcher
from switchyard.rules.parser import AnyOf, MatcherCall, Node, host_sni_args, parse


class Rule:
    """A valid rule, compiled for one syntax.

    ``matches(meta)`` evaluates it (short-circuit, left to right). ``is_catch_all`` is Traefik's
    catchAll flag: the whole rule is one non-negated ``HostSNI(`*`)``. ``exact_hosts`` is set
    when the rule is only concrete HostSNI values joined by ``||`` (v3): then
    ``matches(meta)`` is exactly ``meta.sni.lower() in exact_hosts``, which lets a routing
    table index the rule by host. ``host_sni_values`` are the lower-cased HostSNI arguments,
    left to right, as Traefik's ParseHostSNI reports them.
    """

    __slots__ = (
        "exact_hosts",
        "host_sni_values",
        "is_catch_all",
        "matches",
        "sni_regexp",
        "syntax",
        "text",
        "tree",
    )

    def __init__(self, text: str, syntax: str, tree: Node, matches: Predicate) -> None:
        self.text = text
        self.syntax = syntax
        self.tree = tree
        # The compiled closure itself, so a match costs no extra method call.
        self.matches: Predicate = matches
        self.is_catch_all = _is_catch_all(tree)
        # v2 compares the SNI case-sensitively and also accepts the value's trailing-dot form,
        # which a lookup by lower-cased SNI cannot express; v2 rules are simply not indexed.
        self.exact_hosts = None if syntax == "v2" else _exact_hosts(tree)
        self.host_sni_values = tuple(value.lower() for value in host_sni_args(tree))
        # The pattern when the whole rule is one HostSNIRegexp (v3): routing tables test
        # many such rules in one RE2 set instead of one search each.
        self.sni_regexp: str | None = (
            tree.args[0] if syntax == "v3" and isinstance(tree, MatcherCall)
            and tree.name == "HostSNIRegexp" and not tree.negated and len(tree.args) == 1
            else None)

    def __repr__(self) -> str:
        return f"Rule({self.text!r}, syntax={self.syntax!r})"


def parse_rule(text: str, syntax: str = "v3") -> Rule:
    """Parse and validate ``text``; raise RuleError naming the position and the problem.

    Only exactly ``"v2"`` selects the v2 matchers; any other value means v3, as in Traefik.
    """
    tree = parse(text)
    v2 = syntax == "v2"
    return Rule(text, "v2" if v2 else "v3", tree, _compile(tree, text, v2))


def host_sni_values(text: str) -> list[str]:
    """Traefik's ParseHostSNI: the lower-cased HostSNI arguments, left to right.

    Negations and other matchers are ignored and arguments are not validated, so
    ``HostSNI()`` parses; only syntax errors and unknown matchers raise RuleError.
    """
    return [value.lower() for value in host_sni_args(parse(text))]


def _compile(node: Node, text: str, v2: bool) -> Predicate:
    def leaf(call: MatcherCall) -> Predicate:
        return build_matcher(call, text, v2)

    return compile_tree(node, leaf)


def _is_catch_all(tree: Node) -> bool:
    return (
        isinstance(tree, MatcherCall)
        and tree.name == "HostSNI"
        and tree.args == ("*",)
        and not tree.negated
    )


def _exact_hosts(tree: Node) -> frozenset[str] | None:
    leaves = tree.operands if isinstance(tree, AnyOf) else (tree,)
    hosts: set[str] = set()
    for leaf in leaves:
        if not isinstance(leaf, MatcherCall) or leaf.name != "HostSNI" or leaf.negated:
            return None
        (value,) = leaf.args  # a built v3 rule has exactly one argument per matcher
        if value == "*" or value.startswith("*."):
            return None
        host = value.removesuffix(".").lower()
        if host:  # the value "." matches nothing, not the empty SNI
            hosts.add(host)
    return frozenset(hosts)
