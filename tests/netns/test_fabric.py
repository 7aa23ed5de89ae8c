"""The reference fabric (containerlab/fabric.clab.yml) built with evpn-lab: three agent leaves and
one plain FRR 8.4 leaf (advertise-all-vni, no SMET) interoperate.

- FRR and the agents build each other's flood lists (IMET both ways).
- leaf4 takes no part in RFC 9251, so the agents send it every group ("no-igmp-proxy"): h4
  behind it gets the stream h1 sends, and leaf4's ingress replication brings h4's stream to h1.
- leaf3, without a joined host, gets no VXLAN copy of a group that h2 and h4 joined.

The lab gets a unique name (evpn-ir-t<6 hex>), so it never touches a developer's running fabric
(`make demo` uses evpn-ir-fabric); it is built once for the module and always torn down.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.lab import Lab, parse_topology
from tests.netns.netlab import frr_available, poll

pytestmark = pytest.mark.skipif(not frr_available(), reason="FRR (Debian package frr) not installed")

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "containerlab" / "fabric.clab.yml"
PROBE = [sys.executable, str(ROOT / "scripts" / "demo_probe.py")]
AGENT_LEAVES = ("leaf1", "leaf2", "leaf3")
AGENT_VTEPS = {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
FRR_VTEP = "10.0.0.4"
G1, G2 = "239.1.1.1", "239.2.2.2"  # h1 -> h2, h4;  h4 -> h1
COUNT = 100
PROBE_SECONDS = 12.0  # receivers and the capture run this long (the probes count until then)
CONVERGE = 45.0


def evpnctl(lab: Lab, node: str, view: str) -> Any:
    out = lab.exec(node, ["evpnctl", "show", view, "--json"], check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def agent_flood(lab: Lab, node: str) -> dict[str, bool]:
    """VNI 100's flood list on an agent leaf: VTEP -> igmp_proxy."""
    for vni in evpnctl(lab, node, "flood") or []:
        if vni["vni"] == 100:
            return {t["vtep"]: t["igmp_proxy"] for t in vni["vteps"]}
    return {}


def frr_remote_vteps(lab: Lab) -> set[str]:
    out = lab.exec("leaf4", ["vtysh", "-c", "show evpn vni 100 json"], check=False)
    try:
        vteps = json.loads(out.stdout or "{}").get("numRemoteVteps", [])
    except ValueError:
        return set()
    return set(vteps) if isinstance(vteps, list) else set()  # FRR 8.4: a list despite the name


def frr_flood_dsts(lab: Lab) -> set[str]:
    out = lab.exec("leaf4", "bridge fdb show dev vxlan100", check=False).stdout
    return {
        line.split(" dst ")[1].split()[0]
        for line in out.splitlines()
        if line.startswith("00:00:00:00:00:00 ") and " dst " in line
    }


def group_entry(lab: Lab, node: str, group: str) -> dict[str, Any] | None:
    for entry in evpnctl(lab, node, "groups") or []:
        if entry["vni"] == 100 and entry["group"] == group and entry["source"] == "*":
            found: dict[str, Any] = entry
            return found
    return None


def receivers(entry: dict[str, Any] | None) -> dict[str, list[str]]:
    return {r["vtep"]: r["why"] for r in entry["receivers"]} if entry else {}


def host_joined(lab: Lab, host: str, group: str) -> bool:
    """The probe's socket holds the membership on the host's eth1 (so it is listening)."""
    return f" {group}" in lab.exec(host, "ip -4 maddr show dev eth1", check=False).stdout


def packet_sockets(lab: Lab, node: str) -> int:
    """AF_PACKET sockets open in the node's network namespace (the vxlan probe opens one)."""
    return len(lab.exec(node, "cat /proc/net/packet", check=False).stdout.splitlines()) - 1


def bridge_has_member(lab: Lab, node: str, group: str, port: str) -> bool:
    out = lab.exec(node, "bridge mdb show dev br100", check=False).stdout
    return any(f"port {port} " in line and f"grp {group} " in line for line in out.splitlines())


@pytest.fixture(scope="module")
def fabric() -> Iterator[Lab]:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["name"] = f"evpn-ir-t{secrets.token_hex(3)}"
    lab = Lab(parse_topology(data, TOPOLOGY), log=lambda _line: None)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def expected_flood(leaf: str) -> set[str]:
    """An agent leaf's flood list: the other two agent VTEPs and FRR's."""
    return AGENT_VTEPS - {f"10.0.0.{leaf[-1]}"} | {FRR_VTEP}


def converged(lab: Lab) -> bool:
    return all(set(agent_flood(lab, leaf)) == expected_flood(leaf) for leaf in AGENT_LEAVES) and (
        frr_flood_dsts(lab) == AGENT_VTEPS
    )


@dataclass
class Traffic:
    got: dict[str, int]  # host -> datagrams received
    sent: dict[str, int]  # sending host -> datagrams sent
    leaf3_copies: dict[str, Any]  # vxlan probe on leaf3 eth1 (incoming), G1
    leaf3_control: dict[str, Any]  # the same for G2, which FRR floods to leaf3 too: the probe works
    groups_g1: dict[str, Any] | None  # leaf1's `show groups` entry for G1 while h1 sent


