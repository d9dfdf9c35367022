"""Traefik's TCP rule language: parse rules, match connections, compute default priorities."""

from switchyard.rules.errors import RuleError
from switchyard.rules.matchers import ConnMeta
from switchyard.rules.priority import default_priority
from switchyard.rules.rule import Rule, host_sni_values, parse_rule

__all__ = [
    "ConnMeta",
    "Rule",
    "RuleError",
    "default_priority",
    "host_sni_values",
    "parse_rule",
]
