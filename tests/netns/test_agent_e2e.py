"""The whole agent, end to end: three leaves in namespaces routed through a spine, `br100` /
`vxlan100` on each, a host behind each leaf, `evpn-agent run` on every leaf with an iBGP full
mesh between the agents, and a routed source on leaf1's IPMR edge port.

Hosts join with real sockets (the kernel sends the IGMP reports, the leaf's bridge snoops
them, the agent originates SMET); what each leaf's VTEP receives is captured on its uplink.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.netns import netlab
from tests.netns.netlab import Broker, Capture, Lab, inside, parse_udp, poll, sh

ROOT = Path(__file__).parents[2]
AGENT = [sys.executable, "-m", "agent.main"]
EVPNCTL = [sys.executable, "-m", "agent.cli"]
LEAVES = (1, 2, 3)
GROUP = "239.1.1.1"
HOST = {n: f"192.168.100.{n}" for n in LEAVES}
VTEP = {n: f"10.0.0.{n}" for n in LEAVES}
SOURCE = "10.50.0.2"
LEAF1 = {
    "ipmr": {"enabled": True, "edge": ["e1"], "svis": [100]},
    "mqtt": {"host": "127.0.0.1", "retry_initial": 0.2, "retry_max": 1},
}


@dataclass
class Fabric:
    lab: Lab
    ns: dict[str, str]
    workdir: Path
    agents: dict[int, subprocess.Popen[str]] = field(default_factory=dict)
    uplinks: dict[int, Capture] = field(default_factory=dict)
    hosts: dict[int, Capture] = field(default_factory=dict)
    broker: Broker | None = None
    subscriber: subprocess.Popen[bytes] | None = None

    def mqtt_lines(self) -> list[str]:
        return (self.workdir / "mqtt.txt").read_text(errors="replace").splitlines()

    def leaf(self, n: int) -> str:
        return self.ns[f"leaf{n}"]

    def config(self, n: int, **extra: object) -> dict[str, object]:
        cfg: dict[str, object] = {
            "router_id": VTEP[n],
            "local_vtep": VTEP[n],
            "asn": 65000,
            "neighbors": [
                {"address": VTEP[m], "asn": 65000, "local_address": VTEP[n], "hold_time": 9}
                for m in LEAVES
                if m != n
            ],
            "vnis": [{"vni": 100, "querier": f"192.168.100.{200 + n}"}],
            "workdir": str(self.workdir / f"leaf{n}"),
            "replication": {"startup_hold": 20},
            "log_level": "info",
        }
        if n == 1:
            cfg["ipmr"] = {"enabled": True, "edge": ["e1"]}
        cfg.update(extra)
        return cfg

    def write_config(self, n: int, **extra: object) -> Path:
        path = self.workdir / f"leaf{n}.yaml"
        path.write_text(yaml.safe_dump(self.config(n, **extra)))
        return path

    def start(self, n: int, **extra: object) -> subprocess.Popen[str]:
        path = self.write_config(n, **extra)
        log = (self.workdir / f"leaf{n}.log").open("a")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.leaf(n), *AGENT, "run", "--config", str(path)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            text=True,
        )
        log.close()
        self.lab.pids.append(proc.pid)
        self.agents[n] = proc
        # A socket file may be left from a killed run: wait for the agent to answer on it.
        poll(
            lambda: self.try_show(n, "summary") is not None or proc.poll() is not None,
            30,
            what=f"leaf{n}'s control socket",
        )
        assert proc.poll() is None, self.log(n)
        return proc

    def log(self, n: int) -> str:
        return (self.workdir / f"leaf{n}.log").read_text(errors="replace")[-4000:]

    def try_show(self, n: int, what: str) -> object:
        try:
            return self.show(n, what)
        except subprocess.CalledProcessError:
            return None

    def show(self, n: int, what: str) -> object:
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.leaf(n),
                *EVPNCTL,
                "show",
                what,
                "--json",
                "--socket",
                str(self.workdir / f"leaf{n}" / "control.sock"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)


def underlay(lab: Lab, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Spine routing the leaves' VTEP loopbacks; br100/vxlan100 and a host on each leaf."""
    ns = {name: lab.ns(name) for name in ("spine", "leaf1", "leaf2", "leaf3", "h1", "h2", "h3", *extra)}
    sh(f"ip netns exec {ns['spine']} sysctl -qw net.ipv4.ip_forward=1")
    for n in LEAVES:
        leaf = ns[f"leaf{n}"]
        lab.veth(leaf, "eth0", f"10.1.{n}.2/24", ns["spine"], f"s{n}", f"10.1.{n}.1/24")
        sh(f"ip -n {leaf} addr add {VTEP[n]}/32 dev lo")
        sh(f"ip -n {leaf} route add default via 10.1.{n}.1")
        sh(f"ip -n {ns['spine']} route add {VTEP[n]}/32 via 10.1.{n}.2")
        sh(f"ip -n {leaf} link add vxlan100 type vxlan id 100 local {VTEP[n]} dstport 4789 nolearning")
        sh(f"ip -n {leaf} link add br100 type bridge mcast_snooping 1")
        sh(f"ip -n {leaf} link set vxlan100 master br100")
        lab.veth(ns[f"h{n}"], "eth0", f"{HOST[n]}/24", leaf, "hp", "")
        sh(f"ip -n {leaf} link set hp master br100")
        sh(f"ip -n {leaf} link set vxlan100 up")
        sh(f"ip -n {leaf} link set br100 up")
        sh(f"ip netns exec {leaf} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
    return ns


def _build(lab: Lab, workdir: Path) -> Fabric:
    ns = underlay(lab, ("src",))
    # leaf1's routed edge port with a multicast source, and br100 as its SVI.
    lab.veth(ns["src"], "eth0", f"{SOURCE}/24", ns["leaf1"], "e1", "10.50.0.1/24")
    sh(f"ip -n {ns['leaf1']} addr add 192.168.100.254/24 dev br100")
    return Fabric(lab, ns, workdir)


def _vxlan_to_group(frame: bytes) -> object:
    from tests.netns.netlab import parse_vxlan

    inner = parse_vxlan(frame)
    return inner if inner is not None and inner.group == GROUP else None


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    workdir = tmp_path_factory.mktemp("e2e")
    lab = Lab(workdir)
    try:
        fab = _build(lab, workdir)
        fab.broker = Broker(lab, fab.leaf(1), workdir / "broker")
        (workdir / "broker").mkdir()
        fab.broker.start()
        fab.subscriber = subprocess.Popen(
            ["ip", "netns", "exec", fab.leaf(1), "mosquitto_sub", "-h", "127.0.0.1", "-t", "evpn/#", "-v"],
            stdout=(workdir / "mqtt.txt").open("w"),
            stderr=subprocess.DEVNULL,
        )
        lab.pids.append(fab.subscriber.pid)
        for n in LEAVES:
            fab.start(n, **(LEAF1 if n == 1 else {}))
        for n in LEAVES:
            fab.uplinks[n] = Capture(fab.leaf(n), "eth0", _vxlan_to_group)  # type: ignore[arg-type]
            fab.hosts[n] = Capture(
                fab.ns[f"h{n}"], "eth0", lambda f: p if (p := parse_udp(f)) and p.group == GROUP else None
            )
        for n in LEAVES:
            poll(
                lambda n=n: all(p["state"] == "up" for p in fab.show(n, "peers")),
                30,  # type: ignore[union-attr]
                what=f"leaf{n}'s sessions",
            )
        yield fab
    finally:
        for cap in [*fab.uplinks.values(), *fab.hosts.values()] if "fab" in locals() else []:
            cap.close()
        for proc in fab.agents.values() if "fab" in locals() else []:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in fab.agents.values() if "fab" in locals() else []:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        lab.close()


@contextlib.contextmanager
def joined(netns: str, group: str = GROUP) -> Iterator[None]:
    with inside(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        index = socket.if_nametoindex("eth0")
        s.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(group) + b"\0\0\0\0" + struct.pack("=i", index),
        )
    try:
        yield
    finally:
        s.close()


def streaming(
    netns: str, source: str, interval: float = 0.01, ttl: int = 8
) -> contextlib.AbstractContextManager[list[int]]:
    return netlab.streaming(netns, GROUP, source, interval, ttl, ifname="eth0")


def count(cap: Capture, prefix: bytes = b"seq-") -> int:
    return len(cap.with_payload(prefix))


def test_a_join_behind_leaf2_pulls_the_stream_there_and_never_to_leaf3(fabric: Fabric) -> None:
    with joined(fabric.ns["h2"]):
        # The join is snooped by leaf2's bridge, becomes an SMET, and leaf1 learns it.
        poll(
            lambda: any(
                g["group"] == GROUP and [r["vtep"] for r in g["receivers"]] == [VTEP[2]]
                for g in fabric.show(1, "groups")
            ),
            30,  # type: ignore[union-attr]
            what="leaf1 to see leaf2 as the receiver",
        )
        groups = [g for g in fabric.show(1, "groups") if g["group"] == GROUP]  # type: ignore[union-attr]
        assert groups == [
            {
                "vni": 100,
                "source": "*",
                "group": GROUP,
                "receivers": [{"vtep": VTEP[2], "why": ["smet"]}],
                "local_ports": [],
                "fanout": 1,
                "flood": 2,
            }
        ]
        with streaming(fabric.ns["h1"], HOST[1]):
            poll(lambda: count(fabric.hosts[2]) >= 20, 20, what="h2 gets h1's stream")
            assert count(fabric.uplinks[3]) == 0, "leaf3's VTEP got a copy"
            assert count(fabric.uplinks[2]) >= 20
    # h2 left: the stream stops at leaf2 (the leave, then the SMET withdrawal).
    with streaming(fabric.ns["h1"], HOST[1]) as sent:
        poll(
            lambda: not any(g["group"] == GROUP for g in fabric.show(1, "groups")),
            30,  # type: ignore[union-attr]
            what="leaf1 to drop leaf2's SMET",
        )
        mark = count(fabric.uplinks[2])
        poll(lambda: len(sent) >= 30, 10)
        assert count(fabric.uplinks[2]) == mark
    assert count(fabric.uplinks[3]) == 0


def test_a_routed_source_on_leaf1s_edge_port_reaches_h2_through_ipmr_and_vxlan(fabric: Fabric) -> None:
    with joined(fabric.ns["h2"]):
        poll(
            lambda: any(g["group"] == GROUP for g in fabric.show(1, "groups")),
            30,  # type: ignore[union-attr]
            what="leaf1 to learn h2's join",
        )
        with streaming(fabric.ns["src"], SOURCE, ttl=8):
            poll(
                lambda: any(p.source == SOURCE for p in fabric.hosts[2].with_payload(b"seq-")),
                20,
                what="the routed stream at h2",
            )
            routes = fabric.show(1, "mroutes")
            assert any(
                r["source"] == SOURCE
                and r["group"] == GROUP
                and r["iif"] == "e1"
                and r["oifs"] == ["br100"]
                and r["packets"] > 0
                for r in routes
            ), routes  # type: ignore[union-attr]
            vifs = fabric.show(1, "vifs")
            assert {v["interface"] for v in vifs["vifs"]} == {"e1", "br100"}  # type: ignore[index]
        assert not any(p.source == SOURCE for p in fabric.uplinks[3].with_payload(b"seq-"))


def test_mqtt_carries_the_join_event_and_the_retained_state(fabric: Fabric) -> None:
    with joined(fabric.ns["h2"], "239.7.7.7"):
        poll(
            lambda: any(
                line.startswith(f"evpn/{VTEP[1]}/events/membership ") and '"239.7.7.7"' in line
                for line in fabric.mqtt_lines()
            ),
            30,
            what="the membership event on MQTT",
        )
    late = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            fabric.leaf(1),
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-t",
            f"evpn/{VTEP[1]}/state",
            "-C",
            "1",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    state = json.loads(late.stdout)
    assert state["router_id"] == VTEP[1] and state["peers"] == {"up": 2, "total": 2}


def _kernel_state(netns: str) -> dict[str, object]:
    fdb = json.loads(sh(f"bridge -n {netns} -j fdb show dev vxlan100").stdout or "[]")
    mdb = sh(f"bridge -n {netns} mdb show dev vxlan100").stdout.split("\n")
    return {
        "flood": sorted(e["dst"] for e in fdb if e.get("mac") == "00:00:00:00:00:00" and "dst" in e),
        "mdb": sorted(line.strip() for line in mdb if line.strip()),
    }


def test_a_killed_agent_comes_back_without_interrupting_forwarding(fabric: Fabric) -> None:
    leaf1 = fabric.leaf(1)
    with joined(fabric.ns["h2"]):
        poll(
            lambda: any(g["group"] == GROUP for g in fabric.show(1, "groups")),
            30,  # type: ignore[union-attr]
            what="leaf1 to learn h2's join",
        )
        with (
            streaming(fabric.ns["h1"], HOST[1], interval=0.005),
            streaming(fabric.ns["src"], SOURCE, interval=0.01) as routed,
        ):
            poll(lambda: count(fabric.hosts[2]) >= 50, 20, what="the streams at h2")
            before = _kernel_state(leaf1)
            assert before["flood"] == [VTEP[2], VTEP[3]] and any(GROUP in line for line in before["mdb"])
            fabric.agents[1].kill()  # SIGKILL: no withdrawals, no clean-up
            fabric.agents[1].wait()
            killed = time.monotonic()
            # The kernel keeps the VXLAN FDB/MDB: h1's stream keeps reaching h2 with the agent dead.
            mark = count(fabric.hosts[2])
            poll(lambda: count(fabric.hosts[2]) >= mark + 50, 10, what="forwarding without the agent")
            assert _kernel_state(leaf1) == before
            fabric.start(1, **LEAF1)
            poll(
                lambda: all(p["state"] == "up" for p in fabric.show(1, "peers")),
                30,  # type: ignore[union-attr]
                what="leaf1's sessions again",
            )
            poll(
                lambda: fabric.show(1, "summary")["replication"].get("converged"),
                30,  # type: ignore[index]
                what="leaf1 converged",
            )
            # IPMR died with the process and is rebuilt: the routed source reaches h2 again.
            poll(
                lambda: any(
                    p.source == SOURCE and fabric.hosts[2].times[i] > killed
                    for i, p in enumerate(list(fabric.hosts[2].packets))
                ),
                30,
                what="the routed stream after the restart",
            )
            after = _kernel_state(leaf1)
        assert after == before, "the restarted agent changed the kernel's replication state"
        # Not one packet of h1's stream was lost at h2 across kill and restart.
        got = sorted(
            {int(p.payload[4:11]) for p in fabric.hosts[2].with_payload(b"seq-") if p.source == HOST[1]}
        )
        first = got[0]
        missing = sorted(set(range(first, got[-1] + 1)) - set(got))
        assert not missing, f"{len(missing)} packets of the VXLAN stream lost: {missing[:10]}"
        routed_times = sorted(
            t
            for p, t in zip(fabric.hosts[2].packets, fabric.hosts[2].times, strict=True)
            if p.source == SOURCE
        )
        gap = max((b - a for a, b in itertools.pairwise(routed_times)), default=0.0)
        print(f"routed (IPMR) stream gap across the restart: {gap * 1000:.0f} ms ({len(routed)} sent)")


def test_bad_inputs_give_one_clear_line_and_the_documented_exit_code(fabric: Fabric, tmp_path: Path) -> None:
    def agent(*args: str, netns: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        return subprocess.run(
            [*prefix, *AGENT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**fabric.config(2), "colour": "red"}))
    out = agent("check", "--config", str(bad))
    assert out.returncode == 2 and out.stderr.strip().endswith("colour: unknown key"), out.stderr

    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({**fabric.config(2), "vnis": [{"vni": 100}, {"vni": 200}]}))
    out = agent("check", "--config", str(missing), netns=fabric.leaf(2))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"evpn-agent: {missing}: vnis[1].bridge: interface 'br200' does not exist",
        f"evpn-agent: {missing}: vnis[1].device: interface 'vxlan200' does not exist",
    ]

    # A second agent on leaf1's IPMR table: refused at start, naming the conflict.
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump({**fabric.config(1, **LEAF1), "workdir": str(tmp_path / "second")}))
    out = agent("run", "--config", str(second), netns=fabric.leaf(1))
    assert out.returncode == 4
    assert "cannot take IPv4 multicast routing table default: EADDRINUSE" in out.stderr
    assert "another multicast router" in out.stderr

    assert fabric.agents[1].poll() is None, "the first agent must be unaffected"


