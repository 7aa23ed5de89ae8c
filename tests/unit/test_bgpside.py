"""The BGP task against a scripted line source: bad input is reported and counted while good
routes around it still land; origination sends the command diff and keeps failures pending."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from pathlib import Path

from agent.bgpside import BgpSide
from agent.intake import AUTO, ImportPolicy, Intake
from agent.store import Store
from bgp.exabgp_json import ParseError
from bgp.originate import OriginSettings, VniOrigin, auto_rd, auto_rt

GOLDEN = Path(__file__).parent.parent / "golden"
ME = ip_address("10.0.0.2")


class ScriptedProcess:
    """Stands in for ExabgpProcess: yields fixed lines, answers commands from a script."""

    def __init__(self, lines: list[str], answers: list[bool] | None = None, idle: float = 0.0) -> None:
        self._lines = list(lines)
        self.sent: list[str] = []
        self.answers = answers or []
        self.idle = idle  # after the script: stay silent this long, then end the stream

    async def next_line(self, timeout: float | None = None) -> str | None:
        if self._lines:
            return self._lines.pop(0)
        if self.idle <= 0:
            raise EOFError
        wait = self.idle if timeout is None else min(timeout, self.idle)
        await asyncio.sleep(wait)
        self.idle -= wait
        return None

    def send(self, command: str) -> asyncio.Future[bool]:
        self.sent.append(command)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        fut.set_result(self.answers.pop(0) if self.answers else True)
        return fut


def good_lines() -> list[str]:
    return [
        line
        for line in (GOLDEN / "exabgp-5.0.15-two-agents.jsonl").read_text().splitlines()
        if '"update"' in line and "announce" in line
    ]


async def test_bad_lines_are_counted_and_good_routes_still_land() -> None:
    good = good_lines()
    bad_route = good[1].replace("061800010A0000010064000000000020EF010101200A00000102", "0618FFFF")
    garbage = [
        "{not json",
        "[1,2,3]",
        '{"type": "update"}',
        bad_route,
        '{"exabgp": "5.0.0", "type": "state"}',
        "\x00\xff",
    ]
    lines = [garbage[0], good[0], garbage[1], garbage[2], good[1], bad_route, garbage[4], good[2], garbage[5]]
    store = Store(own_vteps=[ME])
    side = BgpSide(ScriptedProcess(lines), Intake(store, ImportPolicy({100: AUTO})))  # type: ignore[arg-type]
    errors: list[ParseError] = []
    side.on_event = lambda ev: errors.append(ev) if isinstance(ev, ParseError) else None
    await side.run()
    a = ip_address("10.0.0.1")
    assert store.flood_list(100) == {a}
    assert store.receivers(100, None, ip_address("239.1.1.1")) == {a}
    assert store.receivers(100, ip_address("10.1.1.1"), ip_address("239.1.1.2")) == {a}
    assert len(errors) == 6
    assert side.intake.counters["parse-error"] == 6
    assert any("does not decode" in e.reason and e.peer == "10.0.0.1" for e in errors)
    assert side.lines_seen == len(lines)


async def test_origination_sends_diff_and_retries_refused_commands() -> None:
    origin = OriginSettings(ME, {100: VniOrigin(100, auto_rd(ME, 100, 0), (auto_rt(65000, 100),))})
    proc = ScriptedProcess([], answers=[True, False])
    side = BgpSide(proc, Intake(Store(), ImportPolicy({100: AUTO})), origin)  # type: ignore[arg-type]
    g = ip_address("239.1.1.1")
    assert await side.sync_origination({100: [(None, g)]}) == 1  # the SMET was refused
    assert len(side.announced) == 1 and proc.sent[0].startswith("announce evpn imet")
    assert await side.sync_origination({100: [(None, g)]}) == 0  # retried, nothing else re-sent
    assert len(proc.sent) == 3 and proc.sent[2].startswith("announce evpn smet")
    assert await side.sync_origination({}) == 0
    assert proc.sent[3].startswith("withdraw evpn smet") and len(side.announced) == 1


async def test_graceful_restart_sweep_happens_while_every_peer_is_silent() -> None:
    """After the peer goes down nothing more arrives; the stale paths must still go on time."""
    good = good_lines()
    down = good[0].split('"type"')[0] + (
        '"type": "state", "neighbor": { "address": { "local": "10.0.0.2", "peer": "10.0.0.1" }, '
        '"state": "down", "reason": "hold timer expired" } }'
    )
    store = Store(own_vteps=[ME])
    intake = Intake(store, ImportPolicy({100: AUTO}), graceful_restart={"10.0.0.1": 0.2})
    side = BgpSide(ScriptedProcess([good[0], down], idle=5.0), intake)  # type: ignore[arg-type]
    changes = []
    side.on_change = changes.append
    task = asyncio.create_task(side.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    while side.peer_states.get("10.0.0.1") != "down":
        await asyncio.sleep(0)
    assert store.path_count() == 1 and store.next_deadline() is not None  # kept, stale
    while store.path_count() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert store.path_count() == 0, "stale path not swept while the peer was silent"
    assert store.flood_list(100) == frozenset() and changes[-1].flood == {100}
    task.cancel()
