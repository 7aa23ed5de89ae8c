"""Local joins learned by bridge IGMP/MLD snooping, proven with real hosts.

A namespace "leaf" holds ``br100`` with a VXLAN port ``vxlan100`` and two host ports ``h1p``
and ``h2p``, veths to the host namespaces h1 and h2. Hosts join with real sockets, so their
kernels send the IGMP/MLD reports (unsolicited: there is no querier unless a test makes one).
The watcher runs in the test thread inside the leaf namespace. Waiting is event driven: select
on the watcher's socket until the expected events arrived or a deadline passed; absence is
proven with a later join as a fence (the bridge handles one host's reports in order, and the
kernel queues the notifications in order).

Bridges snoop IGMPv3/MLDv2 here unless a test says otherwise, and host ports have fast leave
on (``bridge link set dev PORT fastleave on``: iproute2 6.1 does not know the newer spelling
``mcast_fast_leave``) so a leave is removed at once; ``test_leave_timing_*`` measure both.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from agent.localjoins import (
    Event,
    LocalJoin,
    MdbOverrunError,
    MdbWatcher,
    bridge_problems,
    is_link_local_group,
    setup_bridge,
)
from tests.netns.netlab import Lab, inside, poll, sh, wait_until

IP_BLOCK_SOURCE = 38  # linux/in.h; the socket module does not have these
IP_ADD_SOURCE_MEMBERSHIP = 39
H_ADDR = {"h1": "192.168.100.1", "h2": "192.168.100.2"}
G1 = IPv4Address("239.1.1.1")
G2 = IPv4Address("239.2.2.2")
S1 = IPv4Address("10.9.9.9")
G6 = IPv6Address("ff0e::1")


@dataclass
class Leaf:
    lab: Lab
    ns: dict[str, str]
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def leaf(self) -> str:
        return self.ns["leaf"]

    def bridge(self, args: str) -> str:
        return sh(f"bridge -n {self.leaf} {args}").stdout

    def sock(self, host: str, family: int = socket.AF_INET) -> socket.socket:
        with inside(self.ns[host]):
            s = socket.socket(family, socket.SOCK_DGRAM)
        self.sockets.append(s)
        return s

    def join(self, host: str, group: IPv4Address, source: IPv4Address | None = None) -> socket.socket:
        s = self.sock(host)
        iface = socket.inet_aton(H_ADDR[host])
        if source is None:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group.packed + iface)
        else:  # struct ip_mreq_source: group, interface, source
            s.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, group.packed + iface + source.packed)
        return s

    def join6(self, host: str, group: IPv6Address) -> socket.socket:
        s = self.sock(host, socket.AF_INET6)
        with inside(self.ns[host]):
            index = socket.if_nametoindex("eth0")
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group.packed + struct.pack("@I", index))
        return s

    def mdb(self) -> list[dict[str, object]]:
        out = json.loads(self.bridge("-d -j mdb show") or "[]")
        return [entry for block in out for entry in block.get("mdb", [])]

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def build(lab: Lab, *, igmp_version: int = 3, snooping: int = 1, fast_leave: bool = True) -> Leaf:
    ns = {name: lab.ns(name) for name in ("leaf", "h1", "h2")}
    leaf = ns["leaf"]
    sh(
        f"ip -n {leaf} link add br100 type bridge mcast_snooping {snooping} "
        f"mcast_igmp_version {igmp_version} mcast_mld_version {igmp_version - 1}"
    )
    sh(f"ip -n {leaf} link add vxlan100 type vxlan id 100 local 10.0.0.1 dstport 4789 nolearning")
    sh(f"ip -n {leaf} link set vxlan100 master br100")
    sh(f"ip -n {leaf} link set vxlan100 up")
    for host in ("h1", "h2"):
        lab.veth(leaf, f"{host}p", "", ns[host], "eth0", f"{H_ADDR[host]}/24")
        sh(f"ip -n {leaf} link set {host}p master br100")
        if fast_leave:
            sh(f"bridge -n {leaf} link set dev {host}p fastleave on")
    sh(f"ip -n {leaf} link set br100 up")
    return Leaf(lab, ns)


@pytest.fixture
def fabric(lab: Lab) -> Iterator[Leaf]:
    leaf = build(lab)
    yield leaf
    leaf.close()


class Watch:
    """A watcher in the leaf namespace and every event it reported, with arrival times."""

    def __init__(
        self, leaf: Leaf, *, excluded_sources: bool = False, learned_only: bool = False, rcvbuf: int = 8 << 20
    ) -> None:
        self.ns = leaf.leaf
        with inside(self.ns):
            self.watcher = MdbWatcher(
                {"br100": 100},
                {"br100": "vxlan100"},
                excluded_sources=excluded_sources,
                learned_only=learned_only,
                rcvbuf=rcvbuf,
            )
            self.initial = self.watcher.snapshot()
        self.events: list[Event] = []
        self.times: list[float] = []

    def read(self) -> list[Event]:
        with inside(self.ns):
            got = self.watcher.read()
        now = time.monotonic()
        self.events.extend(got)
        self.times.extend(now for _ in got)
        return got

    def wait(self, pred: Callable[[list[Event]], bool], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        self.read()
        while not pred(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: events={self.events}")
            select.select([self.watcher.fileno()], [], [], remaining)
            self.read()

    def wait_for(self, event: Event, timeout: float = 10.0) -> float:
        """Wait until ``event`` was reported; its arrival time."""
        self.wait(lambda events: event in events, timeout, what=str(event))
        return self.times[self.events.index(event)]

    def live(self) -> set[LocalJoin]:
        out: set[LocalJoin] = set(self.initial)
        for joined, join in self.events:
            if joined:
                out.add(join)
            else:
                out.discard(join)
        return out

    def snapshot(self) -> set[LocalJoin]:
        with inside(self.ns):
            return self.watcher.snapshot()

    def close(self) -> None:
        self.watcher.close()


@pytest.fixture
def watch(fabric: Leaf) -> Iterator[Watch]:
    w = Watch(fabric)
    yield w
    w.close()


def join_of(
    port: str, group: IPv4Address | IPv6Address, source: IPv4Address | None = None, *, exclude: bool
) -> LocalJoin:
    return LocalJoin("br100", port, source, group, exclude)


# --------------------------------------------------------------------------- joins and leaves


def test_igmp_join_and_leave(fabric: Leaf, watch: Watch) -> None:
    assert watch.initial == set()
    s = fabric.join("h1", G1)
    joined = join_of("h1p", G1, exclude=True)  # IGMPv3 any-source join: EXCLUDE {}
    watch.wait_for((True, joined))
    s.close()
    watch.wait_for((False, joined))
    assert watch.events == [(True, joined), (False, joined)]


def test_source_specific_join_and_leave(fabric: Leaf, watch: Watch) -> None:
    s = fabric.join("h1", G2, S1)
    joined = join_of("h1p", G2, S1, exclude=False)
    watch.wait_for((True, joined))
    # The bridge also keeps a (*,G) INCLUDE entry holding the source list: not a join.
    entries = [e for e in fabric.mdb() if e.get("grp") == str(G2)]
    assert {(e.get("src"), e.get("filter_mode")) for e in entries} == {
        (str(S1), "include"),
        (None, "include"),
    }
    s.close()
    watch.wait_for((False, joined))
    assert watch.events == [(True, joined), (False, joined)]


def test_mld_join_and_no_link_local_groups(fabric: Leaf, watch: Watch) -> None:
    s = fabric.join6("h2", G6)
    watch.wait_for((True, join_of("h2p", G6, exclude=True)))
    # The bridge records the hosts' solicited-node groups (and its own) by itself...
    # (on h1p and h2p from the hosts' reports; on br100 itself, "host joined", for its own address)
    poll(
        lambda: (
            {e["port"] for e in fabric.mdb() if str(e["grp"]).startswith("ff02::1:ff")}
            >= {"h1p", "h2p", "br100"}
        ),
        what="solicited-node groups in the bridge MDB",
    )
    # ...and none of them ever shows up as a join.
    fence = fabric.join("h1", G1)
    watch.wait_for((True, join_of("h1p", G1, exclude=True)))
    assert not any(is_link_local_group(join.group) for _, join in watch.events)
    assert watch.snapshot() == {join_of("h2p", G6, exclude=True), join_of("h1p", G1, exclude=True)}
    s.close()
    watch.wait_for((False, join_of("h2p", G6, exclude=True)))
    fence.close()


def test_entries_on_the_vxlan_port_are_ignored(fabric: Leaf, watch: Watch) -> None:
    fabric.bridge("mdb add dev br100 port vxlan100 grp 239.5.5.5 permanent")
    fabric.bridge("mdb add dev br100 port br100 grp 239.5.5.6")  # host joined, on the bridge itself
    assert {e["port"] for e in fabric.mdb() if str(e["grp"]).startswith("239.5.5.")} == {"vxlan100", "br100"}
    s = fabric.join("h1", G1)  # fence: its notification comes after those of the entries above
    watch.wait_for((True, join_of("h1p", G1, exclude=True)))
    assert watch.events == [(True, join_of("h1p", G1, exclude=True))]
    assert watch.snapshot() == {join_of("h1p", G1, exclude=True)}
    s.close()


def test_static_entries_on_host_ports(fabric: Leaf, watch: Watch) -> None:
    """An operator's permanent entry on a host port counts, unless ``learned_only``."""
    fabric.bridge("mdb add dev br100 port h2p grp 239.6.6.6 permanent")
    static = join_of("h2p", IPv4Address("239.6.6.6"), exclude=True)  # (*,G) static: EXCLUDE {}
    watch.wait_for((True, static))
    learned = Watch(fabric, learned_only=True)
    try:
        assert learned.initial == set()
    finally:
        learned.close()
    fabric.bridge("mdb del dev br100 port h2p grp 239.6.6.6")
    watch.wait_for((False, static))