def _json_of(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=PROBE_SECONDS + 15)
    assert proc.returncode == 0, f"{what}: probe exited with {proc.returncode}"
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def traffic(fabric: Lab) -> Traffic:
    """h2 and h4 join G1, h1 joins G2, h3 joins nothing; h1 sends G1, h4 sends G2, both at once,
    while leaf3's uplink is captured."""
    lab = fabric
    poll(lambda: converged(lab), CONVERGE, 0.3, "flood lists on every leaf")

    def start(node: str, *args: str) -> subprocess.Popen[str]:
        return lab.popen(node, [*PROBE, *args], stdout=subprocess.PIPE, text=True)

    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        baseline = packet_sockets(lab, "leaf3")
        procs["leaf3"] = start("leaf3", "vxlan", "eth1", G1, str(PROBE_SECONDS), "in")
        procs["leaf3-g2"] = start("leaf3", "vxlan", "eth1", G2, str(PROBE_SECONDS), "in")
        procs["h2"] = start("h2", "receive", G1, "eth1", str(PROBE_SECONDS))
        procs["h4"] = start("h4", "receive", G1, "eth1", str(PROBE_SECONDS))
        procs["h1"] = start("h1", "receive", G2, "eth1", str(PROBE_SECONDS))
        started = time.monotonic()
        poll(lambda: packet_sockets(lab, "leaf3") >= baseline + 2, 10, 0.05, "leaf3's capture sockets")
        for host, group in (("h2", G1), ("h4", G1), ("h1", G2)):

            def joined(host: str = host, group: str = group) -> bool:
                return host_joined(lab, host, group)

            poll(joined, 10, 0.05, f"{host} to join {group}")
        # The joins reached the leaves: h2's via SMET at leaf1, h4's in leaf4's snooping bridge,
        # h1's in leaf1's bridge (a member port eth2).
        poll(
            lambda: "10.0.0.2" in receivers(group_entry(lab, "leaf1", G1)),
            15,
            0.1,
            "leaf1 to learn h2's join",
        )
        poll(
            lambda: bridge_has_member(lab, "leaf4", G1, "eth2"), 10, 0.1, "leaf4's bridge to learn h4's join"
        )
        poll(
            lambda: bridge_has_member(lab, "leaf1", G2, "eth2"), 10, 0.1, "leaf1's bridge to learn h1's join"
        )
        groups_g1 = group_entry(lab, "leaf1", G1)
        senders = {
            "h1": start("h1", "send", G1, "192.168.100.1", str(COUNT)),
            "h4": start("h4", "send", G2, "192.168.100.4", str(COUNT)),
        }
        sent = {h: _json_of(p, f"send from {h}")["sent"] for h, p in senders.items()}
        left = PROBE_SECONDS - (time.monotonic() - started)
        assert left > 1.5, (
            f"the streams ended only {left:.1f}s before the receivers stopped; raise PROBE_SECONDS"
        )
        got = {h: _json_of(procs.pop(h), f"receive on {h}")["received"] for h in ("h1", "h2", "h4")}
        leaf3 = _json_of(procs.pop("leaf3"), "capture on leaf3")
        control = _json_of(procs.pop("leaf3-g2"), "control capture on leaf3")
        return Traffic(got, sent, leaf3, control, groups_g1)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_frr_and_agents_build_each_others_flood_lists(fabric: Lab) -> None:
    for leaf in AGENT_LEAVES:

        def complete(leaf: str = leaf) -> dict[str, bool]:
            flood = agent_flood(fabric, leaf)
            return flood if set(flood) == expected_flood(leaf) else {}

        flood = poll(complete, CONVERGE, 0.3, f"{leaf}'s flood list")
        assert flood[FRR_VTEP] is False, f"{leaf}: FRR leaf4 must not count as an IGMP proxy: {flood}"
        assert all(flood[v] for v in flood if v != FRR_VTEP), f"{leaf}: agent VTEPs are IGMP proxies: {flood}"
    assert poll(lambda: frr_remote_vteps(fabric) == AGENT_VTEPS, CONVERGE, 0.3, "leaf4's remote VTEPs")
    assert poll(
        lambda: frr_flood_dsts(fabric) == AGENT_VTEPS, CONVERGE, 0.3, "leaf4's vxlan100 flood entries"
    )


def test_frr_leaf_receives_every_group_and_floods_into_the_agents(traffic: Traffic) -> None:
    rx = receivers(traffic.groups_g1)
    assert rx.get(FRR_VTEP) == ["no-igmp-proxy"], traffic.groups_g1
    assert rx.get("10.0.0.2") == ["smet"], traffic.groups_g1
    assert "10.0.0.3" not in rx, traffic.groups_g1
    assert traffic.got["h4"] == traffic.sent["h1"] == COUNT, traffic
    assert traffic.got["h1"] == traffic.sent["h4"] == COUNT, traffic


def test_leaf_without_receiver_gets_no_copy(traffic: Traffic) -> None:
    assert traffic.got["h2"] == traffic.sent["h1"] == COUNT, traffic
    assert traffic.got["h4"] == COUNT, traffic
    assert traffic.leaf3_copies["copies"] == 0, traffic.leaf3_copies
    # Not a blind capture: FRR leaf4 floods h4's G2 stream to every VTEP, leaf3 included.
    assert traffic.leaf3_control["copies"] == COUNT, traffic.leaf3_control
    assert traffic.leaf3_control["by_dst"] == {"10.0.0.3": COUNT}, traffic.leaf3_control
