"""What every provider hands the server: a named config, its problems, or why it failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue


@dataclass(frozen=True)
class ProviderUpdate:
    """A provider's new config, or (config None) the error that kept the last good one."""

    provider: str
    config: DynamicConfig | None
    issues: list[ConfigIssue] = field(default_factory=list)
    error: str = ""


Publish = Callable[[ProviderUpdate], None]


class Provider(Protocol):
    """A source of dynamic configuration: loads once, then watches and publishes changes."""

    @property
    def name(self) -> str:
        """The provider's name, the `@provider` suffix of what it defines."""

    def load(self) -> ProviderUpdate:
        """The current config, read now (used at start-up and on SIGHUP)."""

    async def watch(self, publish: Publish) -> None:
        """Publish every change until cancelled; return at once if the source cannot change."""