def test_an_unreachable_broker_leaves_the_agent_running_and_sigterm_stops_it_cleanly(
    lab: Lab, tmp_path: Path
) -> None:
    leaf = lab.ns("solo")
    sh(f"ip -n {leaf} addr add 10.0.0.9/32 dev lo")
    sh(f"ip -n {leaf} link add vxlan100 type vxlan id 100 local 10.0.0.9 dstport 4789 nolearning")
    sh(f"ip -n {leaf} link add br100 type bridge")
    sh(f"ip -n {leaf} link set vxlan100 master br100")
    sh(f"ip -n {leaf} link set vxlan100 up")
    sh(f"ip -n {leaf} link set br100 up")
    config = tmp_path / "solo.yaml"
    workdir = tmp_path / "solo"
    config.write_text(
        yaml.safe_dump(
            {
                "router_id": "10.0.0.9",
                "local_vtep": "10.0.0.9",
                "asn": 65000,
                "vnis": [{"vni": 100}],
                "workdir": str(workdir),
                "mqtt": {"host": "127.0.0.1", "port": 1999, "retry_initial": 0.2},
            }
        )
    )
    log = (tmp_path / "solo.log").open("w")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", leaf, *AGENT, "run", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        text=True,
    )
    lab.pids.append(proc.pid)

    def summary() -> dict[str, object] | None:
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                leaf,
                *EVPNCTL,
                "show",
                "summary",
                "--json",
                "--socket",
                str(workdir / "control.sock"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(out.stdout) if out.returncode == 0 else None

    def mqtt_error() -> dict[str, object] | None:
        s = summary()
        mqtt = s.get("mqtt") if s else None
        return s if isinstance(mqtt, dict) and mqtt.get("last_error") else None

    state = poll(mqtt_error, 30, what="an MQTT error in the summary")
    assert state["mqtt"]["connected"] is False  # type: ignore[index]
    assert "refused" in state["mqtt"]["last_error"].lower()  # type: ignore[index]
    assert proc.poll() is None, "a missing broker must not stop the agent"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not (workdir / "control.sock").exists()
    out = subprocess.run(
        ["ip", "netns", "exec", leaf, *EVPNCTL, "show", "summary", "--socket", str(workdir / "control.sock")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"evpnctl: the agent is not running (no control socket at {workdir}/control.sock)"
    )


def test_sighup_applies_vni_changes_without_restarting_bgp(fabric: Fabric) -> None:
    leaf3 = fabric.agents[3]
    exabgp = (fabric.workdir / "leaf3" / "exabgp.pid").read_text()
    fabric.write_config(3, vnis=[])  # leaf3 drops VNI 100
    leaf3.send_signal(signal.SIGHUP)
    poll(
        lambda: (
            [v["vteps"] for v in fabric.show(1, "flood") if v["vni"] == 100]  # type: ignore[union-attr]
            == [[{"vtep": VTEP[2], "igmp_proxy": True, "mld_proxy": True}]]
        ),
        30,
        what="leaf3 gone from the flood list",
    )
    fabric.write_config(3)
    leaf3.send_signal(signal.SIGHUP)
    poll(
        lambda: len(next(v for v in fabric.show(1, "flood") if v["vni"] == 100)["vteps"]) == 2,
        30,  # type: ignore[union-attr]
        what="leaf3 back in the flood list",
    )
    assert (fabric.workdir / "leaf3" / "exabgp.pid").read_text() == exabgp, "ExaBGP was restarted"
    assert all(p["state"] == "up" for p in fabric.show(3, "peers"))  # type: ignore[union-attr]
    assert leaf3.poll() is None


def test_a_restarted_api_process_resyncs_with_a_route_refresh(fabric: Fabric) -> None:
    """ExaBGP respawns its API process (the relay); the agent asks its peers to resend."""
    before = fabric.show(2, "summary")
    sh(f"ip netns exec {fabric.leaf(2)} pkill -f '[b]gp[.]relay'")
    poll(lambda: "restarted the API process" in fabric.log(2), 30, what="leaf2 noticing the new API process")
    poll(
        lambda: fabric.show(2, "summary")["flood_entries"] == before["flood_entries"],
        30,  # type: ignore[index]
        what="leaf2's flood list after the refresh",
    )
    assert all(p["state"] == "up" for p in fabric.show(2, "peers"))  # type: ignore[union-attr]


def test_broadcast_still_reaches_every_leaf(fabric: Fabric) -> None:
    """ARP from h1 for h3 is broadcast: the flood list takes it to leaf2 and leaf3 alike."""

    def arp(frame: bytes) -> object:
        from tests.netns.netlab import parse_vxlan

        inner = parse_vxlan(frame)
        return (
            inner if inner is not None and not inner.group and inner.payload[12:14] == b"\x08\x06" else None
        )

    caps = {n: Capture(fabric.leaf(n), "eth0", arp) for n in (2, 3)}  # type: ignore[arg-type]
    try:
        sh(f"ip -n {fabric.ns['h1']} neigh flush all")
        sh(f"ip netns exec {fabric.ns['h1']} ping -c 1 -W 2 {HOST[3]}")
        poll(lambda: all(c.packets for c in caps.values()), 10, what="h1's ARP request at leaf2 and leaf3")
    finally:
        for cap in caps.values():
            cap.close()
