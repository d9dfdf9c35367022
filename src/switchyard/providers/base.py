"""What every provider hands the server: a named config, its problems, or why it failed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import yaml

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue, ConfigLoadError

log = logging.getLogger("switchyard.providers")


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
        """The current config, read now (used at start-up and on SIGHUP); never raises."""

    async def watch(self, publish: Publish) -> None:
        """Publish every change until cancelled; return at once if the source cannot change.

        Raising ends this watch only: the server logs it, shows it as the provider's error
        and starts the watch again after a backoff.
        """


class WatchLost(Exception):
    """A watch cannot go on for a reason the message explains; the server starts it again."""


class Backoff:
    """Exponential delays between attempts, capped, reset by a success."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.current = first

    def next_delay(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first


def describe_error(error: BaseException) -> str:
    """One line on why a source could not be decoded, for logs and the API."""
    if isinstance(error, yaml.YAMLError):
        return "invalid YAML: " + " ".join(str(error).split())
    if isinstance(error, UnicodeError):
        return f"not UTF-8 text ({error})"
    if isinstance(error, OSError):
        return f"cannot read: {error.strerror or error}"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_guarded(name: str, source: str,
                 load: Callable[[], ProviderUpdate]) -> ProviderUpdate:
    """``load()``, with any exception it lets through turned into the provider's error.

    A loader is meant to raise only ConfigLoadError, but one unforeseen input (a control
    character PyYAML rejects before parsing, a mapping where a list belongs) must not take
    a provider down: it becomes an error the server logs, counts and shows, and the last
    good configuration keeps serving.
    """
    try:
        return load()
    except ConfigLoadError as error:
        return ProviderUpdate(name, None, list(error.issues), str(error))
    except Exception as error:
        log.debug('provider "%s": loading %s raised', name, source, exc_info=True)
        return ProviderUpdate(name, None, error=f"{source}: {describe_error(error)}; correct "
                              "it and the next change is applied")
