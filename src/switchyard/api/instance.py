"""What the API, the dashboard, ping and metrics read of a running Switchyard, as a Protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from switchyard.api.http_metrics import HTTPMetrics
    from switchyard.config.static import StaticConfig
    from switchyard.proxy.decision import ChallengeResponder
    from switchyard.proxy.entrypoint import EntryPoint
    from switchyard.runtime import Runtime


class RunningInstance(Protocol):
    """`switchyard.server.Switchyard` is one; the API never needs more than this."""

    @property
    def static(self) -> StaticConfig: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def entrypoints(self) -> Mapping[str, EntryPoint]: ...
    @property
    def internal(self) -> Mapping[str, tuple[str, int, set[str]]]: ...
    @property
    def provider_errors(self) -> Mapping[str, str]: ...
    @property
    def reloads(self) -> int: ...
    @property
    def reload_failures(self) -> int: ...
    @property
    def last_reload_success(self) -> float: ...
    @property
    def last_reload_failure(self) -> float: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def http_metrics(self) -> HTTPMetrics | None: ...

    def challenges(self, entrypoint: str) -> Sequence[ChallengeResponder]: ...
