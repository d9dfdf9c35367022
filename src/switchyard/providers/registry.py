"""Builds the configured providers from the static `providers` section."""

from __future__ import annotations

from switchyard.config.static import StaticConfig
from switchyard.providers.base import Provider
from switchyard.providers.file import FileProvider


def build_providers(static: StaticConfig) -> list[Provider]:
    """One provider object per configured `providers.<name>` block, file first."""
    providers: list[Provider] = []
    file_cfg = static.providers.file if static.providers else None
    if file_cfg is not None and (file_cfg.filename or file_cfg.directory):
        providers.append(FileProvider(file_cfg.filename, file_cfg.directory, file_cfg.watch))
    return providers
