"""The file provider: dynamic configuration from one file or a directory of files."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue, load_dynamic


@dataclass(frozen=True)
class FileProvider:
    """Reads `providers.file.filename` or `providers.file.directory`."""

    filename: str = ""
    directory: str = ""
    watch: bool = True
    name: str = "file"

    def load(self) -> tuple[DynamicConfig, list[ConfigIssue]]:
        """The current config; raises ConfigLoadError when a file cannot be read at all."""
        return load_dynamic(filename=self.filename, directory=self.directory)
