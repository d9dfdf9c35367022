"""The file provider: dynamic configuration from one file or a directory, watched."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from switchyard.config.loader import load_dynamic
from switchyard.providers.base import ProviderUpdate, Publish, WatchLost, load_guarded

log = logging.getLogger("switchyard.providers.file")


@dataclass(frozen=True)
class FileProvider:
    """Reads `providers.file.filename` or `providers.file.directory`; watches it when asked."""

    filename: str = ""
    directory: str = ""
    watch_changes: bool = True
    name: str = "file"

    def load(self) -> ProviderUpdate:
        return load_guarded(self.name, self.directory or self.filename, self._load)

    def _load(self) -> ProviderUpdate:
        config, issues = load_dynamic(filename=self.filename, directory=self.directory)
        return ProviderUpdate(self.name, config, issues)

    async def watch(self, publish: Publish) -> None:
        if not self.watch_changes:
            return
        from watchfiles import awatch

        # Watch the file's directory: editors and `kubectl`-style tools replace
        # files by rename, which a watch on the file itself would miss.
        target = os.path.abspath(self.directory or os.path.dirname(os.path.abspath(self.filename)))
        wanted = None if self.directory else os.path.abspath(self.filename)
        async for changes in awatch(target, debounce=50, step=20, recursive=bool(self.directory)):
            if any(os.path.abspath(p) == target for _, p in changes) and not os.path.isdir(target):
                # inotify drops a removed directory's watch: without a new one, a directory
                # created again under the same name would never be seen.
                raise WatchLost(f"{target} was removed; watching resumes once it exists again")
            if wanted is not None and not any(os.path.abspath(p) == wanted for _, p in changes):
                continue
            log.info("change detected in %s", self.directory or self.filename)
            publish(self.load())
