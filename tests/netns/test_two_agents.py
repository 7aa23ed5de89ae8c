"""Two agents' ExaBGP launchers peer over a veth; what one originates lands in the other's store,
and withdrawals and a session drop empty it again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from agent.bgpside import BgpSide
from agent.config import parse_config
from agent.intake import Intake
from agent.store import Store
from bgp.exabgp_json import Event, ParseError, RouteAnnounce
from bgp.speaker import ExabgpProcess
from tests.netns.netlab import Lab, wait_until

GOLDEN_DIR = Path(__file__).parent.parent / "golden"
# The agent's form (``receive { packets; }``, decoded by bgp.update) and ExaBGP's decoded form
# (``parsed``), which the agent still reads: the same session gives the same events in both.
GOLDEN = {
    True: GOLDEN_DIR / "exabgp-5.0.15-session-packets.jsonl",
    False: GOLDEN_DIR / "exabgp-5.0.15-session.jsonl",
}
VOLATILE = ("time", "pid", "ppid", "counter", "host")
A, B = ip_address("10.0.0.1"), ip_address("10.0.0.2")
G1, G2, S2 = ip_address("239.1.1.1"), ip_address("239.1.1.2"), ip_address("10.1.1.1")


@contextlib.asynccontextmanager
async def running(*sides: BgpSide) -> AsyncIterator[None]:
    """Start each side's ExaBGP and BGP task; stop them all however the body ends."""
    tasks = []
    try:
        for side in sides:
            await side.process.start()
            tasks.append(asyncio.create_task(side.run()))
        yield
    finally:
        for side in sides:
            await side.process.stop()
        for task in tasks:
            task.cancel()


def leaf(lab: Lab, ns: str, me, peer, vnis: list[int], name: str, raw: bool = True, **extra) -> BgpSide:  # type: ignore[no-untyped-def]
    """A leaf's BGP side built from the agent's own configuration model."""
    neighbor = {"address": str(peer), "asn": 65000, "hold_time": 9, **extra.pop("neighbor", {})}
    cfg = parse_config(
        {
            "router_id": str(me) if me.version == 4 else f"10.9.9.{int(me) & 0xFF}",
            "local_vtep": str(me),
            "asn": 65000,
            "neighbors": [neighbor],
            "vnis": [{"vni": v} for v in vnis],
            **extra,
        }
    )
    speaker = dataclasses.replace(cfg.speaker(), raw_updates=raw)
    process = ExabgpProcess(speaker, lab.workdir / name, netns=ns, python=sys.executable)
    intake = Intake(Store([me], cfg.store_limits()), cfg.import_policy(), cfg.graceful_restart_times())
    process.log_level = os.environ.get("EVPN_TEST_EXABGP_LOG", "INFO")
    return BgpSide(process, intake, cfg.origin())


@pytest.mark.parametrize("raw", [True, False], ids=["packets", "parsed"])
async def test_two_agents_exchange_imet_and_smet(lab: Lab, raw: bool) -> None:
    na, nb = lab.ns("a"), lab.ns("b")
    lab.veth(na, "eth0", "10.0.0.1/24", nb, "eth0", "10.0.0.2/24")
    sender = leaf(lab, na, A, B, [100, 200], "a", raw)
    receiver = leaf(lab, nb, B, A, [100, 200], "b", raw)
    events: list[Event] = []
    lines: list[str] = []
    receiver.on_event = events.append
    receiver.on_line = lines.append
    async with running(sender, receiver):
        await wait_until(lambda: receiver.peer_states.get(str(A)) == "up", what="session up")
        local = {100: [(None, G1), (S2, G2)]}
        assert await sender.sync_origination(local) == 0
        assert await receiver.sync_origination({}) == 0
        store = receiver.intake.store

        await wait_until(
            lambda: store.flood_list(200) == {A} and len(store.remote_groups(100)) == 2, what="routes"
        )
        assert store.flood_list(100) == {A}
        assert store.receivers(100, None, G1) == {A}
        assert store.receivers(100, S2, G2) == {A}
        # A claims IGMP proxy, so it gets nothing it did not ask for.
        assert store.receivers(100, None, G2) == frozenset()
        assert store.receivers(200, None, G1) == frozenset()
        # And the other way round: B's IMET reaches A in its own time (not ordered with A's).
        await wait_until(lambda: sender.intake.store.flood_list(100) == {B}, what="B's IMET at A")
        assert not [e for e in events if isinstance(e, ParseError)]
        imet = next(e for e in events if isinstance(e, RouteAnnounce) and e.route.CODE == 3)
        assert imet.attributes.mcast_flags is not None and imet.attributes.mcast_flags.igmp_proxy

        # Withdraw one SMET: only that interest goes.
        assert await sender.sync_origination({100: [(None, G1)]}) == 0
        await wait_until(lambda: store.receivers(100, S2, G2) == frozenset(), what="SMET withdraw")
        assert store.receivers(100, None, G1) == {A}

        # Drop the session: ExaBGP sends no withdraws, the store must flush the peer.
        await sender.process.stop()
        await wait_until(lambda: store.path_count() == 0, what="peer flush")
        assert store.flood_list(100) == frozenset() and store.vnis() == frozenset()
    if os.environ.get("EVPN_WRITE_GOLDEN"):
        GOLDEN[raw].write_text("".join(line + "\n" for line in lines))
    # ExaBGP's update lines are deterministic: the golden file must show the same messages.
    assert update_messages(lines) == update_messages(GOLDEN[raw].read_text().splitlines())


