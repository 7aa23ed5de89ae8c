"""ipmr.reader against the real kernel: a router namespace with three veth links to a peer
namespace, multicast routing tables programmed from this process with the classic mroute
socket options (MRT_INIT/MRT_ADD_VIF/MRT_ADD_MFC and their MRT6 twins), then read back with
the reader and compared with ``ip mroute show``.

Also pins down the kernel facts the reader's docstring relies on: unresolved entries are
dumped with RTNH_F_UNRESOLVED and nothing but their addresses, RTA_EXPIRES is an idle time,
tables made with MRT_TABLE are in the dump but not in procfs, and /proc/thread-self/net (not
/proc/net) follows a worker thread that entered a namespace.

Layout: router ``r`` has r0 (10.0.0.2, fd00::2), r1 (10.0.1.2, fd00:1::2), r2; peer ``p``
has p0 (10.0.0.1, fd00::1), p1, p2 on the other ends. Traffic enters on r0 from p0.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import TypeVar

import pytest

from ipmr.reader import Mroute, VifStats, dump_mroutes, mroute_lines, read_vifs
from replication.kernel import NetlinkSocket
from tests.netns.netlab import Lab, inside, poll, sh

T = TypeVar("T")

IPPROTO_IPV6 = 41
MRT_INIT, MRT_ADD_VIF, MRT_ADD_MFC, MRT_TABLE = 200, 202, 204, 209
MRT6_INIT, MRT6_ADD_MIF, MRT6_ADD_MFC, MRT6_TABLE = 200, 202, 204, 209
VIFF_USE_IFINDEX = 8
MAXVIFS = 32
RTNH_F_UNRESOLVED = 0x20

SOURCE4, SOURCE6 = "10.0.0.1", "fd00::1"


@dataclass
class Net:
    router: str
    peer: str
    ifindex: dict[str, int]  # router side
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def names(self) -> dict[int, str]:
        return {index: name for name, index in self.ifindex.items()}

    # ----------------------------------------------------------------- programming the tables

    def mroute4(self, vifs: list[str], table: int | None = None) -> socket.socket:
        """An IPv4 mroute socket (of ``table``) with VIF i on ``vifs[i]``; kept open by the test."""
        with inside(self.router):
            sock = self.stack.enter_context(
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
            )
        if table is not None:
            sock.setsockopt(socket.IPPROTO_IP, MRT_TABLE, struct.pack("I", table))
        sock.setsockopt(socket.IPPROTO_IP, MRT_INIT, struct.pack("i", 1))
        for vifi, name in enumerate(vifs):
            vifctl = struct.pack("=HBBIi4s", vifi, VIFF_USE_IFINDEX, 1, 0, self.ifindex[name], b"\0" * 4)
            sock.setsockopt(socket.IPPROTO_IP, MRT_ADD_VIF, vifctl)
        return sock

    def mroute6(self, mifs: list[str], table: int | None = None) -> socket.socket:
        with inside(self.router):
            sock = self.stack.enter_context(
                socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            )
        if table is not None:
            sock.setsockopt(IPPROTO_IPV6, MRT6_TABLE, struct.pack("I", table))
        sock.setsockopt(IPPROTO_IPV6, MRT6_INIT, struct.pack("i", 1))
        for mifi, name in enumerate(mifs):
            sock.setsockopt(
                IPPROTO_IPV6, MRT6_ADD_MIF, struct.pack("=HBBHxxI", mifi, 0, 1, self.ifindex[name], 0)
            )
        return sock

    # ----------------------------------------------------------------- reading them back

    def dump(self, family: int, table: int = 0) -> list[Mroute]:
        with inside(self.router), NetlinkSocket() as nl:
            return dump_mroutes(nl, family, table)

    def vifs(self, family: int) -> list[VifStats]:
        with inside(self.router):
            return read_vifs(family)

    def ip_mroute(self, family: int, table: str = "") -> set[tuple[str, str, str, tuple[str, ...], str]]:
        """``ip mroute show`` as {(source, group, iif, oifs with "(ttl N)", state)}."""
        out = sh(f"ip -n {self.router} -{family} mroute show {table}").stdout
        rows = set()
        for line in out.splitlines():
            m = re.match(r"\s*\(([^,]+),([^)]+)\)\s+Iif: (\S+)\s+(?:Oifs: (.*?))?\s*State: (\S+)", line)
            assert m, line
            oifs = tuple(re.findall(r"\w+(?:\(ttl \d+\))?", m[4] or ""))
            rows.add((m[1], m[2], m[3], oifs, m[5]))
        return rows

    # ----------------------------------------------------------------- traffic from the peer

    def send(self, family: int, ifname: str, group: str, count: int) -> None:
        """``count`` UDP packets from SOURCE4/SOURCE6 to ``group`` out of the peer's ``ifname``."""
        with inside(self.peer):
            ifindex = socket.if_nametoindex(ifname)
            if family == 4:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                mreqn = struct.pack("=4s4si", b"\0" * 4, b"\0" * 4, ifindex)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 5)
                sock.bind((SOURCE4, 0))
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.setsockopt(IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                sock.setsockopt(IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 5)
                sock.bind((SOURCE6, 0))
        with sock:
            for _ in range(count):
                # IPv6: the peer's ff00::/8 route appears once addrconf has seen the link up.
                poll(lambda: _sent(sock, group), 10, 0.02, what=f"send to {group} via {ifname}")


def _sent(sock: socket.socket, group: str) -> bool:
    try:
        sock.sendto(b"x" * 64, (group, 5000))
    except OSError as exc:
        if exc.errno == errno.ENETUNREACH:
            return False
        raise
    return True


@pytest.fixture
def net(lab: Lab) -> Iterator[Net]:
    router, peer = lab.ns("r"), lab.ns("p")
    for i in range(3):
        lab.veth(router, f"r{i}", f"10.0.{i}.2/24", peer, f"p{i}", f"10.0.{i}.1/24")
        sh(f"ip -n {router} addr add fd00:{i}::2/64 dev r{i} nodad")
        sh(f"ip -n {peer} addr add fd00:{i}::1/64 dev p{i} nodad")
    # Packets from 10.0.0.1 arriving on r1 (the wrong-interface test) must not be rp-filtered.
    sh(f"ip netns exec {router} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.r1.rp_filter=0")
    with inside(router):
        ifindex = {f"r{i}": socket.if_nametoindex(f"r{i}") for i in range(3)}
    built = Net(router, peer, ifindex)
    with built.stack:
        yield built


def _mfc4(sock: socket.socket, source: str, group: str, parent: int, ttls: dict[int, int]) -> None:
    thresholds = bytes(ttls.get(vifi, 0) for vifi in range(MAXVIFS))
    mfcctl = struct.pack(
        "=4s4sH32s2xIIIi",
        IPv4Address(source).packed,
        IPv4Address(group).packed,
        parent,
        thresholds,
        0,
        0,
        0,
        0,
    )
    sock.setsockopt(socket.IPPROTO_IP, MRT_ADD_MFC, mfcctl)


def _sockaddr_in6(addr: str) -> bytes:
    return struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, IPv6Address(addr).packed, 0)