def test_snapshot_equals_live_joins(fabric: Leaf, watch: Watch) -> None:
    sockets = [
        fabric.join("h1", G1),
        fabric.join("h2", G1),
        fabric.join("h1", G2, S1),
        fabric.join6("h2", G6),
    ]
    expected = {
        join_of("h1p", G1, exclude=True),
        join_of("h2p", G1, exclude=True),
        join_of("h1p", G2, S1, exclude=False),
        join_of("h2p", G6, exclude=True),
    }
    watch.wait(lambda _: watch.live() == expected, what="all four joins")
    sockets[1].close()
    expected.discard(join_of("h2p", G1, exclude=True))
    watch.wait(lambda _: watch.live() == expected, what="h2 leaving 239.1.1.1")
    assert watch.snapshot() == expected == watch.watcher.joins
    # A second watcher starting now sees the same from its dump alone.
    other = Watch(fabric)
    try:
        assert other.initial == expected
    finally:
        other.close()


def test_exclude_mode_with_a_blocked_source(fabric: Leaf, watch: Watch) -> None:
    """h2 wants (S1,G); h1 wants G from any source but S1. The bridge copies h1's (*,G)
    EXCLUDE onto (S1,G) (flag added_by_star_ex) and marks h1's S1 blocked: neither is a join."""
    s2 = fabric.join("h2", G1, S1)
    watch.wait_for((True, join_of("h2p", G1, S1, exclude=False)))
    s1 = fabric.join("h1", G1)
    watch.wait_for((True, join_of("h1p", G1, exclude=True)))
    iface = socket.inet_aton(H_ADDR["h1"])
    s1.setsockopt(socket.IPPROTO_IP, IP_BLOCK_SOURCE, G1.packed + iface + S1.packed)
    poll(
        lambda: any(
            e.get("port") == "h1p" and e.get("src") == str(S1) and "blocked" in str(e.get("flags"))
            for e in fabric.mdb()
        ),
        what="h1's S1 blocked in the MDB",
    )
    fence = fabric.join("h2", G2)
    watch.wait_for((True, join_of("h2p", G2, exclude=True)))
    assert not any(join.port == "h1p" and join.source is not None for _, join in watch.events)
    assert watch.snapshot() == {
        join_of("h2p", G1, S1, exclude=False),
        join_of("h1p", G1, exclude=True),
        join_of("h2p", G2, exclude=True),
    }
    with_blocked = Watch(fabric, excluded_sources=True)
    try:
        assert join_of("h1p", G1, S1, exclude=True) in with_blocked.initial
    finally:
        with_blocked.close()
    for s in (s1, s2, fence):
        s.close()


