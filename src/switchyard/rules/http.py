"""Traefik's HTTP rule language: the HTTP matcher set on the shared parser, v3 and v2 syntax."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from switchyard.ipcheck import IPChecker
from switchyard.rules.combine import compile_tree
from switchyard.rules.errors import RuleError
from switchyard.rules.gorilla import template_regexp
from switchyard.rules.matchers import Search, compile_go_regexp
from switchyard.rules.parser import (
    MATCHER_NAMES as TCP_MATCHER_NAMES,
)
from switchyard.rules.parser import (
    AllOf,
    AnyOf,
    MatcherCall,
    MatcherSet,
    Node,
    parse,
)
from switchyard.rules.request import (
    RequestMeta,
    canonical_header_key,
    go_lower,
    is_header_token,
    split_host_port,
)

__all__ = [
    "V2_MATCHERS",
    "V3_MATCHERS",
    "HTTPRule",
    "host_key",
    "parse_domains",
    "parse_http_rule",
]

HTTPPredicate = Callable[[RequestMeta], bool]

_V3_NAMES = (
    "Host",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "PathRegexp",
    "Method",
    "Header",
    "HeaderRegexp",
    "Query",
    "QueryRegexp",
    "ClientIP",
)
_V2_NAMES = (
    "Host",
    "HostHeader",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "Method",
    "Headers",
    "HeadersRegexp",
    "Query",
    "ClientIP",
)
_TCP_ONLY = {name.lower(): "a TCP matcher" for name in TCP_MATCHER_NAMES if name != "ClientIP"}

V3_MATCHERS = MatcherSet(
    "HTTP",
    _V3_NAMES,
    "Host(`example.com`)",
    {
        **_TCP_ONLY,
        "headers": "a ruleSyntax v2 matcher (in v3, one Header(`name`, `value`) per header)",
        "headersregexp": "a ruleSyntax v2 matcher (in v3, HeaderRegexp(`name`, `regexp`))",
        "hostheader": "a ruleSyntax v2 matcher (in v3, Host(`example.com`))",
    },
)
V2_MATCHERS = MatcherSet(
    "ruleSyntax v2 HTTP",
    _V2_NAMES,
    "Host(`example.com`)",
    {
        **_TCP_ONLY,
        "header": "a v3 matcher (with ruleSyntax v2, Headers(`name`, `value`))",
        "headerregexp": "a v3 matcher (with ruleSyntax v2, HeadersRegexp(`name`, `regexp`))",
        "pathregexp": "a v3 matcher, not available with ruleSyntax v2",
        "queryregexp": "a v3 matcher, not available with ruleSyntax v2",
    },
)
# Traefik's ParseDomains reads a rule with the matchers of both syntaxes.
_ANY_SYNTAX = MatcherSet(
    "HTTP", tuple(dict.fromkeys(_V3_NAMES + _V2_NAMES)), "Host(`example.com`)", _TCP_ONLY
)

# Go's EqualFold against an ASCII value: besides ASCII case, only the long s folds to 's'
# (the Kelvin sign is already 'k' in a lower-cased host).
_FOLD = str.maketrans({"\u017f": "s"})


class HTTPRule:
    """A valid HTTP rule, compiled for one syntax.

    ``matches(meta)`` evaluates it (short-circuit, left to right). ``host_keys``, when not
    None, holds every ``host_key(meta)`` of a request the rule can match, so a routing table
    can index it by host; requests outside it never match.
    """

    __slots__ = ("host_keys", "matches", "syntax", "text", "tree")

    def __init__(self, text: str, syntax: str, tree: Node, matches: HTTPPredicate) -> None:
        self.text = text
        self.syntax = syntax
        self.tree = tree
        self.matches: HTTPPredicate = matches
        self.host_keys = _host_keys(tree)

    def __repr__(self) -> str:
        return f"HTTPRule({self.text!r}, syntax={self.syntax!r})"


def parse_http_rule(text: str, syntax: str = "v3") -> HTTPRule:
    """Parse and validate an HTTP router rule; raise RuleError naming the position and problem.

    Only exactly ``"v2"`` selects the v2 matchers; any other value means v3, as in Traefik.
    """
    v2 = syntax == "v2"
    tree = parse(text, V2_MATCHERS if v2 else V3_MATCHERS)

    def leaf(call: MatcherCall) -> HTTPPredicate:
        return _build(call, text, v2)

    return HTTPRule(text, "v2" if v2 else "v3", tree, compile_tree(tree, leaf))


def parse_domains(text: str) -> list[str]:
    """Traefik's ParseDomains: the lower-cased arguments of the ``Host`` calls that are not
    negated (after De Morgan), left to right, read with the matchers of both syntaxes.

    Arguments are not validated; only syntax errors and unknown matchers raise RuleError.
    These domains choose an HTTPS router's TLS options from the SNI.
    """
    return list(_positive_hosts(parse(text, _ANY_SYNTAX)))


def host_key(meta: RequestMeta) -> str:
    """The key ``HTTPRule.host_keys`` is made of: the canonical host, case-folded."""
    host = meta.canonical_host
    return host if host.isascii() else host.translate(_FOLD)


def _positive_hosts(node: Node) -> list[str]:
    if isinstance(node, MatcherCall):
        if node.name != "Host" or node.negated:
            return []
        return [go_lower(arg) for arg in node.args]
    return [host for operand in node.operands for host in _positive_hosts(operand)]


def _host_keys(node: Node) -> frozenset[str] | None:
    if isinstance(node, MatcherCall):
        if node.negated or node.name not in ("Host", "HostHeader"):
            return None
        keys: set[str] = set()
        for arg in node.args:
            value = arg.lower()
            if value.startswith("*"):
                return None  # wildcards and the catch-all are not indexed
            keys.update((value, value + "."))
            if value.endswith("."):
                keys.add(value[:-1])
        return frozenset(keys)
    found = [_host_keys(operand) for operand in node.operands]
    if isinstance(node, AllOf):
        constrained = [keys for keys in found if keys is not None]
        return frozenset.intersection(*constrained) if constrained else None
    assert isinstance(node, AnyOf)
    if any(keys is None for keys in found):
        return None
    return frozenset().union(*(keys for keys in found if keys is not None))


# --- leaf matchers ---------------------------------------------------------------------


class _Invalid(Exception):
    """A bad matcher argument; ``index`` says which, for the error position."""

    def __init__(self, problem: str, index: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.index = index


def _build(call: MatcherCall, rule: str, v2: bool) -> HTTPPredicate:
    name = call.name
    args = call.args
    try:
        if not args:
            raise _Invalid(f"no args for matcher {name}: give it a value, e.g. {name}(`...`)")
        for index, arg in enumerate(args):
            if arg == "":
                raise _Invalid(f"empty args for matcher {name}", index)
        if v2:
            return _V2_BUILDERS[name](args)
        arities, build = _V3_BUILDERS[name]
        if len(args) not in arities:
            surplus = min(len(args) - 1, max(arities))
            raise _Invalid(_arity_problem(name, len(args), arities), surplus)
        return build(args)
    except _Invalid as invalid:
        offset = call.arg_offsets[invalid.index] if args else call.offset
        raise RuleError(rule, offset, invalid.problem) from None


def _arity_problem(name: str, got: int, arities: tuple[int, ...]) -> str:
    if arities == (2,):
        return f"{name} takes two arguments, a header name and a value, got {got}"
    if arities == (1, 2):
        return f"{name} takes a key and optionally a value, got {got} arguments"
    return (
        f"{name} takes exactly one argument, got {got}; "
        f"combine values with ||, e.g. {name}(`a`) || {name}(`b`)"
    )


def _always(meta: RequestMeta) -> bool:
    return True


def _never(meta: RequestMeta) -> bool:
    return False


def _ascii(value: str, matcher: str, index: int = 0) -> None:
    if not value.isascii():
        raise _Invalid(
            f"invalid value `{value}` for {matcher}: non-ASCII characters are not allowed "
            "(use the punycode form, xn--...)",
            index,
        )


def _regexp(pattern: str, matcher: str, index: int = 0) -> Search:
    try:
        return compile_go_regexp(pattern)
    except ValueError as exc:
        raise _Invalid(f"invalid regexp `{pattern}` for {matcher}: {exc}", index) from None


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _domain_matches(domain: str, expression: str) -> bool:
    """Traefik's DomainMatchHostExpression: ``*...`` replaces the first label of ``domain``."""
    if expression.startswith("*"):
        dot = domain.find(".")
        domain = "*" if dot < 0 else "*" + domain[dot:]
    if not domain.isascii():
        domain = domain.translate(_FOLD)
    return domain.lower() == expression