def update_messages(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        doc = json.loads(line)
        if doc.get("type") == "update":
            out.append(json.dumps(doc["neighbor"]["message"], sort_keys=True))
    return sorted(out)


async def test_route_refresh_replays_routes(lab: Lab) -> None:
    """A restarted API process asks for a refresh and gets the peer's routes again."""
    na, nb = lab.ns("a"), lab.ns("b")
    lab.veth(na, "eth0", "10.0.0.1/24", nb, "eth0", "10.0.0.2/24")
    # MD5 and graceful restart in the generated ExaBGP configuration, on both sides.
    sender = leaf(lab, na, A, B, [100], "a", neighbor={"md5": "s3cret pass"}, graceful_restart=30)
    receiver = leaf(lab, nb, B, A, [100], "b", neighbor={"md5": "s3cret pass"}, graceful_restart=30)
    async with running(sender, receiver):
        await wait_until(lambda: receiver.peer_states.get(str(A)) == "up", what="session up")
        await sender.sync_origination({100: [(None, G1)]})
        store = receiver.intake.store
        await wait_until(lambda: store.receivers(100, None, G1) == {A}, what="routes")
        # Forget everything, as a fresh agent would, then resync.
        fresh = Store(own_vteps=[B])
        receiver.intake.store = fresh
        assert await receiver.route_refresh()
        await wait_until(
            lambda: fresh.receivers(100, None, G1) == {A} and fresh.flood_list(100) == {A}, what="refresh"
        )


async def test_ipv6_underlay_vteps_and_groups(lab: Lab) -> None:
    """IPv6 everywhere: session, next hop, IMET originator, PMSI endpoint (VNI kept), SMET group."""
    a6, b6 = ip_address("fd00::1"), ip_address("fd00::2")
    g6, s6 = ip_address("ff0e::1:1"), ip_address("fd01::10")
    na, nb = lab.ns("a"), lab.ns("b")
    lab.veth(na, "eth0", "fd00::1/64 nodad", nb, "eth0", "fd00::2/64 nodad")
    sender = leaf(lab, na, a6, b6, [10100], "a")
    receiver = leaf(lab, nb, b6, a6, [10100], "b")
    receiver.on_line = lambda line: (lab.workdir / "b-lines.jsonl").open("a").write(line + "\n")
    async with running(sender, receiver):
        await wait_until(lambda: receiver.peer_states.get(str(a6)) == "up", what="IPv6 session up")
        assert await sender.sync_origination({10100: [(None, g6), (s6, g6)]}) == 0
        store = receiver.intake.store
        await wait_until(lambda: len(store.remote_groups(10100)) == 2, what="IPv6 SMETs")
        assert store.flood_list(10100) == {a6}  # VNI 10100 needs the raw PMSI label's low bits
        assert store.all_multicast(10100, 6) == frozenset()  # MLD proxy claimed
        assert store.receivers(10100, s6, g6) == {a6}
        assert receiver.intake.counters["parse-error"] == 0
