"""Runtime status of configuration elements, shaped like Traefik's API shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["enabled", "warning", "disabled"]


@dataclass(slots=True)
class ElementStatus:
    """A router, service or middleware: its config, status and error messages."""

    kind: Literal["router", "service", "middleware"]
    name: str
    provider: str
    config: Any
    status: Status = "enabled"
    errors: list[str] = field(default_factory=list)
    using: list[str] = field(default_factory=list)
    used_by: list[str] = field(default_factory=list)
    priority: int = 0

    def add_error(self, message: str, *, critical: bool) -> None:
        """Record a problem; critical ones disable the element (Traefik's AddError)."""
        if message not in self.errors:
            self.errors.append(message)
        if critical:
            self.status = "disabled"
        elif self.status != "disabled":
            self.status = "warning"

    @property
    def enabled(self) -> bool:
        return self.status != "disabled"