def _host(args: Sequence[str]) -> HTTPPredicate:
    (expression,) = args
    if expression == "*":
        # As HostSNI(`*`): every request, with or without a host.
        return _always
    _ascii(expression, "Host")
    expression = expression.lower()
    trimmed = expression[:-1] if expression.endswith(".") else None

    def host(meta: RequestMeta) -> bool:
        requested = meta.canonical_host
        if not requested:
            return False
        if requested == expression or _domain_matches(requested, expression):
            return True
        if trimmed is not None and _domain_matches(requested, trimmed):
            return True
        return requested.endswith(".") and _domain_matches(requested[:-1], expression)

    return host


def _host_regexp(args: Sequence[str]) -> HTTPPredicate:
    (pattern,) = args
    _ascii(pattern, "HostRegexp")
    search = _regexp(pattern, "HostRegexp")
    if search(b"") is not None:
        # Traefik also tries the CNAME-flattened host, which is empty without a host
        # resolver: a pattern matching the empty string matches every request.
        return _always

    def host_regexp(meta: RequestMeta) -> bool:
        return search(_encoded(meta.canonical_host)) is not None

    return host_regexp


def _absolute_path(path: str, matcher: str) -> None:
    if not path.startswith("/"):
        raise _Invalid(f"path `{path}` of {matcher} does not start with a '/'")


