"""The MQTT publisher against a real Mosquitto inside a namespace: topics and payloads, the
retained state for late subscribers, a broker that dies and comes back, username/password, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.mqtt import MqttSettings, Publisher
from tests.netns.netlab import Broker, Lab, inside, poll, sh

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")

RID = "10.0.0.1"


# --------------------------------------------------------------------------- broker


@pytest.fixture
def brokers(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    made: list[Broker] = []

    def make(port: int = 1883, extra: str = "allow_anonymous true\n") -> Broker:
        workdir = tmp_path / f"broker{len(made)}"
        workdir.mkdir()
        broker = Broker(lab, lab.ns("mq"), workdir, port, extra)
        made.append(broker)
        broker.start()
        return broker

    yield make
    for broker in made:
        broker.kill()


# --------------------------------------------------------------------------- clients


class PublisherThread:
    """The publisher's asyncio loop in a thread that entered the broker's namespace."""

    def __init__(self, netns: str, settings: MqttSettings) -> None:
        self.pub = Publisher(settings)
        self.netns = netns
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self._started.wait(5)

    def _main(self) -> None:
        with inside(self.netns):
            asyncio.run(self._amain())

    async def _amain(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.create_task(self.pub.run())
        self._started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def stats(self) -> dict[str, Any]:
        return self.pub.stats

    def stop(self) -> None:
        assert self.loop is not None and self.task is not None
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)
        assert not self.thread.is_alive()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Hold the publisher's loop still (a blocking callback) for the body's duration."""
        assert self.loop is not None
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(10)

        self.loop.call_soon_threadsafe(hold)
        assert holding.wait(5)
        try:
            yield
        finally:
            release.set()


class Subscriber:
    """A paho subscriber inside the namespace; its socket is opened there, the subscription is
    acknowledged before the constructor returns."""

    def __init__(self, netns: str, port: int = 1883, topic: str = "evpn/#", **auth: Any) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        client = paho.Client(CallbackAPIVersion.VERSION2, reconnect_on_failure=False)
        if "username" in auth:
            client.username_pw_set(auth["username"], auth["password"])
        if "ca" in auth:
            client.tls_set(ca_certs=str(auth["ca"]))
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        with inside(netns):
            client.connect("127.0.0.1", port)
        client.subscribe(topic, qos=1)
        client.loop_start()
        self.client = client
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, _client: object, _userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def wait(self, pred: Callable[[list[tuple[str, dict[str, Any], bool]]], bool], what: str) -> None:
        def check() -> bool:
            with self._lock:
                return pred(list(self.messages))

        poll(check, 5, 0.01, what)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(t, p) for t, p, _ in self.messages if "/events/" in t]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def subscribed(netns: str, **kw: Any) -> Iterator[Subscriber]:
    sub = Subscriber(netns, **kw)
    try:
        yield sub
    finally:
        sub.close()


@contextlib.contextmanager
def publishing(netns: str, settings: MqttSettings) -> Iterator[PublisherThread]:
    runner = PublisherThread(netns, settings)
    try:
        yield runner
    finally:
        runner.stop()


def late_retained(netns: str, topic: str, port: int = 1883, extra: str = "") -> tuple[bool, dict[str, Any]]:
    """What a subscriber that connects now gets first on ``topic``: (retained, payload)."""
    out = sh(
        f"ip netns exec {netns} mosquitto_sub -h 127.0.0.1 -p {port} {extra} -t '{topic}' "
        f"-F '%r %p' -W 5 -C 1"
    ).stdout
    flag, payload = out.strip().split(" ", 1)
    return flag == "1", json.loads(payload)


def mqtt(port: int = 1883, **kw: Any) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=port, router_id=RID, retry_initial=0.05, retry_max=0.2, **kw)


# --------------------------------------------------------------------------- tests


