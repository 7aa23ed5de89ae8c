"""MQTT publisher (aiomqtt): JSON events and a retained state summary, off the forwarding path.

Topics, for ``prefix`` (default ``evpn``) and the agent's router id:

- ``<prefix>/<router-id>/events/<kind>``: one JSON object per event, QoS 1, not retained:
  ``{"kind": ..., "time": <unix seconds>, **payload}``. Kinds used by the agent: membership,
  flood-list, peer, vif-budget, error (any kind without ``+``, ``#`` or NUL is accepted).
- ``<prefix>/<router-id>/state``: the latest summary, retained, QoS 1; published on every
  (re)connect and whenever it changes (identical summaries are not re-sent).
- ``<prefix>/<router-id>/status``: retained ``{"online": true}`` once connected. It is also the
  connection's Last Will, ``{"online": false}`` retained, which the broker publishes when the
  agent vanishes without saying goodbye; a clean stop publishes ``{"online": false}`` itself.

``event()`` and ``state()`` never block and never raise: they encode the JSON at once (values
JSON does not know, such as IP addresses, become strings) and put it in memory. Events wait in
a bounded queue; when it is full the oldest event is dropped and counted. ``run()`` owns the
connection: it connects (TCP or TLS, optional username/password), publishes, and after any
error reconnects with exponential backoff (with jitter) between ``retry_initial`` and
``retry_max``; it logs one line per connection change on logger ``evpn.mqtt``. Delivery is at
least once: an event leaves the queue only when the broker acknowledged it (an event in flight
when a connection dies is sent again). The TCP/TLS connect runs in the loop's default executor,
so a slow or absent broker never stalls the event loop that handles BGP and forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

log = logging.getLogger("evpn.mqtt")
# paho logs every packet at DEBUG; keep that out of a debug-level agent log unless asked for.
_paho_log = logging.getLogger("evpn.mqtt.client")
if _paho_log.level == logging.NOTSET:
    _paho_log.setLevel(logging.WARNING)

_BATCH = 16  # events in flight at once (paho's default inflight window is 20)
_STABLE_AFTER = 10.0  # a connection that lasted this long resets the backoff
_TIMEOUT = 10.0  # CONNACK / PUBACK wait before the connection is declared dead
_GOODBYE_TIMEOUT = 1.0  # a clean stop waits this long for the offline status to go out
_FORBIDDEN = frozenset("+#\0")
_UNSPECIFIED = 128  # paho's reason code for a connection that simply went away


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int = 1883
    prefix: str = "evpn"
    router_id: str = ""  # set by the daemon
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's CA store
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None  # None: the key is in cert_file
    client_id: str | None = None  # None: a random one per connection
    keepalive: int = 30
    queue_size: int = 1000
    retry_initial: float = 1.0
    retry_max: float = 30.0


def _encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """An exception as one readable line, with the cause aiomqtt wraps (if it adds anything)."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return _one_line(text)


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel a helper task and wait until it is over, without raising its outcome (a cancel of
    the caller itself still propagates)."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" noise


class Backoff:
    """Exponential backoff: ``retry_initial`` doubling up to ``retry_max``; each delay is drawn
    from [delay/2, delay] so that leaves restarting together do not reconnect in lockstep."""

    def __init__(self, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> None:
        self.initial = max(initial, 0.0)
        self.maximum = max(maximum, self.initial)
        self._rand = rand
        self._current = self.initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self._current * 2, self.maximum) if self._current > 0 else 0.0
        return delay * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        self._current = self.initial


def check_topic_part(what: str, value: str) -> None:
    """Raise ValueError for a prefix or router id that cannot be part of a topic name."""
    if not value or _FORBIDDEN & set(value):
        raise ValueError(f"MQTT {what} must be non-empty without '+', '#' or NUL: {value!r}")


