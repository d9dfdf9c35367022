"""Traefik's rule languages: parse rules, match connections and requests, default priorities."""

from switchyard.rules.errors import RuleError
from switchyard.rules.http import HTTPRule, parse_domains, parse_http_rule
from switchyard.rules.matchers import ConnMeta
from switchyard.rules.priority import default_http_priority, default_priority
from switchyard.rules.request import Headers, RequestMeta
from switchyard.rules.rule import Rule, host_sni_values, parse_rule

__all__ = [
    "ConnMeta",
    "HTTPRule",
    "Headers",
    "RequestMeta",
    "Rule",
    "RuleError",
    "default_http_priority",
    "default_priority",
    "host_sni_values",
    "parse_domains",
    "parse_http_rule",
    "parse_rule",
]
