"""The ZooKeeper provider: Traefik's KV layout as znodes, followed through ZooKeeper watches."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    KazooException,
    NoNodeError,
    ZookeeperError,
)
from kazoo.handlers.threading import KazooTimeoutError  # type: ignore[import-untyped]
from kazoo.protocol.states import WatchedEvent  # type: ignore[import-untyped]
from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.providers.kv import (
    RemoteProvider,
    Session,
    StoreUnavailable,
    kv_provider,
    strict_text,
)

__all__ = ["ZooKeeperOptions", "zookeeper_provider"]

# kazoo logs every refused connection attempt; the provider reports outages itself.
logging.getLogger("kazoo.client").setLevel(logging.CRITICAL)

_TIMEOUT = 2.0


class ZooKeeperOptions(TraefikModel):
    """``providers.zooKeeper``, with Traefik's option names and defaults."""

    endpoints: StrList = Field(default_factory=lambda: ["127.0.0.1:2181"])
    root_key: str = "traefik"
    username: str = ""
    password: str = ""


def zookeeper_provider(options: ZooKeeperOptions) -> RemoteProvider[dict[str, str]]:
    """The provider named ``zookeeper``: every znode under ``/<rootKey>``, watched."""
    connect = _Connector(options)
    return kv_provider("zookeeper", ",".join(options.endpoints), options.root_key, connect.open)


@dataclass
class _Connector:
    options: ZooKeeperOptions

    async def open(self) -> Session[dict[str, str]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._connect, loop)

    def _connect(self, loop: asyncio.AbstractEventLoop) -> _ZooKeeperSession:
        auth = [("digest", f"{self.options.username}:{self.options.password}")] \
            if self.options.username else None
        client = KazooClient(hosts=",".join(self.options.endpoints), timeout=_TIMEOUT,
                             auth_data=auth,
                             # Fail fast: reconnecting is the provider's job, with its backoff.
                             connection_retry={"max_tries": 0}, command_retry={"max_tries": 0})
        try:
            client.start(timeout=_TIMEOUT)
        except (KazooTimeoutError, KazooException, OSError) as error:
            client.close()
            raise StoreUnavailable(f"{','.join(self.options.endpoints)}: "
                                   f"{error or type(error).__name__}") from error
        return _ZooKeeperSession(client, self.options.root_key, loop)


class _ZooKeeperSession:
    """Reads the whole tree, leaving a one-shot watch on every znode it reads.

    ZooKeeper watches fire once; each read re-arms them, and the provider reads again after
    every change, so no change goes unseen. A lost session counts as a change: the next
    read then fails and the provider reconnects.
    """

    def __init__(self, client: KazooClient, root_key: str,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.root = "/" + root_key.strip("/")
        self.loop = loop
        self.changed = asyncio.Event()
        self.lost = threading.Event()
        client.add_listener(self._on_state)

    def _on_state(self, state: str) -> None:
        if state != "CONNECTED":
            self.lost.set()
            self.loop.call_soon_threadsafe(self.changed.set)

    def _on_watch(self, _event: WatchedEvent) -> None:
        self.loop.call_soon_threadsafe(self.changed.set)

    async def read(self) -> dict[str, str]:
        # Cleared before reading: a change during the read is seen by the next wait.
        self.changed.clear()
        try:
            return await self.loop.run_in_executor(None, self._read_tree)
        except (KazooException, ZookeeperError, OSError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error

    def _read_tree(self) -> dict[str, str]:
        if self.lost.is_set():
            raise StoreUnavailable("the ZooKeeper session was lost")
        pairs: dict[str, str] = {}
        # The root may not exist yet: watching it for existence sees it being created.
        if self.client.exists(self.root, watch=self._on_watch) is None:
            return pairs
        pending = [self.root]
        while pending:
            path = pending.pop()
            try:
                data, _ = self.client.get(path, watch=self._on_watch)
                children = self.client.get_children(path, watch=self._on_watch)
            except NoNodeError:
                continue  # deleted meanwhile; its parent's watch has fired
            key = path[1:]
            if data or not children:
                # Values live on leaves; an inner znode with data (tls = true) counts too.
                pairs[key] = strict_text(data or b"", f'key "{key}"')
            pending.extend(f"{path}/{child}" for child in children)
        pairs.pop(self.root[1:], None)
        return pairs

    async def next_change(self, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        self.changed.clear()
        return True

    async def close(self) -> None:
        def stop() -> None:
            try:
                self.client.stop()
                self.client.close()
            except (KazooException, OSError):
                pass  # already gone

        await self.loop.run_in_executor(None, stop)