def _mfc6(sock: socket.socket, source: str, group: str, parent: int, oifs: set[int]) -> None:
    if_set = struct.pack("=8I", sum(1 << mifi for mifi in oifs), 0, 0, 0, 0, 0, 0, 0)
    mf6cctl = _sockaddr_in6(source) + _sockaddr_in6(group) + struct.pack("=H2x", parent) + if_set
    assert len(mf6cctl) == 92
    sock.setsockopt(IPPROTO_IPV6, MRT6_ADD_MFC, mf6cctl)


def _one(routes: list[Mroute], group: str) -> Mroute:
    [route] = [r for r in routes if r.group == ip_address(group)]
    return route


def _when(fn: Callable[[], T], pred: Callable[[T], bool], what: str) -> T:
    """poll() for a value that is not truthy by itself: the first fn() result that satisfies pred."""
    box: list[T] = []

    def attempt() -> bool:
        box[:] = [fn()]
        return pred(box[0])

    poll(attempt, 10, 0.02, what=what)
    return box[0]


# --------------------------------------------------------------------------- IPv4


def test_ipv4_entries_read_back_as_programmed_and_as_ip_mroute_shows_them(net: Net) -> None:
    idx = net.ifindex
    sock = net.mroute4(["r0", "r1", "r2"])
    _mfc4(sock, SOURCE4, "239.1.1.1", 0, {1: 1, 2: 3})
    _mfc4(sock, "0.0.0.0", "239.3.3.3", 1, {0: 1})

    routes = net.dump(4)
    assert len(routes) == 2
    sg = _one(routes, "239.1.1.1")
    assert sg == Mroute(
        family=4,
        table=253,
        source=IPv4Address(SOURCE4),
        group=IPv4Address("239.1.1.1"),
        iif=idx["r0"],
        oifs=tuple(sorted([(idx["r1"], 1), (idx["r2"], 3)])),
        packets=0,
        bytes=0,
        wrong_if=0,
        unresolved=False,
    )
    assert sg.idle is not None
    star_g = _one(routes, "239.3.3.3")
    assert (star_g.source, star_g.iif, star_g.oifs) == (None, idx["r1"], ((idx["r0"], 1),))

    assert net.ip_mroute(4) == {
        (SOURCE4, "239.1.1.1", "r0", ("r1", "r2(ttl 3)"), "resolved"),
        ("0.0.0.0", "239.3.3.3", "r1", ("r0",), "resolved"),
    }
    assert mroute_lines(routes, net.names) == [
        "(10.0.0.1, 239.1.1.1) iif r0 oifs r1 r2(ttl 3) packets 0 bytes 0 wrong 0",
        "(*, 239.3.3.3) iif r1 oifs r0 packets 0 bytes 0 wrong 0",
    ]
    assert net.dump(6) == []