# --------------------------------------------------------------------------- leave timing


def test_leave_timing_fast_leave(fabric: Leaf, watch: Watch) -> None:
    s = fabric.join("h1", G1)
    watch.wait_for((True, join_of("h1p", G1, exclude=True)))
    start = time.monotonic()
    s.close()
    took = watch.wait_for((False, join_of("h1p", G1, exclude=True))) - start
    assert took < 0.5, took


@pytest.mark.parametrize("igmp_version", [2, 3])
def test_leave_timing_without_fast_leave_or_querier(lab: Lab, igmp_version: int) -> None:
    """No querier anywhere: the bridge lowers the entry's timer to last_member_count x
    last_member_interval (2 x 1 s) on a leave, so the leave shows ~2 s later."""
    leaf = build(lab, igmp_version=igmp_version, fast_leave=False)
    watch = Watch(leaf)
    try:
        s = leaf.join("h1", G1)
        joined = join_of("h1p", G1, exclude=igmp_version == 3)
        watch.wait_for((True, joined))
        start = time.monotonic()
        s.close()
        took = watch.wait_for((False, joined)) - start
        assert 1.5 <= took <= 4.0, took
    finally:
        watch.close()
        leaf.close()


def test_igmpv2_snooping_learns_source_specific_joins_as_any_source(lab: Lab) -> None:
    """With IGMPv2 snooping an IGMPv3 (S,G) join becomes (*,G) without mode, and its leave (a
    BLOCK record) is ignored: the entry stays until the membership interval (260 s)."""
    leaf = build(lab, igmp_version=2)
    watch = Watch(leaf)
    try:
        with inside(leaf.leaf):
            assert any("IGMPv2 snooping" in p for p in bridge_problems("br100"))
        s = leaf.join("h1", G2, S1)
        watch.wait_for((True, join_of("h1p", G2, exclude=False)))
        s.close()
        fence = leaf.join("h1", G1)  # reported after the ignored leave; fast leave is on
        watch.wait_for((True, join_of("h1p", G1, exclude=False)))
        assert (False, join_of("h1p", G2, exclude=False)) not in watch.events
        fence.close()
        watch.wait_for((False, join_of("h1p", G1, exclude=False)))  # an any-source leave is seen
    finally:
        watch.close()
        leaf.close()