def _path(args: Sequence[str]) -> HTTPPredicate:
    (expected,) = args
    _absolute_path(expected, "Path")

    def path(meta: RequestMeta) -> bool:
        return meta.routing_path == expected

    return path


def _path_prefix(args: Sequence[str]) -> HTTPPredicate:
    (prefix,) = args
    _absolute_path(prefix, "PathPrefix")

    def path_prefix(meta: RequestMeta) -> bool:
        found = meta.routing_path
        return found is not None and found.startswith(prefix)

    return path_prefix


def _path_regexp(args: Sequence[str]) -> HTTPPredicate:
    search = _regexp(args[0], "PathRegexp")

    def path_regexp(meta: RequestMeta) -> bool:
        found = meta.routing_path
        return found is not None and search(_encoded(found)) is not None

    return path_regexp


def _go_upper(text: str) -> str:
    """Go's strings.ToUpper: rune by rune, never longer (Python's turns 'ß' into 'SS')."""
    if text.isascii():
        return text.upper()
    return "".join(c if len(up := c.upper()) != 1 else up for c in text)


def _method(args: Sequence[str]) -> HTTPPredicate:
    expected = _go_upper(args[0])

    def method(meta: RequestMeta) -> bool:
        # The request's method is compared as sent: `get` is not GET.
        return meta.method == expected

    return method


def _header_key(name: str) -> str | None:
    """The field name to look up, or None when no request can carry it: names that are not
    HTTP tokens (Go's server refuses them) and Host (Go moves it out of the header map)."""
    if not is_header_token(name):
        return None
    key = canonical_header_key(name)
    return None if key == "Host" else key


def _header(args: Sequence[str]) -> HTTPPredicate:
    name, expected = args
    key = _header_key(name)
    if key is None:
        return _never

    def header(meta: RequestMeta) -> bool:
        return expected in meta.headers.values(key)

    return header


def _header_regexp(args: Sequence[str]) -> HTTPPredicate:
    name, pattern = args
    search = _regexp(pattern, "HeaderRegexp", 1)
    key = _header_key(name)
    if key is None:
        return _never

    def header_regexp(meta: RequestMeta) -> bool:
        return any(search(_encoded(value)) is not None for value in meta.headers.values(key))

    return header_regexp