def test_events_on_their_topics_and_retained_state(brokers: Callable[..., Broker]) -> None:
    broker = brokers()
    ns = broker.netns
    with subscribed(ns) as sub, publishing(ns, mqtt()) as runner:
        runner.pub.state({"vnis": 2, "peers": ["10.0.0.2"]})
        runner.pub.event("peer", {"peer": "10.0.0.2", "state": "up"})
        runner.pub.event("membership", {"vni": 100, "group": "239.1.1.1", "joined": True})
        runner.pub.event("flood-list", {"vni": 100, "vteps": ["10.0.0.2"]})
        runner.pub.event("vif-budget", {"family": 4, "used": 3, "limit": 32})
        runner.pub.event("error", {"message": "reconcile failed: vni 100"})
        sub.wait(lambda m: len([x for x in m if "/events/" in x[0]]) >= 5, "five events")
        events = sub.events()
        assert [t for t, _ in events] == [
            f"evpn/{RID}/events/{kind}"
            for kind in ("peer", "membership", "flood-list", "vif-budget", "error")
        ]
        assert events[1][1]["kind"] == "membership"
        assert events[1][1]["group"] == "239.1.1.1"
        assert isinstance(events[1][1]["time"], float)
        poll(lambda: runner.stats()["published"] == 5, 5, 0.01, "five acknowledged")
        assert runner.stats()["connected"] is True

        # Retained: a subscriber that arrives later still gets the state and the status.
        assert late_retained(ns, f"evpn/{RID}/state") == (True, {"vnis": 2, "peers": ["10.0.0.2"]})
        assert late_retained(ns, f"evpn/{RID}/status") == (True, {"online": True})
        runner.pub.state({"vnis": 3, "peers": []})
        sub.wait(lambda m: (f"evpn/{RID}/state", {"vnis": 3, "peers": []}, False) in m, "new state")
        assert late_retained(ns, f"evpn/{RID}/state") == (True, {"vnis": 3, "peers": []})
        assert runner.stats()["queued"] == 0
    # A clean stop says offline (the Last Will covers the unclean ones).
    assert late_retained(ns, f"evpn/{RID}/status") == (True, {"online": False})


def test_broker_dies_and_comes_back(brokers: Callable[..., Broker]) -> None:
    broker = brokers()
    ns = broker.netns
    with publishing(ns, mqtt(queue_size=5)) as runner:
        with subscribed(ns) as sub:
            runner.pub.state({"epoch": 1})
            runner.pub.event("peer", {"n": 0})
            sub.wait(lambda m: any("/events/" in x[0] for x in m), "first event")
        poll(lambda: runner.stats()["published"] == 1, 5, 0.01, "first event acknowledged")

        broker.kill()
        poll(lambda: not runner.stats()["connected"], 5, 0.01, "publisher notices the dead broker")
        for n in range(1, 9):  # from this (foreign) thread; never blocks
            runner.pub.event("membership", {"n": n})
        runner.pub.state({"epoch": 2})
        stats = runner.stats()
        assert (stats["queued"], stats["dropped"]) == (5, 3)
        poll(lambda: runner.stats()["attempts"] >= 3, 5, 0.01, "retries while the broker is away")
        assert runner.stats()["last_error"].startswith(("connection lost", "cannot connect"))

        # Keep the publisher still until the new broker has our subscriber, so nothing is missed.
        with runner.frozen():
            broker.start()
            sub2 = Subscriber(ns)
        try:
            sub2.wait(lambda m: len([x for x in m if "/events/" in x[0]]) >= 5, "queued events delivered")
            assert [p["n"] for _, p in sub2.events()] == [4, 5, 6, 7, 8]  # the oldest were dropped
            sub2.wait(lambda m: (f"evpn/{RID}/state", {"epoch": 2}, False) in m, "state after restart")
        finally:
            sub2.close()
        poll(lambda: runner.stats()["queued"] == 0, 5, 0.01, "queue drained")
        stats = runner.stats()
        assert stats["connected"] is True
        assert stats["reconnects"] == 1
        assert stats["published"] == 6
        assert stats["dropped"] == 3
        # The fresh broker (no persistence) has the state again because we re-published it.
        assert late_retained(ns, f"evpn/{RID}/state") == (True, {"epoch": 2})


def test_silent_broker_is_noticed_by_keepalive(brokers: Callable[..., Broker]) -> None:
    """A broker that stops answering (SIGSTOP) without closing anything: the keepalive gives up
    on it, and the event in flight is delivered on the next connection (at least once)."""
    broker = brokers()
    ns = broker.netns
    assert broker.proc is not None
    with subscribed(ns) as sub, publishing(ns, mqtt(keepalive=1)) as runner:
        poll(lambda: runner.stats()["connected"], 5, 0.01, "connected")
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            runner.pub.event("peer", {"peer": "10.0.0.2", "state": "down"})
            poll(lambda: not runner.stats()["connected"], 5, 0.05, "keepalive gives up")
            assert "keep alive" in runner.stats()["last_error"].lower()
            assert runner.stats()["queued"] == 1
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        sub.wait(lambda m: any(t.endswith("/events/peer") for t, _, _ in m), "the event after all")
        poll(lambda: runner.stats()["queued"] == 0 and runner.stats()["connected"], 5, 0.01, "drained")
        assert runner.stats()["reconnects"] >= 1


