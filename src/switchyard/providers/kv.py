"""Remote-source providers (KV stores, Docker): watching, reconnecting, Traefik's KV layout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue, load_dynamic_from_dict
from switchyard.providers.base import Backoff, ProviderUpdate, Publish, describe_error
from switchyard.providers.flatkeys import canonical, decode, kv_path

__all__ = ["RemoteProvider", "Session", "SourceUnreadable", "StoreUnavailable",
           "config_from_pairs", "kv_provider", "raise_if_cancelled", "run_sync", "strict_text"]

log = logging.getLogger("switchyard.providers.kv")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Changes closer together than this are read as one.
DEBOUNCE = 0.05
#: A store written to without pause is still re-read at least this often.
MAX_BURST = 0.5


class StoreUnavailable(Exception):
    """The store cannot be reached or stopped answering; the message says which and why."""


class SourceUnreadable(Exception):
    """The store answered, but what it holds cannot be decoded; the message names the key."""


def strict_text(data: bytes | str, key: str) -> str:
    """``data`` as UTF-8; SourceUnreadable naming ``key`` (and the first bad byte) otherwise.

    A value is never decoded with replacement characters: a garbled rule or entry point
    list would silently become another, so the whole snapshot is refused instead and the
    last good configuration keeps serving.
    """
    if isinstance(data, str):
        return data  # a client that decoded already
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceUnreadable(
            f'{key}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); '
            "write the value as UTF-8 text") from None


def config_from_pairs(
    pairs: Mapping[str, str], root_key: str, source: str
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """Traefik's KV layout (``<rootKey>/tcp/routers/<r>/rule`` ...) as a validated config."""
    prefix = root_key.rstrip("/") + "/"
    below = {key[len(prefix):]: value for key, value in pairs.items() if key.startswith(prefix)}
    raw, issues = decode(below, kv_path, source, shown=lambda key: prefix + key)
    shaped = canonical(raw, DynamicConfig)
    config, found = load_dynamic_from_dict(shaped if isinstance(shaped, dict) else {}, source)
    return config, issues + found


class Session(Protocol[T_co]):
    """A live connection that is already told about changes to what ``read`` returns."""

    async def read(self) -> T_co:
        """The whole current state (every key under the root key, every container), now."""

    async def next_change(self, timeout: float | None) -> bool:
        """Wait for a change notice: True when one came, False after ``timeout`` seconds."""

    async def close(self) -> None:
        """Release the connection; never raises."""


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a client library's read timeout swallowed.

    redis-py's timeouts and Python 3.11's ``asyncio.wait_for`` can turn a cancellation that
    lands together with their own timeout into an ordinary return; a provider that went on
    waiting then would never stop.
    """
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop.

    ``Provider.load`` is synchronous but the network providers' clients are asyncio ones;
    a private loop in a worker thread lets both paths share one implementation.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@dataclass
class RemoteProvider(Generic[T]):
    """A provider fed by a remote source: ``open`` connects and subscribes, ``to_update`` decodes.

    The KV stores and the Docker engine share this: the first load, the watch loop with
    debounced re-reads, and reconnection with exponential backoff while the last good
    configuration keeps serving.
    """

    name: str
    source: str
    open: Callable[[], Awaitable[Session[T]]]
    to_update: Callable[[T], ProviderUpdate]
    watch_changes: bool = True

    def load(self) -> ProviderUpdate:
        return run_sync(self._load_once)

    async def _load_once(self) -> ProviderUpdate:
        session: Session[T] | None = None
        try:
            session = await self.open()
            return self._update(await session.read())
        except Exception as error:  # noqa: BLE001 - load() never raises: it is the update
            return self._failed(error)
        finally:
            if session is not None:
                await session.close()

    def _update(self, state: T) -> ProviderUpdate:
        """``to_update(state)``; an exception in decoding is this snapshot's error, not ours."""
        try:
            return self.to_update(state)
        except Exception as error:
            log.debug("%s: decoding raised", self.source, exc_info=True)
            return self._failed(error)

    def _failed(self, error: Exception) -> ProviderUpdate:
        if isinstance(error, StoreUnavailable | SourceUnreadable):
            reason = str(error)
        else:
            reason = f"unexpected error ({describe_error(error)}); retrying"
        return ProviderUpdate(self.name, None, error=f"{self.source}: {reason}")

    async def watch(self, publish: Publish) -> None:
        if not self.watch_changes:
            return
        backoff = Backoff()
        last: T | None = None
        down = False
        while True:
            try:
                session = await self.open()
            except Exception as error:  # noqa: BLE001 - StoreUnavailable, or a library's surprise
                down = self._outage(error, down, publish)
                await asyncio.sleep(backoff.next_delay())
                continue
            if down:
                log.info("%s: reachable again, watching for changes", self.source)
                down = False
            backoff.reset()
            try:
                # Subscribed before this first read, so no change can fall between the two.
                while True:
                    try:
                        state = await session.read()
                    except SourceUnreadable as error:
                        # The store is fine; what it holds is not. Wait for the next write.
                        publish(self._failed(error))
                        last = None
                    else:
                        if last is None or state != last:
                            publish(self._update(state))
                            last = state
                    await self._settle(session)
            except Exception as error:  # noqa: BLE001 - see below
                # A dropped connection (StoreUnavailable) or a client library's surprise:
                # either way the session is not trusted any more, so reconnect.
                down = self._outage(error, down, publish)
                last = None  # publish on return even if unchanged, to clear the error
            finally:
                await session.close()
            await asyncio.sleep(backoff.next_delay())

    async def _settle(self, session: Session[T]) -> None:
        """Wait for a change, then for the changes around it to stop (bounded by MAX_BURST)."""
        raise_if_cancelled()  # the read before may have swallowed one
        await session.next_change(None)
        raise_if_cancelled()
        deadline = asyncio.get_running_loop().time() + MAX_BURST
        while asyncio.get_running_loop().time() < deadline:
            changed = await session.next_change(DEBOUNCE)
            raise_if_cancelled()
            if not changed:
                return

    def _outage(self, error: Exception, down: bool, publish: Publish) -> bool:
        if not isinstance(error, StoreUnavailable):
            log.debug("%s: the session failed", self.source, exc_info=error)
        if not down:
            # Once per outage: the server logs it, counts it and keeps the last good config.
            publish(self._failed(error))
        return True


def kv_provider(
    name: str, endpoint: str, root_key: str, open: Callable[[], Awaitable[Session[dict[str, str]]]]
) -> RemoteProvider[dict[str, str]]:
    """A KV store provider: every key under ``root_key``, decoded with Traefik's layout."""
    source = f'{name} {endpoint} (rootKey "{root_key}")'

    def to_update(pairs: dict[str, str]) -> ProviderUpdate:
        config, issues = config_from_pairs(pairs, root_key, source)
        return ProviderUpdate(name, config, issues)

    return RemoteProvider(name, source, open, to_update)
