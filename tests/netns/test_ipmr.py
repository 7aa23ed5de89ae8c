"""The IPMR driver proven with packets: a source namespace, a router namespace running the
driver, three receivers on their own veths. Receivers join with real sockets (the kernel
sends the IGMP/MLD reports); what reaches each receiver's link is captured there.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest

from agent.store import RemoteImet, RemoteSmet, Store
from ipmr.driver import IpmrDriver, IpmrSettings, parse_static_route
from ipmr.mrt import MrtError
from tests.netns import netlab
from tests.netns.netlab import Capture, Lab, inside, parse_udp, poll, sh
from tests.netns.smcroute import Smcroute, mroute_show, smcroute_available

GROUPS = {4: "239.1.1.1", 6: "ff0e::101"}
SOURCE = {4: "10.1.0.2", 6: "fd01::2"}


@dataclass
class Edge:
    lab: Lab
    ns: dict[str, str]
    captures: dict[str, Capture] = field(default_factory=dict)

    def capture(self, family: int) -> dict[str, Capture]:
        group = GROUPS[family]

        def pick(frame: bytes) -> object:
            packet = parse_udp(frame)
            return packet if packet is not None and packet.group == group else None

        return {r: Capture(self.ns[r], "eth0", pick) for r in ("r1", "r2", "r3")}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    lab = Lab(tmp_path_factory.mktemp("ipmr"))
    try:
        ns = {name: lab.ns(name) for name in ("src", "rtr", "r1", "r2", "r3")}
        lab.veth(ns["src"], "eth0", "10.1.0.2/24", ns["rtr"], "s0", "10.1.0.1/24")
        sh(f"ip -n {ns['src']} addr add fd01::2/64 dev eth0 nodad")
        sh(f"ip -n {ns['rtr']} addr add fd01::1/64 dev s0 nodad")
        for n in (1, 2, 3):
            lab.veth(ns["rtr"], f"e{n}", f"10.2.{n}.1/24", ns[f"r{n}"], "eth0", f"10.2.{n}.2/24")
            sh(f"ip -n {ns['rtr']} addr add fd02:{n}::1/64 dev e{n} nodad")
            sh(f"ip -n {ns[f'r{n}']} addr add fd02:{n}::2/64 dev eth0 nodad")
        for name in ns.values():
            sh(f"ip netns exec {name} sysctl -qw net.ipv4.conf.all.rp_filter=0")
        yield Edge(lab, ns)
    finally:
        lab.close()


@contextlib.contextmanager
def running(netns: str, settings: IpmrSettings, store: Store | None = None) -> Iterator[IpmrDriver]:
    """The driver serving in a thread inside ``netns``."""
    box: dict[str, object] = {}
    ready = threading.Event()
    stop = threading.Event()

    def target() -> None:
        with inside(netns):
            driver = IpmrDriver(settings, store)
            try:
                box["errors"] = driver.start()
            except Exception as exc:
                box["error"] = exc
                ready.set()
                return
            box["driver"] = driver
            ready.set()
            try:
                driver.serve(stop, refresh_every=0.5)
            finally:
                driver.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    try:
        yield box["driver"]  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(5)


@contextlib.contextmanager
def joined(netns: str, family: int, group: str, ifname: str = "eth0") -> Iterator[None]:
    """A receiver socket joined to ``group``; leaving the block leaves the group."""
    with inside(netns):
        index = socket.if_nametoindex(ifname)
        if family == 4:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            mreqn = socket.inet_aton(group) + b"\0\0\0\0" + struct.pack("=i", index)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.setsockopt(
                socket.IPPROTO_IPV6,
                socket.IPV6_JOIN_GROUP,
                socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index),
            )
    try:
        yield
    finally:
        s.close()


def streaming(
    netns: str, family: int, group: str, interval: float = 0.01, source: str | None = None
) -> contextlib.AbstractContextManager[list[int]]:
    return netlab.streaming(netns, group, source or SOURCE[family], interval)


def count(cap: Capture) -> int:
    return len(cap.with_payload(b"seq-"))


def wait_until_silent(quiet: Capture, busy: Capture, what: str, timeout: float = 15.0) -> None:
    """Until ``quiet`` got nothing while ``busy`` got 10 more packets (proves it stopped)."""
    deadline = time.monotonic() + timeout
    while True:
        q0, b0 = count(quiet), count(busy)
        poll(lambda b0=b0: count(busy) >= b0 + 10, timeout, what="traffic on the busy receiver")
        if count(quiet) == q0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still receiving after {timeout}s")


def settings(family: int, **kw: object) -> IpmrSettings:
    return IpmrSettings(edge=("s0", "e1", "e2", "e3"), families=(family,), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", [4, 6])
def test_joined_receivers_get_the_stream_others_never_and_a_leaver_stops(edge: Edge, family: int) -> None:
    group = GROUPS[family]
    caps = edge.capture(family)
    try:
        with (
            running(edge.ns["rtr"], settings(family)) as driver,
            joined(edge.ns["r1"], family, group),
            streaming(edge.ns["src"], family, group),
        ):
            with joined(edge.ns["r3"], family, group):
                poll(lambda: count(caps["r1"]) >= 5 and count(caps["r3"]) >= 5, 15, what="r1 and r3 get it")
                members = {i for i, _s, g, _t in driver.memberships(family).entries() if str(g) == group}
                assert members == {"e1", "e3"}
            # r3 left: it stops getting the stream, r1 goes on.
            wait_until_silent(caps["r3"], caps["r1"], "r3 after leaving")
            assert count(caps["r2"]) == 0, "r2 never joined"
            assert count(caps["r1"]) >= 20
            # The read path: the kernel holds exactly what the driver wants, with counters.
            with inside(edge.ns["rtr"]):  # the read path runs in the caller's namespace
                assert driver.verify() == []
                lines = driver.show_mroutes(family)
                vifs = {row["interface"]: row for row in driver.show_vifs(family)}
            prefix = f"({SOURCE[family]}, {group}) iif s0 oifs e1 packets"
            assert any(line.startswith(prefix) for line in lines), lines
            assert set(vifs) == {"s0", "e1", "e2", "e3"} and vifs["e1"]["packets_out"] >= 20
    finally:
        for cap in caps.values():
            cap.close()


def test_static_routes_forward_without_any_join(edge: Edge) -> None:
    route = parse_static_route("*", GROUPS[4], "s0", ["e2"])
    caps = edge.capture(4)
    try:
        with running(edge.ns["rtr"], settings(4, routes=(route,))), streaming(edge.ns["src"], 4, GROUPS[4]):
            poll(lambda: count(caps["r2"]) >= 5, 15, what="r2 gets the statically routed stream")
            wait_until_silent(caps["r1"], caps["r2"], "r1 without a route")
            out = sh(f"ip -n {edge.ns['rtr']} mroute show").stdout
            assert f"({SOURCE[4]},{GROUPS[4]})" in out and "Iif: s0" in out and "e2" in out
    finally:
        for cap in caps.values():
            cap.close()


def test_a_source_behind_a_member_port_is_not_sent_back_out_of_it(edge: Edge) -> None:
    """The input VIF is never an output, even when a member sits behind it."""
    caps = edge.capture(4)
    try:
        with (
            running(edge.ns["rtr"], settings(4)) as driver,
            joined(edge.ns["r1"], 4, GROUPS[4]),
            joined(edge.ns["r3"], 4, GROUPS[4]),
            streaming(edge.ns["r1"], 4, GROUPS[4], source="10.2.1.2"),
        ):
            poll(lambda: count(caps["r3"]) >= 10, 15, what="r3 gets r1's stream")
            flows = [f for f in driver.routes(4) if str(f.source) == "10.2.1.2"]
            assert flows and all(f.iif not in driver.routes(4)[f] for f in flows)
            assert count(caps["r1"]) == 0, "r1's own stream came back to it"
    finally:
        for cap in caps.values():
            cap.close()


def test_strict_rp_filter_with_a_route_back_elsewhere_is_diagnosed(edge: Edge) -> None:
    rtr = edge.ns["rtr"]
    route = parse_static_route(SOURCE[4], GROUPS[4], "s0", ["e2"])
    sh(f"ip -n {rtr} route add {SOURCE[4]}/32 via 10.2.1.2 dev e1")
    sh(f"ip netns exec {rtr} sysctl -qw net.ipv4.conf.s0.rp_filter=1")
    try:
        with running(rtr, settings(4, routes=(route,))) as driver, inside(rtr):
            problems = driver.rpf_problems()
            assert problems == [
                f"source {SOURCE[4]} arrives on s0 but the route back leaves by e1; rp_filter is strict (1) "
                "on s0, so the kernel drops it before multicast routing: set rp_filter to 2 (loose) or fix "
                "the route"
            ]
            sh(f"ip netns exec {rtr} sysctl -qw net.ipv4.conf.s0.rp_filter=2")
            assert driver.rpf_problems() == []
    finally:
        sh(f"ip netns exec {rtr} sysctl -qw net.ipv4.conf.s0.rp_filter=0")
        sh(f"ip -n {rtr} route del {SOURCE[4]}/32", check=False)


# --------------------------------------------------------------------------- MAXVIFS

SVIS = 32


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """A router with one edge receiver (e0 -> r0) and 32 SVIs br1..br32, each bridging one
    port to namespace ``srcs``, which sends from its 32 interfaces: 33 candidate VIFs."""
    lab = Lab(tmp_path_factory.mktemp("maxvifs"))
    try:
        ns = {name: lab.ns(name) for name in ("srcs", "rtr", "r0")}
        rtr, srcs = ns["rtr"], ns["srcs"]
        lab.veth(rtr, "e0", "10.9.0.1/24", ns["r0"], "eth0", "10.9.0.2/24")
        rtr_batch, src_batch = [], []
        for n in range(1, SVIS + 1):
            sh(f"ip link add p{n} netns {rtr} type veth peer v{n} netns {srcs}")
            rtr_batch += [
                f"link add br{n} type bridge mcast_snooping 0",
                f"link set p{n} master br{n}",
                f"addr add 10.50.{n}.1/24 dev br{n}",
                f"link set p{n} up",
                f"link set br{n} up",
            ]
            src_batch += [f"addr add 10.50.{n}.2/24 dev v{n}", f"link set v{n} up"]
        for name, batch in ((rtr, rtr_batch), (srcs, src_batch)):
            subprocess.run(
                ["ip", "-n", name, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True
            )
        for name in ns.values():
            sh(f"ip netns exec {name} sysctl -qw net.ipv4.conf.all.rp_filter=0")
        yield Edge(lab, ns)
    finally:
        lab.close()


def _send_from_every_svi(netns: str, group: str, tag: bytes) -> None:
    with inside(netns):
        for n in range(1, SVIS + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(f"10.50.{n}.2"))
                s.sendto(tag + f"-{n:02d}".encode(), (group, 5000))


def _sources_seen(cap: Capture, tag: bytes) -> set[int]:
    return {int(p.payload[len(tag) + 1 :]) for p in cap.with_payload(tag + b"-")}


@pytest.mark.parametrize("tables", [(253,), (253, 100)])
def test_maxvifs_refuses_the_33rd_clearly_and_a_second_table_serves_all(
    many: Edge, tables: tuple[int, ...]
) -> None:
    group = "239.3.3.3"
    svis = {f"br{n}": n for n in range(1, SVIS + 1)}
    cap = Capture(many.ns["r0"], "eth0", lambda f: p if (p := parse_udp(f)) and p.group == group else None)
    config = IpmrSettings(edge=("e0",), svis=svis, tables=tables)
    try:
        with running(many.ns["rtr"], config) as driver, joined(many.ns["r0"], 4, group):
            poll(
                lambda: driver.memberships(4).interfaces(ip_address("10.50.1.2"), ip_address(group)),
                15,
                what="r0's join",
            )
            expected = set(range(1, SVIS + 1)) if len(tables) == 2 else set(range(1, SVIS))
            for attempt in itertools.count():  # the first packets of a flow ride the upcall
                tag = f"t{attempt}".encode()
                _send_from_every_svi(many.ns["srcs"], group, tag)
                # r0 has the packets of every served SVI (fenced by the ones that must arrive)
                poll(
                    lambda tag=tag: _sources_seen(cap, tag) >= expected, 15, what="every served SVI's packet"
                )
                if attempt >= 1:
                    break
            seen = _sources_seen(cap, tag)
            budget = driver.budget()["ipv4"]
            if len(tables) == 1:
                # br32's packet of round t0 was sent before all of round t1, which has arrived.
                assert seen == expected and SVIS not in _sources_seen(cap, b"t0"), "br32 has no VIF"
                assert budget["tables"] == {"253": {"used": 32, "max": 32}}
                assert budget["refused"] == {
                    "br32": "no VIF for br32 (SVI of VNI 32): multicast routing table 253 already uses "
                    "all 32 VIFs (MAXVIFS); configure another table in ipmr.tables to spread VNIs"
                }
            else:
                assert seen == expected
                assert budget["refused"] == {}
                assert budget["tables"] == {"100": {"used": 2, "max": 32}, "253": {"used": 32, "max": 32}}
    finally:
        cap.close()


# --------------------------------------------------------------------------- interfaces come and go


def test_an_interface_that_appears_later_gets_a_vif_and_one_that_goes_loses_it(edge: Edge) -> None:
    rtr = edge.ns["rtr"]
    config = IpmrSettings(edge=("s0", "e1", "late0"), families=(4,))
    try:
        with running(rtr, config) as driver:
            assert "late0 does not exist" in driver.budget()["ipv4"]["refused"]["late0"]
            sh(f"ip -n {rtr} link add late0 type veth peer late1")
            sh(f"ip -n {rtr} link set late0 up")
            sh(f"ip -n {rtr} link set late1 up")
            poll(lambda: "late0" in driver.vifs(4), 10, what="a VIF for late0")
            assert "late0" in sh(f"ip netns exec {rtr} cat /proc/net/ip_mr_vif").stdout
            sh(f"ip -n {rtr} link set late0 down")
            poll(lambda: "late0" not in driver.vifs(4), 10, what="late0's VIF gone while it is down")
            assert "is down" in driver.budget()["ipv4"]["refused"]["late0"]
            sh(f"ip -n {rtr} link del late0")
            poll(lambda: "does not exist" in driver.budget()["ipv4"]["refused"].get("late0", ""), 10)
            assert set(driver.vifs(4)) == {"s0", "e1"}
    finally:
        sh(f"ip -n {rtr} link del late0", check=False)


# --------------------------------------------------------------------------- restart


def test_forwarding_is_rebuilt_after_the_driver_is_killed_and_the_gap_is_measured(edge: Edge) -> None:
    """The tables die with the socket: kill -9 stops forwarding; a new process rebuilds it from
    its configuration (a static route) and from members re-reporting to its first query."""
    rtr, group = edge.ns["rtr"], GROUPS[4]
    root = Path(__file__).parents[2]
    argv = [
        "ip",
        "netns",
        "exec",
        rtr,
        sys.executable,
        "-m",
        "ipmr",
        "--edge",
        "s0",
        "e1",
        "e2",
        "--querier",
        "e1",
        "--query-response",
        "0.5",
        "--route",
        f"*,{group},s0,e2",
    ]
    caps = edge.capture(4)

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        edge.lab.pids.append(proc.pid)
        assert proc.stdout is not None
        while (event := json.loads(proc.stdout.readline()))["event"] != "ready":
            assert event["event"] == "vif-budget", event
        return proc

    try:
        with joined(edge.ns["r1"], 4, group), streaming(edge.ns["src"], 4, group, interval=0.002):
            proc = start()
            poll(lambda: count(caps["r1"]) >= 20 and count(caps["r2"]) >= 20, 15, what="both get it")
            proc.kill()
            proc.wait()
            stopped = time.monotonic()
            assert "Iif" not in sh(f"ip -n {rtr} mroute show").stdout  # the tables died with it
            proc = start()
            restarted = time.monotonic()
            mark = {r: count(caps[r]) for r in ("r1", "r2")}
            poll(
                lambda: all(count(caps[r]) >= mark[r] + 20 for r in ("r1", "r2")), 15, what="forwarding back"
            )
            proc.terminate()
            proc.wait()
        gaps = {r: _largest_gap_ms(caps[r]) for r in ("r1", "r2")}
        print(f"restart: process start {1000 * (restarted - stopped):.0f} ms; largest gap {gaps}")
        assert all(gap > 0 for gap in gaps.values())
    finally:
        for cap in caps.values():
            cap.close()


def _largest_gap_ms(cap: Capture) -> float:
    times = cap.arrival_times(b"seq-")
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0) * 1000


# --------------------------------------------------------------------------- smcroute


needs_smcroute = pytest.mark.skipif(not smcroute_available(), reason="smcroute is not installed")


@needs_smcroute
def test_a_table_owned_by_smcroute_is_a_clear_start_up_error_and_another_table_coexists(
    edge: Edge, tmp_path: Path
) -> None:
    rtr = edge.ns["rtr"]
    smc = Smcroute(edge.lab, rtr, tmp_path / "smcroute")
    smc.start(f"phyint s0 enable\nphyint e1 enable\nmroute from s0 group {GROUPS[4]} to e1\n")
    caps = edge.capture(4)
    try:
        with inside(rtr), pytest.raises(MrtError) as refused:
            IpmrDriver(settings(4)).start()
        assert str(refused.value) == (
            "cannot take IPv4 multicast routing table default: EADDRINUSE: Address already in use: another "
            "multicast router (smcroute, pimd, FRR pimd, mrouted) already owns it; stop it or give the agent "
            "another table (ipmr.table)"
        )
        # In a table of its own the driver runs next to smcroute: smcroute routes s0 -> e1, the
        # driver (VIFs e2, e3 in table 100, steered there by mrules) routes r3's stream to e2.
        ours = IpmrSettings(
            edge=("e2", "e3"), tables=(100,), routes=(parse_static_route("*", GROUPS[4], "e3", ["e2"]),)
        )
        with (
            running(rtr, ours),
            streaming(edge.ns["src"], 4, GROUPS[4]),
            streaming(edge.ns["r3"], 4, GROUPS[4], source="10.2.3.2"),
        ):
            poll(lambda: count(caps["r1"]) >= 5, 15, what="smcroute still forwards to r1")
            poll(lambda: count(caps["r2"]) >= 5, 15, what="the driver forwards r3's stream to r2")
            assert "Table: 100" in sh(f"ip -n {rtr} mroute show table all").stdout
            assert "iif e3 lookup 100" in sh(f"ip -n {rtr} mrule show").stdout
            r2_sources = {p.source for p in caps["r2"].with_payload(b"seq-")}
            assert r2_sources == {"10.2.3.2"}
    finally:
        smc.stop()
        for cap in caps.values():
            cap.close()


@needs_smcroute
def test_the_same_static_routes_give_the_same_kernel_routes_as_smcroute(edge: Edge, tmp_path: Path) -> None:
    rtr = edge.ns["rtr"]
    routes = [
        ("10.1.0.2", "239.1.1.1", "s0", ["e1", "e2"]),
        ("10.1.0.2", "239.1.1.2", "s0", ["e3"]),
        ("10.1.0.9", "239.1.1.3", "s0", ["e1"]),
        ("*", "239.1.1.4", "s0", ["e2", "e3"]),  # installed per source when traffic comes
    ]
    conf = "".join(f"phyint {i} enable\n" for i in ("s0", "e1", "e2", "e3"))
    for source, group, iif, oifs in routes:
        src = "" if source == "*" else f" source {source}"
        conf += f"mroute from {iif}{src} group {group} to {' '.join(oifs)}\n"

    def kernel_after_traffic() -> list[str]:
        with streaming(edge.ns["src"], 4, "239.1.1.4"):
            poll(
                lambda: any("239.1.1.4) Iif: s0 Oifs" in line for line in mroute_show(rtr)),
                10,
                what="the (*,G) route's per-source entry",
            )
        return mroute_show(rtr)

    smc = Smcroute(edge.lab, rtr, tmp_path / "smcroute")
    smc.start(conf)
    try:
        theirs = kernel_after_traffic()
    finally:
        smc.stop()
    ours_settings = settings(4, routes=tuple(parse_static_route(*r) for r in routes))
    with running(rtr, ours_settings):
        ours = kernel_after_traffic()
    assert ours == theirs
    assert theirs == [
        "(10.1.0.2,239.1.1.1) Iif: s0 Oifs: e1 e2",
        "(10.1.0.2,239.1.1.2) Iif: s0 Oifs: e3",
        "(10.1.0.2,239.1.1.4) Iif: s0 Oifs: e2 e3",
        "(10.1.0.9,239.1.1.3) Iif: s0 Oifs: e1",
    ]


def test_wrong_interface_upcalls_are_counted(edge: Edge) -> None:
    """A route's source showing up on one of its outputs (a loop, or a moved source) makes the
    kernel send WRONGVIF upcalls (asserts are on); the driver counts them per (S, G, VIF)."""
    r1 = edge.ns["r1"]
    route = parse_static_route(SOURCE[4], GROUPS[4], "s0", ["e1", "e2"])
    sh(f"ip -n {r1} addr add {SOURCE[4]}/32 dev eth0")
    try:
        with running(edge.ns["rtr"], settings(4, routes=(route,))) as driver:
            e1 = driver.vifs(4)["e1"][0].vif
            with streaming(r1, 4, GROUPS[4], source=SOURCE[4]):
                poll(
                    lambda: driver.wrong_vif.get((253, SOURCE[4], GROUPS[4], e1), 0) >= 1,
                    15,
                    what="a WRONGVIF upcall for e1",
                )
    finally:
        sh(f"ip -n {r1} addr del {SOURCE[4]}/32 dev eth0", check=False)


# --------------------------------------------------------------------------- the store


def test_the_svi_gets_a_group_while_a_remote_vtep_wants_it_and_edge_joins_reach_the_store(edge: Edge) -> None:
    """Source on the edge, SVI br100 toward the fabric: the store's remote SMET makes br100 an
    output; its withdrawal removes it. An edge host's join becomes a store join (for SMET)."""
    rtr, group = edge.ns["rtr"], GROUPS[4]
    h100 = edge.lab.ns("h100")
    sh(f"ip -n {rtr} link add br100 type bridge mcast_snooping 0")
    edge.lab.veth(rtr, "bp100", "", h100, "eth0", "10.100.0.2/24")
    sh(f"ip -n {rtr} link set bp100 master br100")
    sh(f"ip -n {rtr} addr add 10.100.0.1/24 dev br100")
    sh(f"ip -n {rtr} link set br100 up")
    vtep = ip_address("10.0.0.2")
    store = Store()
    store.announce("rr", b"imet", RemoteImet(100, vtep, True, True))
    store.announce("rr", b"smet", RemoteSmet(100, vtep, None, ip_address(group)))
    fabric = Capture(h100, "eth0", lambda f: p if (p := parse_udp(f)) and p.group == group else None)
    caps = edge.capture(4)
    config = IpmrSettings(edge=("s0", "e1"), svis={"br100": 100}, families=(4,))
    try:
        with running(rtr, config, store) as driver, streaming(edge.ns["src"], 4, group):
            poll(lambda: count(fabric) >= 5, 15, what="the stream toward the fabric on br100")
            with joined(edge.ns["r1"], 4, group):
                poll(lambda: count(caps["r1"]) >= 5, 15, what="r1 gets it too")
                assert store.local_ports(100, None, ip_address(group)) == {"ipmr:e1"}
                store.withdraw("rr", b"smet")
                driver.reconcile([ip_address(group)])
                wait_until_silent(fabric, caps["r1"], "br100 once no VTEP wants the group")
            poll(
                lambda: not store.local_ports(100, None, ip_address(group)),
                15,
                what="r1's leave in the store",
            )
    finally:
        fabric.close()
        for cap in caps.values():
            cap.close()
        sh(f"ip -n {rtr} link del br100", check=False)


def test_without_the_capabilities_start_up_fails_with_one_clear_line(edge: Edge) -> None:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            edge.ns["rtr"],
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-net_admin,-net_raw",
            sys.executable,
            "-m",
            "ipmr",
            "--edge",
            "e1",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=30,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "python -m ipmr: cannot open a raw socket for IPv4 multicast routing table default: EPERM: Operation "
        "not permitted: the agent needs CAP_NET_RAW and CAP_NET_ADMIN (run it as root)"
    )