def test_username_and_password(brokers: Callable[..., Broker], tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    sh(f"mosquitto_passwd -b -c {passwd} agent s3cret")
    broker = brokers(extra=f"allow_anonymous false\npassword_file {passwd}\n")
    ns = broker.netns
    with publishing(ns, mqtt(username="agent", password="wrong")) as bad:
        poll(lambda: bad.stats()["last_error"], 5, 0.01, "an error for the wrong password")
        error = bad.stats()["last_error"]
        assert error.startswith("cannot connect: ")
        assert "not authori" in error.lower() or "password" in error.lower(), error
        assert bad.stats()["connected"] is False
    with (
        subscribed(ns, username="agent", password="s3cret") as sub,
        publishing(ns, mqtt(username="agent", password="s3cret")) as good,
    ):
        good.pub.event("peer", {"peer": "10.0.0.2", "state": "up"})
        sub.wait(lambda m: any(t.endswith("/events/peer") for t, _, _ in m), "event with credentials")
        assert good.stats()["last_error"] is None


def _ca(workdir: Path, name: str) -> tuple[Path, Path]:
    key, crt = workdir / f"{name}.key", workdir / f"{name}.crt"
    sh(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        f"-subj /CN={name} -keyout {key} -out {crt}"
    )
    return key, crt


def _server_cert(workdir: Path, ca_key: Path, ca_crt: Path) -> tuple[Path, Path]:
    key, csr, crt, ext = (workdir / f"server.{x}" for x in ("key", "csr", "crt", "ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    sh(
        f"openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 "
        f"-keyout {key} -out {csr}"
    )
    sh(
        f"openssl x509 -req -in {csr} -CA {ca_crt} -CAkey {ca_key} -CAcreateserial -days 2 "
        f"-extfile {ext} -out {crt}"
    )
    return key, crt


@pytest.fixture
def tls_broker(brokers: Callable[..., Broker], tmp_path: Path) -> tuple[Broker, Path]:
    """A broker with a TLS listener on 8883 whose certificate (for IP 127.0.0.1) our CA signed."""
    ca_key, ca_crt = _ca(tmp_path, "test-ca")
    key, crt = _server_cert(tmp_path, ca_key, ca_crt)
    tls = f"cafile {ca_crt}\ncertfile {crt}\nkeyfile {key}\n"
    return brokers(port=8883, extra=f"allow_anonymous true\n{tls}"), ca_crt


def test_tls(tls_broker: tuple[Broker, Path]) -> None:
    broker, ca_crt = tls_broker
    ns = broker.netns
    with (
        subscribed(ns, port=8883, ca=ca_crt) as sub,
        publishing(ns, mqtt(8883, tls=True, ca_file=ca_crt)) as runner,
    ):
        runner.pub.state({"tls": True})
        runner.pub.event("error", {"message": "over TLS"})
        sub.wait(lambda m: any(t.endswith("/events/error") for t, _, _ in m), "event over TLS")
        assert late_retained(ns, f"evpn/{RID}/state", 8883, f"--cafile {ca_crt}") == (True, {"tls": True})
        assert runner.stats()["connected"] is True


# paho does not close its socket when the TLS handshake fails; the garbage collector does.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_untrusted_server(tls_broker: tuple[Broker, Path], tmp_path: Path) -> None:
    broker, _ = tls_broker
    _, other_ca = _ca(tmp_path, "other-ca")
    with publishing(broker.netns, mqtt(8883, tls=True, ca_file=other_ca)) as untrusted:
        poll(lambda: untrusted.stats()["last_error"], 5, 0.01, "an error for an untrusted server")
        error = untrusted.stats()["last_error"]
        assert error.startswith("cannot connect: ") and "certificate verify failed" in error, error
        assert untrusted.stats()["connected"] is False