def _query(args: Sequence[str]) -> HTTPPredicate:
    key = args[0]
    # A key alone matches only a present, empty value (`?key` or `?key=`), as in Traefik.
    expected = args[1] if len(args) == 2 else ""

    def query(meta: RequestMeta) -> bool:
        return expected in meta.query_params.get(key, ())

    return query


def _query_regexp(args: Sequence[str]) -> HTTPPredicate:
    if len(args) == 1:
        return _query(args)
    key, pattern = args
    search = _regexp(pattern, "QueryRegexp", 1)

    def query_regexp(meta: RequestMeta) -> bool:
        values = meta.query_params.get(key, ())
        return any(search(_encoded(value)) is not None for value in values)

    return query_regexp


def _client_ip(args: Sequence[str]) -> HTTPPredicate:
    try:
        contains = IPChecker(args).contains
    except ValueError as exc:
        bad = 0
        for index, value in enumerate(args):
            try:
                IPChecker([value])
            except ValueError:
                bad = index
                break
        raise _Invalid(f"invalid value for ClientIP: {exc}", bad) from None

    def client_ip(meta: RequestMeta) -> bool:
        return contains(meta.client_ip)

    return client_ip


_V3_BUILDERS: dict[str, tuple[tuple[int, ...], Callable[[Sequence[str]], HTTPPredicate]]] = {
    "Host": ((1,), _host),
    "HostRegexp": ((1,), _host_regexp),
    "Path": ((1,), _path),
    "PathPrefix": ((1,), _path_prefix),
    "PathRegexp": ((1,), _path_regexp),
    "Method": ((1,), _method),
    "Header": ((2,), _header),
    "HeaderRegexp": ((2,), _header_regexp),
    "Query": ((1, 2), _query),
    "QueryRegexp": ((1, 2), _query_regexp),
    "ClientIP": ((1,), _client_ip),
}


# --- v2 (gorilla/mux) matchers ------------------------------------------------------------


def _host_v2(hosts: Sequence[str]) -> HTTPPredicate:
    accepted: list[tuple[str, str | None]] = []
    for index, value in enumerate(hosts):
        _ascii(value, "Host", index)
        lowered = value.lower()
        accepted.append((lowered, lowered[:-1] if lowered.endswith(".") else None))

    def host_v2(meta: RequestMeta) -> bool:
        requested = meta.canonical_host
        if not requested:
            return False
        without_dot = requested[:-1] if requested.endswith(".") else None
        for value, trimmed in accepted:
            if requested == value or requested == trimmed or without_dot == value:
                return True
        return False

    return host_v2


def _gorilla_host(host: str) -> str:
    """gorilla/mux (Traefik's fork) matches host templates on the host without its port."""
    if ":" not in host:
        return host
    try:
        return split_host_port(host)[0]
    except ValueError:
        return host


def _template(
    template: str,
    matcher: str,
    index: int,
    *,
    default: str,
    host: bool = False,
    prefix: bool = False,
    query: bool = False,
) -> tuple[Search, tuple[str, ...]]:
    try:
        built = template_regexp(template, default=default, host=host, prefix=prefix, query=query)
    except ValueError as exc:
        raise _Invalid(f"invalid value for {matcher}: {exc}", index) from None
    for _, pattern in built.variables:
        # gorilla/mux also compiles each variable's pattern on its own.
        _regexp(f"^{pattern}$", matcher, index)
    return _regexp(built.pattern, matcher, index), tuple(name for name, _ in built.variables)


def _host_regexp_v2(templates: Sequence[str]) -> HTTPPredicate:
    searches = []
    for index, template in enumerate(templates):
        _ascii(template, "HostRegexp", index)
        searches.append(_template(template, "HostRegexp", index, default="[^.]+", host=True)[0])

    def host_regexp_v2(meta: RequestMeta) -> bool:
        host = _encoded(_gorilla_host(meta.host))
        return any(search(host) is not None for search in searches)

    return host_regexp_v2


def _path_templates(templates: Sequence[str], matcher: str, prefix: bool) -> list[Search]:
    searches = []
    for index, template in enumerate(templates):
        if not template.startswith("/"):
            raise _Invalid(f"path `{template}` of {matcher} does not start with a '/'", index)
        searches.append(_template(template, matcher, index, default="[^/]+", prefix=prefix)[0])
    return searches


