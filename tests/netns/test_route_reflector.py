"""Agents behind an FRR route reflector (bgpd alone, `-Z`) in the spine namespace.

FRR reflects IMET but silently drops SMET (DESIGN.md section 7, docs/interop.md "Route
reflectors"). With `send_smet: false` towards the reflector an agent claims no IGMP/MLD proxy,
so the others send it every group: no loss, only selectivity lost. With `send_smet: true` it
claims proxy, its SMETs vanish at the reflector, and receivers behind it are black-holed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns.netlab import Capture, Lab, frr_available, parse_udp, poll, sh
from tests.netns.test_agent_e2e import (
    GROUP,
    HOST,
    LEAVES,
    VTEP,
    Fabric,
    _vxlan_to_group,
    count,
    joined,
    streaming,
    underlay,
)

pytestmark = pytest.mark.skipif(not frr_available(), reason="FRR (bgpd, vtysh) not installed")

RR = "10.0.0.9"


@dataclass
class Underlay:
    lab: Lab
    ns: dict[str, str]
    workdir: Path
    frr: Path

    def vtysh(self, command: str) -> str:
        return sh(
            f"ip netns exec {self.ns['spine']} vtysh --vty_socket {self.frr} -c '{command}'", check=False
        ).stdout


@dataclass
class RrFabric(Fabric):
    rr: Underlay | None = None

    def reflector(self, command: str) -> str:
        assert self.rr is not None
        return self.rr.vtysh(command)


def _reflector_conf() -> str:
    lines = [
        "hostname rr",
        "router bgp 65000",
        f" bgp router-id {RR}",
        f" bgp cluster-id {RR}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
    ]
    for n in LEAVES:
        lines += [
            f" neighbor {VTEP[n]} remote-as 65000",
            f" neighbor {VTEP[n]} update-source {RR}",
            f" neighbor {VTEP[n]} timers connect 1",
        ]
    lines.append(" address-family l2vpn evpn")
    for n in LEAVES:
        lines += [f"  neighbor {VTEP[n]} activate", f"  neighbor {VTEP[n]} route-reflector-client"]
    lines += [" exit-address-family", ""]
    return "\n".join(lines)


def _build(lab: Lab, workdir: Path) -> Underlay:
    """The e2e spine/leaf/host underlay without the IPMR edge, plus the reflector on the spine."""
    ns = underlay(lab)
    spine = ns["spine"]
    sh(f"ip -n {spine} addr add {RR}/32 dev lo")
    frr = workdir / "rr"
    frr.mkdir()
    os.chmod(frr, 0o777)
    (frr / "bgpd.conf").write_text(_reflector_conf())
    sh(
        f"ip netns exec {spine} /usr/lib/frr/bgpd -d -Z -u root -g frrvty --vty_socket {frr} "
        f"-A 127.0.0.1 -f {frr}/bgpd.conf -i {frr}/bgpd.pid -p 179"
    )
    poll((frr / "bgpd.pid").exists, 10, what="the reflector's pid file")
    lab.pids.append(int((frr / "bgpd.pid").read_text().strip()))
    return Underlay(lab, ns, workdir, frr)


@pytest.fixture
def fabric(lab: Lab, request: pytest.FixtureRequest) -> Iterator[RrFabric]:
    """A fresh underlay (no kernel state left by another case's agents) and fresh agents, each
    peering only with the reflector; `send_smet` towards it from the parameter."""
    send_smet: bool = request.param
    underlay = _build(lab, lab.workdir)
    fab = RrFabric(lab, underlay.ns, lab.workdir, rr=underlay)
    try:
        for n in LEAVES:
            neighbor = {"address": RR, "asn": 65000, "local_address": VTEP[n], "hold_time": 9}
            fab.start(n, neighbors=[{**neighbor, "send_smet": send_smet}], ipmr={"enabled": False})
        for n in LEAVES:
            fab.uplinks[n] = Capture(fab.leaf(n), "eth0", _vxlan_to_group)  # type: ignore[arg-type]
            fab.hosts[n] = Capture(
                fab.ns[f"h{n}"], "eth0", lambda f: p if (p := parse_udp(f)) and p.group == GROUP else None
            )
        for n in LEAVES:
            poll(
                lambda n=n: [p["state"] for p in fab.show(n, "peers")] == ["up"],  # type: ignore[union-attr]
                30,
                what=f"leaf{n}'s session with the reflector",
            )
            poll(
                lambda n=n: fab.show(n, "summary")["replication"].get("converged"),  # type: ignore[index]
                30,
                what=f"leaf{n} converged",
            )
        yield fab
    finally:
        for cap in [*fab.uplinks.values(), *fab.hosts.values()]:
            cap.close()
        for proc in fab.agents.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in fab.agents.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def _flood(fab: Fabric, n: int) -> list[dict[str, object]]:
    return [v["vteps"] for v in fab.show(n, "flood") if v["vni"] == 100]  # type: ignore[union-attr,index]


def _wait_for_imets(fab: Fabric, proxy: bool) -> None:
    for n in LEAVES:
        want = [[{"vtep": VTEP[m], "igmp_proxy": proxy, "mld_proxy": proxy} for m in LEAVES if m != n]]
        poll(lambda n=n, want=want: _flood(fab, n) == want, 30, what=f"leaf{n}'s flood list via the RR")


def _wait_for_local_join(fab: Fabric, n: int) -> None:
    poll(
        lambda: any(
            g["group"] == GROUP and g["local_ports"] == ["hp"]
            for g in fab.show(n, "groups")  # type: ignore[union-attr]
        ),
        30,
        what=f"leaf{n} to snoop the local join",
    )


def _fence(fab: Fabric, src: int, dst: int) -> None:
    """A broadcast (ARP) from h`src` towards h`dst`, sent after the stream, answered only
    once it has crossed the same flood path: anything of the stream is there by then."""
    sh(f"ip -n {fab.ns[f'h{src}']} neigh flush all")
    sh(f"ip netns exec {fab.ns[f'h{src}']} ping -c 1 -W 5 {HOST[dst]}")


def _seqs(cap: Capture) -> set[int]:
    return {int(p.payload[4:11]) for p in cap.with_payload(b"seq-") if p.source == HOST[1]}


@pytest.mark.parametrize("fabric", [False], indirect=True, ids=["send_smet-false"])
def test_without_smet_towards_the_reflector_every_leaf_gets_every_group(fabric: RrFabric) -> None:
    fab = fabric
    _wait_for_imets(fab, proxy=False)
    with joined(fab.ns["h2"]):
        _wait_for_local_join(fab, 2)
        with streaming(fab.ns["h1"], HOST[1]) as sent:
            poll(lambda: len(sent) >= 100, 20, what="100 packets sent")
        _fence(fab, 1, 2)
        total = len(sent)
        # No loss at h2 ...
        assert _seqs(fab.hosts[2]) == set(range(total)), f"h2 got {count(fab.hosts[2])} of {total}"
        # ... and leaf3's VTEP got its copies too, with nobody joined behind it.
        assert count(fab.uplinks[3]) == total
    # No SMET was sent, so no agent has a remote group.
    for n in LEAVES:
        assert fab.show(n, "summary")["remote_groups"] == 0  # type: ignore[index]


@pytest.mark.parametrize("fabric", [True], indirect=True, ids=["send_smet-true"])
def test_smet_towards_the_reflector_black_holes_the_receivers(fabric: RrFabric) -> None:
    fab = fabric
    _wait_for_imets(fab, proxy=True)
    with joined(fab.ns["h2"]):
        _wait_for_local_join(fab, 2)  # leaf2 originates its SMET now; the reflector drops it
        with streaming(fab.ns["h1"], HOST[1]) as sent:
            poll(lambda: len(sent) >= 100, 20, what="100 packets sent")
        _fence(fab, 1, 2)
        assert not any(g["group"] == GROUP for g in fab.show(1, "groups")), fab.show(1, "groups")  # type: ignore[union-attr]
        assert count(fab.hosts[2]) == 0, "h2 got the stream without its SMET reaching leaf1"
        assert count(fab.uplinks[2]) == 0 and count(fab.uplinks[3]) == 0
    # The reflector really holds the IMETs and nothing else (types 6-8 are dropped).
    table = fab.reflector("show bgp l2vpn evpn route")
    assert all(f"[3]:[0]:[32]:[{VTEP[n]}]" in table for n in LEAVES), table
    assert "[6]:" not in table, table