# --------------------------------------------------------------------------- bridge checks


def link_info(leaf: Leaf, ifname: str) -> dict[str, object]:
    (link,) = json.loads(sh(f"ip -n {leaf.leaf} -d -j link show {ifname}").stdout)
    data: dict[str, object] = link["linkinfo"]["info_data"]
    return data


def test_bridge_problems_and_setup_bridge(lab: Lab) -> None:
    leaf = build(lab, snooping=0, igmp_version=2)
    try:
        with inside(leaf.leaf):
            problems = bridge_problems("br100")
            assert len(problems) == 1 and "multicast snooping is off" in problems[0]
            assert "no such device" in bridge_problems("br999")[0]
            assert "not a bridge" in bridge_problems("h1p")[0]
            setup_bridge("br100", None)
            after_snooping = bridge_problems("br100")
        assert len(after_snooping) == 1 and "no IGMP/MLD querier" in after_snooping[0], after_snooping
        info = link_info(leaf, "br100")
        assert (info["mcast_snooping"], info["mcast_igmp_version"], info["mcast_mld_version"]) == (1, 3, 2)
        assert info["mcast_querier"] == 0
        sh(f"ip -n {leaf.leaf} link set br100 type bridge mcast_querier 1")
        with inside(leaf.leaf):
            (problem,) = bridge_problems("br100")
        assert "queries from 0.0.0.0 (mcast_query_use_ifaddr 0)" in problem, problem
        with inside(leaf.leaf):
            setup_bridge("br100", ip_address("192.168.100.254"))
            setup_bridge("br100", ip_address("192.168.100.254"))  # idempotent
            assert bridge_problems("br100") == []
        info = link_info(leaf, "br100")
        assert (info["mcast_querier"], info["mcast_query_use_ifaddr"]) == (1, 1)
        addrs = sh(f"ip -n {leaf.leaf} -j addr show dev br100").stdout
        assert json.loads(addrs)[0]["addr_info"][0]["local"] == "192.168.100.254"
        assert addrs.count("192.168.100.254") == 1
        # The bridge now learns joins (and, being the querier, keeps them refreshed).
        watch = Watch(leaf)
        try:
            s = leaf.join("h1", G1)
            watch.wait_for((True, join_of("h1p", G1, exclude=True)))
            s.close()
        finally:
            watch.close()
    finally:
        leaf.close()