def _path_v2(templates: Sequence[str], matcher: str = "Path", prefix: bool = False) -> HTTPPredicate:
    searches = _path_templates(templates, matcher, prefix)

    def path_v2(meta: RequestMeta) -> bool:
        found = meta.routing_path
        if found is None:
            return False
        path = _encoded(found)
        return any(search(path) is not None for search in searches)

    return path_v2


def _path_prefix_v2(templates: Sequence[str]) -> HTTPPredicate:
    return _path_v2(templates, "PathPrefix", prefix=True)


def _method_v2(methods: Sequence[str]) -> HTTPPredicate:
    accepted = frozenset(_go_upper(method) for method in methods)

    def method_v2(meta: RequestMeta) -> bool:
        return meta.method in accepted

    return method_v2


def _pairs(values: Sequence[str], matcher: str) -> list[tuple[str, str, int]]:
    """(name, value, index of the value) per name; gorilla/mux keeps the pairs in a map, so a
    repeated name keeps its last value."""
    if len(values) % 2:
        raise _Invalid(
            f"{matcher} takes name and value pairs, got an odd number of arguments ({len(values)})",
            len(values) - 1,
        )
    latest = {values[index]: index + 1 for index in range(0, len(values), 2)}
    return [(name, values[index], index) for name, index in latest.items()]


def _headers_v2(values: Sequence[str]) -> HTTPPredicate:
    wanted = []
    for name, expected, _ in _pairs(values, "Headers"):
        key = _header_key(name)
        if key is None:
            return _never
        wanted.append((key, expected))

    def headers_v2(meta: RequestMeta) -> bool:
        return all(expected in meta.headers.values(key) for key, expected in wanted)

    return headers_v2


def _headers_regexp_v2(values: Sequence[str]) -> HTTPPredicate:
    wanted = []
    never = False
    for name, pattern, index in _pairs(values, "HeadersRegexp"):
        search = _regexp(pattern, "HeadersRegexp", index)
        key = _header_key(name)
        never = never or key is None
        wanted.append((key or "", search))
    if never:
        return _never

    def headers_regexp_v2(meta: RequestMeta) -> bool:
        for key, search in wanted:
            found = meta.headers.values(key)
            if not found or not any(search(_encoded(value)) is not None for value in found):
                return False
        return True

    return headers_regexp_v2


def _query_v2(elements: Sequence[str]) -> HTTPPredicate:
    flat = [part for element in elements for part in element.split("=", 1)]
    if len(flat) % 2:
        raise _Invalid(
            "Query takes key=value arguments (e.g. Query(`page=1`)), got "
            f"{' '.join(repr(part) for part in flat)}",
            len(elements) - 1,
        )
    checks: list[tuple[str, Search]] = []
    names: set[str] = set()
    for index in range(0, len(flat), 2):
        template = f"{flat[index]}={flat[index + 1]}"
        search, variables = _template(
            template, "Query", min(index // 2, len(elements) - 1), default=".*", query=True
        )
        repeated = names.intersection(variables)
        if repeated:
            raise _Invalid(f"Query: duplicated route variable {min(repeated)!r}")
        names.update(variables)
        checks.append((template.split("=", 1)[0], search))

    def query_v2(meta: RequestMeta) -> bool:
        params = meta.query_params
        for key, search in checks:
            values = params.get(key)
            # gorilla/mux tests `key=<first value>`, or "" when the key is absent.
            tested = f"{key}={values[0]}" if values else ""
            if search(_encoded(tested)) is None:
                return False
        return True

    return query_v2


_V2_BUILDERS: dict[str, Callable[[Sequence[str]], HTTPPredicate]] = {
    "Host": _host_v2,
    "HostHeader": _host_v2,
    "HostRegexp": _host_regexp_v2,
    "Path": _path_v2,
    "PathPrefix": _path_prefix_v2,
    "Method": _method_v2,
    "Headers": _headers_v2,
    "HeadersRegexp": _headers_regexp_v2,
    "Query": _query_v2,
    "ClientIP": _client_ip,
}
