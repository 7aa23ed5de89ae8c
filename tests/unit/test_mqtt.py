"""The MQTT publisher without a broker: queue bound and drop-oldest, payloads, state, topics,
backoff against an address nobody listens on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address

import pytest

from agent.mqtt import Backoff, MqttSettings, Publisher


async def wait_until(pred: Callable[[], object], timeout: float, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what or pred}"
        await asyncio.sleep(0.005)


def settings(**kw: object) -> MqttSettings:
    base: dict[str, object] = {"host": "127.0.0.1", "router_id": "10.0.0.1"}
    base.update(kw)
    return MqttSettings(**base)  # type: ignore[arg-type]


def queued(pub: Publisher) -> list[tuple[str, dict[str, object]]]:
    return [(topic, json.loads(data)) for topic, data in pub._queue]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_topics_and_event_payload() -> None:
    pub = Publisher(settings(prefix="lab"), wallclock=lambda: 1700000000.1234)
    assert pub.topic("peer") == "lab/10.0.0.1/events/peer"
    assert pub.state_topic == "lab/10.0.0.1/state"
    assert pub.status_topic == "lab/10.0.0.1/status"
    pub.event("peer", {"peer": ip_address("192.0.2.1"), "state": "up", "reason": None})
    [(topic, body)] = queued(pub)
    assert topic == "lab/10.0.0.1/events/peer"
    assert body == {
        "kind": "peer",
        "time": 1700000000.123,
        "peer": "192.0.2.1",
        "state": "up",
        "reason": None,
    }
    raw = pub._queue[0][1]
    assert b" " not in raw  # compact JSON
    assert pub.stats == {
        "connected": False,
        "published": 0,
        "dropped": 0,
        "queued": 1,
        "reconnects": 0,
        "attempts": 0,
        "last_error": None,
    }


def test_event_time_is_unix_seconds() -> None:
    pub = Publisher(settings())
    pub.event("error", {"message": "x"})
    assert abs(queued(pub)[0][1]["time"] - time.time()) < 5  # type: ignore[operator]


def test_full_queue_drops_the_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    pub = Publisher(settings(queue_size=3))
    with caplog.at_level(logging.WARNING, logger="evpn.mqtt"):
        for i in range(10):
            pub.event("membership", {"n": i})
    assert [body["n"] for _, body in queued(pub)] == [7, 8, 9]
    assert pub.stats["dropped"] == 7
    assert pub.stats["queued"] == 3
    assert len([r for r in caplog.records if "queue full" in r.message]) == 1  # once per episode


def test_bad_events_are_dropped_not_raised() -> None:
    pub = Publisher(settings())
    pub.event("a/+", {})
    pub.event("", {})
    loop: dict[str, object] = {}
    loop["self"] = loop
    pub.event("error", loop)  # circular: JSON cannot encode it
    assert pub.stats["queued"] == 0
    assert pub.stats["dropped"] == 3


def test_state_latest_wins_and_unchanged_is_not_resent() -> None:
    pub = Publisher(settings())
    pub.state({"vnis": 1})
    pub.state({"vnis": 2})
    assert pub._state == b'{"vnis":2}'
    version = pub._state_version
    pub.state({"vnis": 2})
    assert pub._state_version == version


@pytest.mark.parametrize(
    "kw", [{"router_id": ""}, {"prefix": "a/#"}, {"queue_size": 0}, {"retry_initial": 0.0}]
)
def test_invalid_settings(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Publisher(settings(**kw))


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    top = Backoff(1.0, 8.0, rand=lambda: 1.0)
    assert [top.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    top.reset()
    assert top.next() == 1.0
    bottom = Backoff(1.0, 8.0, rand=lambda: 0.0)
    assert [bottom.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


async def test_unreachable_broker_backs_off_and_events_stay_cheap(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    pub = Publisher(settings(port=closed_port, retry_initial=0.02, retry_max=0.08, queue_size=100))
    with caplog.at_level(logging.DEBUG, logger="evpn.mqtt"):
        task = asyncio.create_task(pub.run())
        started = time.monotonic()
        await wait_until(lambda: pub.stats["attempts"] >= 4, timeout=5, what="four attempts")
        elapsed = time.monotonic() - started
        # Delays 0.01-0.02, 0.02-0.04, 0.04-0.08: no hot loop, and no giving up.
        assert elapsed >= 0.07
        stats = pub.stats
        assert stats["connected"] is False
        assert stats["last_error"].startswith("cannot connect: ")
        assert "refused" in stats["last_error"].lower()
        assert "\n" not in stats["last_error"]

        before = time.perf_counter()
        for i in range(5000):
            pub.event("membership", {"n": i})
        assert time.perf_counter() - before < 1.0
        assert pub.stats["queued"] == 100
        assert pub.stats["dropped"] == 4900
        assert not task.done()

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "cannot connect" in r.message]
    assert len(warnings) == 1  # one line per connection change, not per attempt
    assert pub.stats["queued"] == 100


async def test_run_is_cancelled_promptly_while_backing_off(closed_port: int) -> None:
    pub = Publisher(settings(port=closed_port, retry_initial=30.0, retry_max=30.0))
    task = asyncio.create_task(pub.run())
    await wait_until(lambda: pub.stats["last_error"] is not None, timeout=5)
    task.cancel()
    async with asyncio.timeout(1):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def test_events_from_another_thread_are_queued(closed_port: int) -> None:
    pub = Publisher(settings(port=closed_port, retry_initial=30.0, retry_max=30.0))
    task = asyncio.create_task(pub.run())
    await wait_until(lambda: pub._wake is not None, timeout=5)

    def produce() -> None:
        for i in range(100):
            pub.event("peer", {"n": i})

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join()
    assert pub.stats["queued"] == 100
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