def test_querier_elsewhere_on_the_segment_is_recognised(lab: Lab) -> None:
    """A bridge that is not the querier has no problem once another IGMP querier is heard."""
    leaf = build(lab)

    def problems() -> list[str]:
        with inside(leaf.leaf):
            return bridge_problems("br100")

    assert any("no IGMP/MLD querier" in p for p in problems())
    q = lab.ns("q")
    sh(f"ip -n {q} link add br0 type bridge mcast_snooping 1 mcast_querier 1 mcast_query_use_ifaddr 1")
    sh(f"ip -n {q} addr add 192.168.100.254/24 dev br0")
    lab.veth(leaf.leaf, "qp", "", q, "eth0", "")
    sh(f"ip -n {q} link set eth0 master br0")
    sh(f"ip -n {leaf.leaf} link set qp master br100")
    sh(f"ip -n {q} link set br0 up")
    # IGMP queries start at once; MLD ones once the querier's link-local address is usable.
    poll(lambda: not any("IGMP" in p for p in problems()), what="the other IGMP querier heard")
    assert all("no MLD querier" in p for p in problems())


# --------------------------------------------------------------------------- overrun


def test_overrun_is_signalled_and_resync_recovers(fabric: Leaf) -> None:
    watch = Watch(fabric, rcvbuf=4096)
    try:
        groups = [IPv4Address("239.10.0.0") + i for i in range(400)]
        batch = "\n".join(f"mdb add dev br100 port h1p grp {g} permanent" for g in groups)
        sh(f"echo '{batch}' | bridge -n {fabric.leaf} -batch -")
        with pytest.raises(MdbOverrunError):
            for _ in range(100):  # the kernel drops what does not fit and reports it once
                watch.read()
        assert watch.watcher.needs_resync
        with pytest.raises(MdbOverrunError):
            watch.read()
        with inside(fabric.leaf):
            events = watch.watcher.resync()
        expected = {join_of("h1p", g, exclude=True) for g in groups}
        assert {join for joined, join in events if joined} == expected - watch.live()
        watch.events.extend(events)
        watch.times.extend(time.monotonic() for _ in events)
        assert watch.live() == expected == watch.watcher.joins
        # Back to normal reading afterwards.
        s = fabric.join("h2", G1)
        watch.wait_for((True, join_of("h2p", G1, exclude=True)))
        s.close()
    finally:
        watch.close()


# --------------------------------------------------------------------------- asyncio


async def test_watcher_on_an_event_loop(fabric: Leaf) -> None:
    loop = asyncio.get_running_loop()
    got: list[Event] = []
    with inside(fabric.leaf):
        watcher = MdbWatcher({"br100": 100}, {"br100": "vxlan100"})
        try:
            assert watcher.snapshot() == set()
            loop.add_reader(watcher.fileno(), lambda: got.extend(watcher.read()))
            s = fabric.join("h1", G1)
            await wait_until(lambda: (True, join_of("h1p", G1, exclude=True)) in got, 10, "the join")
            s.close()
            await wait_until(lambda: (False, join_of("h1p", G1, exclude=True)) in got, 10, "the leave")
            assert got == [
                (True, join_of("h1p", G1, exclude=True)),
                (False, join_of("h1p", G1, exclude=True)),
            ]
        finally:
            loop.remove_reader(watcher.fileno())
            watcher.close()


async def test_overrun_on_an_event_loop(fabric: Leaf) -> None:
    """The pattern for a daemon: read() in the reader callback, resync() on MdbOverrunError."""
    got: list[Event] = []
    resyncs = 0

    def on_readable() -> None:
        nonlocal resyncs
        try:
            got.extend(watcher.read())
        except MdbOverrunError:
            resyncs += 1
            got.extend(watcher.resync())

    def live() -> set[LocalJoin]:
        out: set[LocalJoin] = set()
        for joined, join in got:
            if joined:
                out.add(join)
            else:
                out.discard(join)
        return out

    loop = asyncio.get_running_loop()
    groups = [IPv4Address("239.20.0.0") + i for i in range(300)]
    with inside(fabric.leaf):
        watcher = MdbWatcher({"br100": 100}, {"br100": "vxlan100"}, rcvbuf=4096)
        try:
            watcher.snapshot()
            loop.add_reader(watcher.fileno(), on_readable)
            for verb in ("add", "del"):
                batch = "\n".join(f"mdb {verb} dev br100 port h1p grp {g} permanent" for g in groups)
                sh(f"echo '{batch}' | bridge -n {fabric.leaf} -batch -")
                expected = {join_of("h1p", g, exclude=True) for g in groups} if verb == "add" else set()

                def done(want: set[LocalJoin] = expected) -> bool:
                    return live() == want == watcher.joins

                await wait_until(done, 10, f"{verb} of 300 entries")
            assert resyncs >= 1
        finally:
            loop.remove_reader(watcher.fileno())
            watcher.close()