def test_ipv4_counters_unresolved_entries_and_vif_table(net: Net) -> None:
    sock = net.mroute4(["r0", "r1", "r2"])
    _mfc4(sock, SOURCE4, "239.1.1.1", 0, {1: 1, 2: 3})
    assert [(v.index, v.name, v.flags) for v in net.vifs(4)] == [
        (0, "r0", VIFF_USE_IFINDEX),
        (1, "r1", VIFF_USE_IFINDEX),
        (2, "r2", VIFF_USE_IFINDEX),
    ]

    net.send(4, "p0", "239.1.1.1", 3)
    net.send(4, "p1", "239.1.1.1", 2)  # right (S,G), wrong interface
    net.send(4, "p0", "239.9.9.9", 1)  # no entry: queued, unresolved, upcall to `sock`

    routes = _when(
        lambda: net.dump(4),
        lambda rs: any(r.unresolved for r in rs) and _one(rs, "239.1.1.1").wrong_if >= 2,
        "counters and the unresolved entry",
    )
    sg = _one(routes, "239.1.1.1")
    assert sg.packets >= 5  # the kernel counts wrong-interface packets here too
    assert sg.bytes >= 5 * (20 + 8 + 64)
    assert not sg.unresolved
    assert sg.idle is not None
    assert sg.idle < 60

    unresolved = _one(routes, "239.9.9.9")
    assert unresolved == Mroute(
        4, 253, IPv4Address(SOURCE4), IPv4Address("239.9.9.9"), None, (), 0, 0, 0, True
    )
    assert unresolved.idle is None  # no RTA_EXPIRES on unresolved entries
    assert (SOURCE4, "239.9.9.9", "unresolved", (), "unresolved") in net.ip_mroute(4)
    assert "(10.0.0.1, 239.9.9.9) unresolved" in mroute_lines(routes, net.names)

    vifs = {v.name: v for v in _when(lambda: net.vifs(4), lambda vs: vs[2].packets_out >= 3, "r2 out count")}
    assert vifs["r0"].packets_in >= 3
    assert vifs["r0"].bytes_in >= 3 * (20 + 8 + 64)
    assert vifs["r1"].packets_out >= 3
    assert vifs["r2"].packets_out >= 3
    assert vifs["r1"].packets_in == 0  # wrong-interface packets are not counted on the VIF


# --------------------------------------------------------------------------- IPv6


def test_ipv6_entries_read_back_as_programmed_and_as_ip_mroute_shows_them(net: Net) -> None:
    idx = net.ifindex
    sock = net.mroute6(["r0", "r1", "r2"])
    _mfc6(sock, SOURCE6, "ff0e::1:1", 0, {1, 2})
    _mfc6(sock, "::", "ff0e::3:3", 1, {0})

    routes = net.dump(6)
    assert len(routes) == 2
    assert _one(routes, "ff0e::1:1") == Mroute(
        6,
        254,
        IPv6Address(SOURCE6),
        IPv6Address("ff0e::1:1"),
        idx["r0"],
        tuple(sorted([(idx["r1"], 1), (idx["r2"], 1)])),
        0,
        0,
        0,
        False,
    )
    star_g = _one(routes, "ff0e::3:3")
    assert (star_g.source, star_g.iif, star_g.oifs) == (None, idx["r1"], ((idx["r0"], 1),))
    assert net.ip_mroute(6) == {
        (SOURCE6, "ff0e::1:1", "r0", ("r1", "r2"), "resolved"),
        ("::", "ff0e::3:3", "r1", ("r0",), "resolved"),
    }
    assert net.dump(4) == []