class Publisher:
    """Queues events and the state summary; ``run()`` delivers them to the broker.

    ``event()`` and ``state()`` may be called from any thread (normally the daemon's loop).
    ``clock`` is a monotonic clock (connection bookkeeping); ``wallclock`` stamps events.
    """

    def __init__(
        self,
        settings: MqttSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        check_topic_part("prefix", settings.prefix)
        check_topic_part("router id", settings.router_id)
        if settings.queue_size < 1:
            raise ValueError(f"MQTT queue_size must be at least 1: {settings.queue_size}")
        if not 0 < settings.retry_initial <= settings.retry_max:
            raise ValueError("MQTT retry delays need 0 < retry_initial <= retry_max")
        self.settings = settings
        self._clock = clock
        self._wallclock = wallclock
        base = f"{settings.prefix}/{settings.router_id}"
        self._events_base = f"{base}/events/"
        self.state_topic = f"{base}/state"
        self.status_topic = f"{base}/status"
        self._lock = threading.Lock()  # guards the queue, the state and the counters
        self._queue: deque[tuple[str, bytes]] = deque()
        self._inflight: list[tuple[str, bytes]] = []
        self._state: bytes | None = None
        self._state_version = 0
        self._state_sent = -1  # version acknowledged on the current connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._overflowing = False  # logged once per overflow episode
        self._connected = False
        self._published = 0
        self._dropped = 0
        self._reconnects = 0
        self._attempts = 0
        self._last_error: str | None = None

    def topic(self, kind: str) -> str:
        return self._events_base + kind

    # ------------------------------------------------------------------ producer side

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Queue one event; never blocks or raises. A full queue drops (and counts) the oldest."""
        try:
            if not kind or _FORBIDDEN & set(kind):
                raise ValueError(f"bad event kind {kind!r}")
            data = _encode({"kind": kind, "time": round(self._wallclock(), 3), **payload})
        except Exception as exc:
            with self._lock:
                self._dropped += 1
            log.warning("MQTT event %r dropped: %s", kind, describe(exc))
            return
        with self._lock:
            if len(self._queue) >= self.settings.queue_size:
                self._queue.popleft()
                self._dropped += 1
                overflow_started = not self._overflowing
                self._overflowing = True
            else:
                overflow_started = False
            self._queue.append((self._events_base + kind, data))
        if overflow_started:
            log.warning(
                "MQTT event queue full (%d): dropping the oldest events until the broker catches up",
                self.settings.queue_size,
            )
        self._wakeup()

    def state(self, state: Mapping[str, Any]) -> None:
        """Replace the state summary (latest wins); never blocks or raises."""
        try:
            data = _encode(state)
        except Exception as exc:
            log.warning("MQTT state not encodable: %s", describe(exc))
            return
        with self._lock:
            if data == self._state:
                return
            self._state = data
            self._state_version += 1
        self._wakeup()

    def _wakeup(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    @property
    def stats(self) -> dict[str, Any]:
        """``published``: events the broker acknowledged (the state and status are not counted);
        ``dropped``: events lost to a full queue or that could not be encoded; ``queued``: events
        waiting (in flight included); ``reconnects``: successful connections after the first;
        ``attempts``: connection attempts; ``last_error``: why the last connection failed or
        ended, one line, kept after a reconnect (None until something went wrong)."""
        with self._lock:
            return {
                "connected": self._connected,
                "published": self._published,
                "dropped": self._dropped,
                "queued": len(self._queue) + len(self._inflight),
                "reconnects": self._reconnects,
                "attempts": self._attempts,
                "last_error": self._last_error,
            }

    # ------------------------------------------------------------------ connection side

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        tls = None
        if s.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            keepalive=s.keepalive,
            timeout=_TIMEOUT,
            tls_params=tls,
            will=aiomqtt.Will(self.status_topic, _encode({"online": False}), qos=1, retain=True),
            logger=_paho_log,
        )
        client.pending_calls_threshold = 2 * _BATCH + 2  # no warning for our own window
        return client

    async def run(self) -> None:
        """Deliver until cancelled; reconnects with backoff after any error, never raises."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        s = self.settings
        where = f"{s.host}:{s.port}"
        backoff = Backoff(s.retry_initial, s.retry_max)
        ever_connected = False
        down_logged = False
        try:
            while True:
                with self._lock:
                    self._attempts += 1
                up_since: float | None = None
                try:
                    async with self._client() as client:
                        up_since = self._clock()
                        with self._lock:
                            self._connected = True
                            self._state_sent = -1
                            if ever_connected:
                                self._reconnects += 1
                        ever_connected = True
                        down_logged = False
                        log.info("MQTT connected to %s%s", where, " (TLS)" if s.tls else "")
                        try:
                            await self._session(client)
                        except asyncio.CancelledError:
                            await self._goodbye(client)
                            raise
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = describe(exc)
                    lost = up_since is not None
                    with self._lock:
                        self._connected = False
                        self._last_error = f"{'connection lost' if lost else 'cannot connect'}: {error}"
                    if lost:
                        log.warning("MQTT connection to %s lost: %s; reconnecting", where, error)
                        down_logged = True
                    elif not down_logged:
                        log.warning("MQTT cannot connect to %s: %s; retrying with backoff", where, error)
                        down_logged = True
                    else:
                        log.debug("MQTT cannot connect to %s: %s", where, error)
                if up_since is not None and self._clock() - up_since >= _STABLE_AFTER:
                    backoff.reset()
                await asyncio.sleep(backoff.next())
        finally:
            with self._lock:
                self._connected = False
                self._requeue_inflight()
            self._wake = None
            self._loop = None

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish whatever is pending, then sleep until there is more; raise when the connection
        fails. A watcher notices a dead connection even while idle (and unblocks a publish whose
        acknowledgement will never come)."""
        assert self._wake is not None
        wake = self._wake
        watcher = asyncio.create_task(self._watch(client))
        try:
            await self._guarded(
                client.publish(self.status_topic, _encode({"online": True}), qos=1, retain=True), watcher
            )
            while True:
                wake.clear()
                await self._guarded(self._flush(client), watcher)
                if self._pending():
                    continue
                await self._guarded(wake.wait(), watcher)
        finally:
            await _settle(watcher)

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        # We subscribe to nothing: the iterator only ends, with MqttError, when the link drops.
        try:
            async for _ in client.messages:
                pass
        except aiomqtt.MqttError as exc:
            cause = exc.__cause__
            if cause is None or (isinstance(cause, aiomqtt.MqttCodeError) and cause.rc == _UNSPECIFIED):
                raise aiomqtt.MqttError("closed by the broker or the network") from None
            raise aiomqtt.MqttError(describe(cause)) from None
        raise aiomqtt.MqttError("closed by the broker or the network")

    @staticmethod
    async def _guarded(aw: Any, watcher: asyncio.Task[None]) -> None:
        task: asyncio.Future[Any] = asyncio.ensure_future(aw)
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _settle(task)
        if task in done:
            task.result()
        else:
            watcher.result()  # raises why the connection ended

    def _pending(self) -> bool:
        with self._lock:
            return bool(self._queue) or (self._state is not None and self._state_sent != self._state_version)

    async def _flush(self, client: aiomqtt.Client) -> None:
        with self._lock:
            state, version = self._state, self._state_version
        if state is not None and version != self._state_sent:
            await client.publish(self.state_topic, state, qos=1, retain=True)
            self._state_sent = version  # a newer state meanwhile goes out on the next pass
        while True:
            with self._lock:
                if not self._queue:
                    self._overflowing = False
                    return
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                self._inflight = batch
            try:
                results = await asyncio.gather(
                    *(client.publish(topic, data, qos=1) for topic, data in batch), return_exceptions=True
                )
            except BaseException:
                with self._lock:
                    self._requeue_inflight()
                raise
            failed = [item for item, r in zip(batch, results, strict=True) if isinstance(r, BaseException)]
            with self._lock:
                self._inflight = []
                self._published += len(batch) - len(failed)
                if failed:
                    self._requeue(failed)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    def _requeue_inflight(self) -> None:
        if self._inflight:
            self._requeue(self._inflight)
            self._inflight = []

    def _requeue(self, items: list[tuple[str, bytes]]) -> None:
        """Put unacknowledged events back in front, still bounded (lock held)."""
        self._queue.extendleft(reversed(items))
        while len(self._queue) > self.settings.queue_size:
            self._queue.popleft()
            self._dropped += 1

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """A clean stop: say offline (the Last Will only fires on an unclean one)."""
        with contextlib.suppress(Exception):
            await client.publish(
                self.status_topic, _encode({"online": False}), qos=1, retain=True, timeout=_GOODBYE_TIMEOUT
            )