def test_ipv6_counters_unresolved_entries_and_mif_table(net: Net) -> None:
    sock = net.mroute6(["r0", "r1", "r2"])
    _mfc6(sock, SOURCE6, "ff0e::1:1", 0, {1, 2})
    assert [(v.index, v.name, v.flags) for v in net.vifs(6)] == [(0, "r0", 0), (1, "r1", 0), (2, "r2", 0)]

    net.send(6, "p0", "ff0e::1:1", 3)
    net.send(6, "p1", "ff0e::1:1", 2)
    net.send(6, "p0", "ff0e::9:9", 1)

    routes = _when(
        lambda: net.dump(6),
        lambda rs: any(r.unresolved for r in rs) and _one(rs, "ff0e::1:1").wrong_if >= 2,
        "counters and the unresolved entry",
    )
    sg = _one(routes, "ff0e::1:1")
    assert sg.packets >= 5
    assert sg.bytes >= 5 * (40 + 8 + 64)
    unresolved = _one(routes, "ff0e::9:9")
    assert unresolved == Mroute(
        6, 254, IPv6Address(SOURCE6), IPv6Address("ff0e::9:9"), None, (), 0, 0, 0, True
    )
    assert (SOURCE6, "ff0e::9:9", "unresolved", (), "unresolved") in net.ip_mroute(6)

    mifs = {v.name: v for v in _when(lambda: net.vifs(6), lambda vs: vs[2].packets_out >= 3, "r2 out count")}
    assert mifs["r0"].packets_in >= 3
    assert mifs["r1"].packets_out >= 3
    assert mifs["r1"].packets_in == 0


# --------------------------------------------------------------------------- tables and procfs


def test_other_tables_are_dumped_and_filtered_but_absent_from_procfs(net: Net) -> None:
    idx = net.ifindex
    default = net.mroute4(["r0"])
    _mfc4(default, SOURCE4, "239.1.1.1", 0, {})
    other = net.mroute4(["r1", "r2"], table=1000)
    _mfc4(other, "10.0.1.1", "239.2.2.2", 0, {1: 1})
    default6 = net.mroute6(["r0"])
    _mfc6(default6, SOURCE6, "ff0e::1:1", 0, set())
    other6 = net.mroute6(["r1", "r2"], table=1000)
    _mfc6(other6, "fd00:1::1", "ff0e::2:2", 0, {1})

    for family in (4, 6):
        routes = net.dump(family)
        assert sorted(r.table for r in routes) == [253 if family == 4 else 254, 1000]
        [in_1000] = net.dump(family, table=1000)
        assert (in_1000.table, in_1000.iif, in_1000.oifs) == (1000, idx["r1"], ((idx["r2"], 1),))
        assert net.dump(family, table=77) == []  # no such table: an empty dump, not an error
        # procfs shows the default table only.
        assert [v.name for v in net.vifs(family)] == ["r0"]

    assert net.ip_mroute(4, "table 1000") == {("10.0.1.1", "239.2.2.2", "r1", ("r2",), "resolved")}
    lines = mroute_lines(net.dump(4), net.names)
    assert lines == [
        "(10.0.0.1, 239.1.1.1) iif r0 oifs none packets 0 bytes 0 wrong 0",
        "(10.0.1.1, 239.2.2.2) iif r1 oifs r2 packets 0 bytes 0 wrong 0 table 1000",
    ]


def _names(vifs: list[VifStats]) -> list[str]:
    return [v.name for v in vifs]


def test_proc_thread_self_follows_a_worker_thread_in_a_namespace(net: Net) -> None:
    net.mroute4(["r0", "r1", "r2"])
    host_thread_self = _names(read_vifs(4))
    host_proc_net = _names(read_vifs(4, Path("/proc/net")))
    seen: dict[str, list[str]] = {}

    def worker() -> None:
        with inside(net.router):
            seen["thread-self"] = _names(read_vifs(4))
            seen["proc/net"] = _names(read_vifs(4, Path("/proc/net")))
            seen["proc/self/net"] = _names(read_vifs(4, Path("/proc/self/net")))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert seen["thread-self"] == ["r0", "r1", "r2"]
    # /proc/net and /proc/self/net stay with the thread group leader, still in the host namespace.
    assert seen["proc/net"] == seen["proc/self/net"] == host_proc_net == host_thread_self
    # From the main thread (the leader) both paths follow setns.
    with inside(net.router):
        assert _names(read_vifs(4, Path("/proc/net"))) == _names(read_vifs(4)) == ["r0", "r1", "r2"]
