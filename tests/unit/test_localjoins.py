"""Unit and property tests for agent.localjoins: bridge MDB entries -> local joins.

Messages are packed here by hand in the kernel's bridge MDB notification layout
(include/uapi/linux/if_bridge.h, net/bridge/br_mdb.c): struct br_port_msg, an MDBA_MDB nest,
MDBA_MDB_ENTRY nests, each holding MDBA_MDB_ENTRY_INFO attributes = struct br_mdb_entry
(28 bytes) followed by MDBA_MDB_EATTR_TIMER, _SOURCE, _RTPROT, _SRC_LIST and _GROUP_MODE as
the kernel orders them. The watcher runs against a fake notification socket and a fake dumper.
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.localjoins import (
    MCAST_EXCLUDE,
    MCAST_INCLUDE,
    MDB_FLAGS_BLOCKED,
    MDB_FLAGS_STAR_EXCL,
    BridgeMdbEntry,
    Event,
    LocalJoin,
    MdbOverrunError,
    MdbWatcher,
    diff,
    host_port,
    is_link_local_group,
    joins_from_entries,
    parse_bridge_mdb,
    port_group_joins,
)
from bgp.evpn import IPAddress
from replication.netlink import Message, iter_messages, parse_mdb

# rtnetlink.h / if_bridge.h, spelled out rather than imported
RTM_NEWMDB, RTM_DELMDB, RTM_GETMDB = 84, 85, 86
AF_BRIDGE = 7
MDBA_MDB, MDBA_ROUTER = 1, 2
MDBA_MDB_ENTRY = MDBA_MDB_ENTRY_INFO = 1
EATTR_TIMER, EATTR_SRC_LIST, EATTR_GROUP_MODE, EATTR_SOURCE, EATTR_RTPROT, EATTR_DST = 1, 2, 3, 4, 5, 6
SRCLIST_ENTRY, SRCATTR_ADDRESS, SRCATTR_TIMER = 1, 1, 2
MDB_TEMPORARY, MDB_PERMANENT = 0, 1
RTPROT_KERNEL, RTPROT_STATIC = 2, 4
NLA_F_NESTED = 0x8000

# The fake namespace: ifindex -> name.
BR100, VX100, H1, H2, BR200, H3, VX200 = 1, 2, 3, 4, 5, 6, 7
NAMES = {
    BR100: "br100",
    VX100: "vxlan100",
    H1: "h1p",
    H2: "h2p",
    BR200: "br200",
    H3: "h3p",
    VX200: "vxlan200",
}
BRIDGES = {"br100": 100}
EXCLUDE_PORTS = {"br100": "vxlan100", "br200": "vxlan200"}

G1 = IPv4Address("239.1.1.1")
G6 = IPv6Address("ff0e::1")
S1 = IPv4Address("10.9.9.9")
S2 = IPv4Address("10.8.8.8")
S6 = IPv6Address("fd00::9")


def names(ifindex: int) -> str | None:
    return NAMES.get(ifindex)


# --------------------------------------------------------------------------- packing by hand


def nla(kind: int, payload: bytes, nested: bool = False) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind | (NLA_F_NESTED if nested else 0)) + payload + b"\x00" * (-size % 4)


def br_mdb_entry(port: int, group: IPAddress | bytes, state: int = 0, flags: int = 0, vid: int = 0) -> bytes:
    if isinstance(group, bytes):  # a MAC entry
        addr, proto = group.ljust(16, b"\x00"), 0
    else:
        addr, proto = group.packed.ljust(16, b"\x00"), 0x0800 if group.version == 4 else 0x86DD
    raw = struct.pack("=IBBH", port, state, flags, vid) + addr + struct.pack("!H", proto) + b"\x00\x00"
    assert len(raw) == 28  # sizeof(struct br_mdb_entry)
    return raw


def entry_info(
    port: int,
    group: IPAddress | bytes,
    *,
    source: IPAddress | None = None,
    mode: int | None = None,
    sources: Iterable[IPAddress] = (),
    state: int = MDB_TEMPORARY,
    flags: int = 0,
    dst: IPAddress | None = None,
) -> bytes:
    """One MDBA_MDB_ENTRY_INFO as __mdb_fill_info writes it (mode only in IGMPv3/MLDv2 mode)."""
    body = br_mdb_entry(port, group, state, flags) + nla(EATTR_TIMER, struct.pack("=I", 25_000))
    if source is not None:
        body += nla(EATTR_SOURCE, source.packed)
    if dst is not None:
        body += nla(EATTR_DST, dst.packed)
    body += nla(EATTR_RTPROT, bytes([RTPROT_STATIC if state == MDB_PERMANENT else RTPROT_KERNEL]))
    if mode is not None:
        srcs = b"".join(
            nla(
                SRCLIST_ENTRY,
                nla(SRCATTR_ADDRESS, s.packed) + nla(SRCATTR_TIMER, struct.pack("=I", 100)),
                True,
            )
            for s in sources
        )
        body += nla(EATTR_SRC_LIST, srcs, True) + nla(EATTR_GROUP_MODE, bytes([mode]))
    return nla(MDBA_MDB_ENTRY_INFO, body)  # nla_nest_start_noflag: no NESTED bit


def mdb_message(kind: int, device: int, *entries: list[bytes], family: int = AF_BRIDGE) -> bytes:
    """struct br_port_msg + MDBA_MDB { MDBA_MDB_ENTRY { infos... } ... } in one nlmsghdr."""
    mdb = b"".join(nla(MDBA_MDB_ENTRY, b"".join(infos)) for infos in entries)
    body = struct.pack("=BxxxI", family, device) + nla(MDBA_MDB, mdb)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def notify(kind: int, device: int, info: bytes) -> bytes:
    """What br_mdb_notify sends: one entry info per message."""
    return mdb_message(kind, device, [info])


def one(raw: bytes) -> Message:
    (msg,) = iter_messages(raw)
    return msg


def entry(
    port: int,
    group: IPAddress,
    source: IPAddress | None = None,
    mode: int | None = None,
    flags: int = 0,
    state: int = MDB_TEMPORARY,
    device: int = BR100,
    remote: bool = False,
) -> BridgeMdbEntry:
    return BridgeMdbEntry(device, port, state, flags, source, group, mode, remote)


# --------------------------------------------------------------------------- decoding


def test_parse_star_g_exclude_notification() -> None:
    raw = notify(RTM_NEWMDB, BR100, entry_info(H1, G1, mode=MCAST_EXCLUDE))
    assert parse_bridge_mdb(one(raw)) == [entry(H1, G1, mode=MCAST_EXCLUDE)]


def test_parse_source_specific_include_with_source_list() -> None:
    star = entry_info(H1, G1, mode=MCAST_INCLUDE, sources=[S1, S2])
    sg = entry_info(H1, G1, source=S1, mode=MCAST_INCLUDE, flags=MDB_FLAGS_BLOCKED)
    assert parse_bridge_mdb(one(notify(RTM_NEWMDB, BR100, star))) == [entry(H1, G1, mode=MCAST_INCLUDE)]
    assert parse_bridge_mdb(one(notify(RTM_NEWMDB, BR100, sg))) == [
        entry(H1, G1, S1, MCAST_INCLUDE, MDB_FLAGS_BLOCKED)
    ]


def test_parse_ipv6_delete_without_mode_and_permanent_state() -> None:
    raw = notify(RTM_DELMDB, BR100, entry_info(H2, G6, source=S6, state=MDB_PERMANENT))
    msg = one(raw)
    assert msg.kind == RTM_DELMDB
    assert parse_bridge_mdb(msg) == [entry(H2, G6, S6, None, state=MDB_PERMANENT)]


def test_parse_dump_reply_is_rtm_getmdb_with_many_entries() -> None:
    """The bridge answers a dump with RTM_GETMDB messages, several entries and ports in one."""
    raw = mdb_message(
        RTM_GETMDB,
        BR100,
        [entry_info(H1, G1, mode=MCAST_EXCLUDE), entry_info(H2, G1, mode=MCAST_EXCLUDE)],
        [entry_info(H1, G6)],
    )
    assert parse_bridge_mdb(one(raw)) == [
        entry(H1, G1, mode=MCAST_EXCLUDE),
        entry(H2, G1, mode=MCAST_EXCLUDE),
        entry(H1, G6),
    ]
    assert parse_mdb(one(raw)) == []  # replication's parser only knows RTM_NEWMDB/RTM_DELMDB


def test_parse_vxlan_remote_is_marked() -> None:
    raw = notify(RTM_NEWMDB, VX100, entry_info(VX100, G1, dst=ip_address("10.0.0.2"), state=MDB_PERMANENT))
    (got,) = parse_bridge_mdb(one(raw))
    assert got.remote and got.device == got.port == VX100


def test_parse_skips_mac_entries_router_messages_short_infos_and_other_kinds() -> None:
    mac = notify(RTM_NEWMDB, BR100, entry_info(H1, b"\x01\x00\x5e\x01\x01\x01"))
    router = struct.pack("=BxxxI", AF_BRIDGE, BR100) + nla(MDBA_ROUTER, nla(1, struct.pack("=I", H1)))
    router_msg = struct.pack("=IHHII", 16 + len(router), RTM_NEWMDB, 0, 0, 0) + router
    short = mdb_message(RTM_NEWMDB, BR100, [nla(MDBA_MDB_ENTRY_INFO, b"\x00" * 20)])
    other = one(notify(RTM_NEWMDB, BR100, entry_info(H1, G1)))._replace(kind=16)  # RTM_NEWLINK
    for msg in (one(mac), one(router_msg), one(short), other, Message(RTM_NEWMDB, 0, 0, b"\x07")):
        assert parse_bridge_mdb(msg) == []


def test_parse_agrees_with_replication_parse_mdb() -> None:
    """Same walk as replication.netlink.parse_mdb: device, port, source and group agree."""
    raw = mdb_message(
        RTM_NEWMDB,
        BR100,
        [entry_info(H1, G1, source=S1, mode=MCAST_INCLUDE), entry_info(H2, G1, mode=MCAST_EXCLUDE)],
        [entry_info(H1, G6, source=S6)],
    )
    ours = [(e.device, e.port, e.source, e.group) for e in parse_bridge_mdb(one(raw))]
    theirs = [(r.device, r.port, r.source, r.group) for r in parse_mdb(one(raw))]
    assert ours == theirs and len(ours) == 3


@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    for kind in (RTM_NEWMDB, RTM_DELMDB, RTM_GETMDB):
        parse_bridge_mdb(Message(kind, 0, 0, data))
    for msg in iter_messages(data):
        parse_bridge_mdb(msg)


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=300))
def test_mangled_real_messages_never_raise(noise: bytes, cut: int) -> None:
    raw = mdb_message(
        RTM_NEWMDB,
        BR100,
        [entry_info(H1, G1, mode=MCAST_INCLUDE, sources=[S1]), entry_info(H1, G6, source=S6)],
    )
    mangled = raw[:cut] + noise + raw[cut + len(noise) :]
    for msg in iter_messages(mangled):
        parse_bridge_mdb(msg)
    parse_bridge_mdb(Message(RTM_NEWMDB, 0, 0, mangled[16:]))


# --------------------------------------------------------------------------- link-local groups


@pytest.mark.parametrize(
    ("group", "link_local"),
    [
        ("224.0.0.1", True),
        ("224.0.0.22", True),
        ("224.0.0.251", True),
        ("224.0.0.255", True),
        ("224.0.1.1", False),
        ("239.1.1.1", False),
        ("232.1.1.1", False),
        ("ff02::1", True),
        ("ff02::6a", True),
        ("ff02::1:ff00:1", True),
        ("ff01::1", True),
        ("ff00::1", True),
        ("ff12::1", True),  # transient, link-local scope
        ("ff32::8000:1", True),
        ("ff05::1:3", False),
        ("ff0e::1", False),
        ("ff3e::8000:1", False),
        ("ff15::1", False),
    ],
)
def test_is_link_local_group(group: str, link_local: bool) -> None:
    assert is_link_local_group(ip_address(group)) is link_local


# --------------------------------------------------------------------------- records -> joins


def joins(entries: Iterable[BridgeMdbEntry], **kwargs: bool) -> set[LocalJoin]:
    return joins_from_entries(entries, names, BRIDGES, EXCLUDE_PORTS, **kwargs)


def test_only_host_ports_of_watched_bridges() -> None:
    entries = [
        entry(H1, G1),  # a host port: yes
        entry(VX100, G1),  # the bridge's VXLAN port
        entry(BR100, G1),  # the bridge itself (host joined)
        entry(H3, G1, device=BR200),  # a bridge that is not watched
        entry(VX100, G1, device=VX100, remote=True, state=MDB_PERMANENT),  # the VXLAN MDB
        entry(99, G1),  # a port that is gone
        entry(H2, G1, device=98),  # a bridge that is gone
    ]
    assert joins(entries) == {LocalJoin("br100", "h1p", None, G1, False)}


def test_the_vxlan_port_is_per_bridge() -> None:
    """vxlan200 is only the excluded port of br200; under br100 it would be a host port."""
    got = joins_from_entries([entry(VX200, G1)], names, {"br100": 100}, {"br100": "vxlan100"})
    assert got == {LocalJoin("br100", "vxlan200", None, G1, False)}
    assert host_port(entry(VX200, G1, device=BR200), names, {"br200": 200}, EXCLUDE_PORTS) is None


def test_link_local_and_non_multicast_groups_never_join() -> None:
    entries = [
        entry(H1, ip_address("ff02::1:ff09:5268"), mode=MCAST_EXCLUDE),  # solicited-node
        entry(H1, ip_address("ff02::6a")),
        entry(H1, ip_address("224.0.0.251"), mode=MCAST_EXCLUDE),
        entry(H1, ip_address("ff12::1")),
        entry(H1, ip_address("0.0.0.0")),
        entry(H1, ip_address("10.1.1.1")),
        entry(H1, ip_address("::")),
    ]
    assert joins(entries) == set()


def test_ipv4_and_ipv6_joins() -> None:
    assert joins([entry(H1, G1), entry(H2, G6)]) == {
        LocalJoin("br100", "h1p", None, G1, False),
        LocalJoin("br100", "h2p", None, G6, False),
    }


def test_mode_gives_the_exclude_flag() -> None:
    assert joins([entry(H1, G1, mode=MCAST_EXCLUDE)]) == {LocalJoin("br100", "h1p", None, G1, True)}
    assert joins([entry(H1, G1, mode=None)]) == {LocalJoin("br100", "h1p", None, G1, False)}


def test_source_specific_join_is_the_sg_entry_not_the_include_star_g() -> None:
    entries = [entry(H1, G1, mode=MCAST_INCLUDE), entry(H1, G1, S1, MCAST_INCLUDE)]
    assert joins(entries) == {LocalJoin("br100", "h1p", S1, G1, False)}
    assert joins([entry(H1, G1, mode=MCAST_INCLUDE)]) == set()  # INCLUDE {}: nothing


def test_exclude_mode_covers_its_sources() -> None:
    star = entry(H1, G1, mode=MCAST_EXCLUDE)
    requested = entry(H1, G1, S1, MCAST_INCLUDE)  # EXCLUDE(X={S1}, Y): S1 still forwarded
    blocked = entry(H1, G1, S2, MCAST_INCLUDE, MDB_FLAGS_BLOCKED)  # S2 excluded
    assert joins([star, requested, blocked]) == {LocalJoin("br100", "h1p", None, G1, True)}
    assert joins([star, requested, blocked], excluded_sources=True) == {
        LocalJoin("br100", "h1p", None, G1, True),
        LocalJoin("br100", "h1p", S2, G1, True),
    }


def test_star_excl_copies_are_not_joins() -> None:
    """h2 joined (S1,G) and h1 (*,G) EXCLUDE: the bridge adds h1 to (S1,G) with STAR_EXCL."""
    entries = [
        entry(H2, G1, mode=MCAST_INCLUDE),
        entry(H2, G1, S1, MCAST_INCLUDE),
        entry(H1, G1, mode=MCAST_EXCLUDE),
        entry(H1, G1, S1, MCAST_INCLUDE, MDB_FLAGS_STAR_EXCL),
    ]
    assert joins(entries) == {
        LocalJoin("br100", "h2p", S1, G1, False),
        LocalJoin("br100", "h1p", None, G1, True),
    }
    # Even on its own (the (*,G) not seen yet) a STAR_EXCL copy is no join.
    assert joins([entry(H1, G1, S1, MCAST_INCLUDE, MDB_FLAGS_STAR_EXCL)]) == set()


def test_learned_only_skips_static_entries() -> None:
    entries = [entry(H1, G1, state=MDB_PERMANENT), entry(H2, G1)]
    assert joins(entries) == {
        LocalJoin("br100", "h1p", None, G1, False),
        LocalJoin("br100", "h2p", None, G1, False),
    }
    assert joins(entries, learned_only=True) == {LocalJoin("br100", "h2p", None, G1, False)}


def test_port_group_joins_empty() -> None:
    assert port_group_joins("br100", "h1p", []) == set()


# --------------------------------------------------------------------------- diff

J1 = LocalJoin("br100", "h1p", None, G1, True)
J2 = LocalJoin("br100", "h2p", None, G1, True)
J3 = LocalJoin("br100", "h1p", S1, G1, False)
J6 = LocalJoin("br100", "h2p", None, G6, True)


def test_diff_leaves_first_then_joins() -> None:
    assert diff({J1, J2}, {J2, J3, J6}) == [(False, J1), (True, J3), (True, J6)]
    assert diff({J1}, {J1}) == []
    assert diff(set(), set()) == []


def test_diff_mode_change_is_leave_and_join() -> None:
    include = LocalJoin("br100", "h1p", None, G1, False)
    assert diff({include}, {J1}) == [(False, include), (True, J1)]


_joins = st.builds(
    LocalJoin,
    st.sampled_from(["br100", "br200"]),
    st.sampled_from(["h1p", "h2p"]),
    st.sampled_from([None, S1, S2]),
    st.sampled_from([G1, IPv4Address("239.2.2.2")]),
    st.booleans(),
)


def apply(events: Iterable[Event], joins: Iterable[LocalJoin]) -> set[LocalJoin]:
    out = set(joins)
    for joined, join in events:
        if joined:
            assert join not in out
            out.add(join)
        else:
            out.remove(join)
    return out


@given(st.sets(_joins), st.sets(_joins))
def test_diff_takes_old_to_new(old: set[LocalJoin], new: set[LocalJoin]) -> None:
    events = diff(old, new)
    assert apply(events, old) == new
    assert len(events) == len(old ^ new)
    flags = [joined for joined, _ in events]
    assert flags == sorted(flags)  # leaves (False) before joins (True)


# --------------------------------------------------------------------------- the watcher


class FakeReceiver:
    """A non-blocking notification socket: datagrams or errors, in order."""

    def __init__(self) -> None:
        self.queue: deque[bytes | OSError] = deque()
        self.closed = False

    def push(self, *items: bytes | OSError) -> None:
        self.queue.extend(items)

    def recv_into(self, buffer: bytearray) -> int:
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        item = self.queue.popleft()
        if isinstance(item, OSError):
            raise item
        buffer[: len(item)] = item
        return len(item)

    def fileno(self) -> int:
        return 99

    def close(self) -> None:
        self.closed = True


class FakeDumper:
    def __init__(self, *messages: bytes) -> None:
        self.messages = list(messages)
        self.dumps = 0
        self.closed = False

    def dump(self, build: Callable[[int], bytes]) -> list[Message]:
        request = one(build(7))
        assert request.kind == RTM_GETMDB and request.flags & 0x300 == 0x300  # NLM_F_DUMP
        self.dumps += 1
        return list(iter_messages(b"".join(self.messages)))

    def close(self) -> None:
        self.closed = True


def watcher(*dump: bytes, **kwargs: bool) -> tuple[MdbWatcher, FakeReceiver, FakeDumper]:
    receiver, dumper = FakeReceiver(), FakeDumper(*dump)
    w = MdbWatcher(BRIDGES, EXCLUDE_PORTS, names=names, notifications=receiver, dumper=dumper, **kwargs)
    return w, receiver, dumper


def new(port: int, group: IPAddress, **kwargs: object) -> bytes:
    return notify(RTM_NEWMDB, BR100, entry_info(port, group, **kwargs))  # type: ignore[arg-type]


def delete(port: int, group: IPAddress, **kwargs: object) -> bytes:
    return notify(RTM_DELMDB, BR100, entry_info(port, group, **kwargs))  # type: ignore[arg-type]


def test_snapshot_is_the_baseline() -> None:
    dump = mdb_message(
        RTM_GETMDB,
        BR100,
        [entry_info(H1, G1, mode=MCAST_EXCLUDE), entry_info(VX100, G1, mode=MCAST_EXCLUDE)],
        [entry_info(BR100, ip_address("ff02::6a")), entry_info(H2, ip_address("ff02::1:ff00:1"))],
    )
    w, receiver, dumper = watcher(dump)
    assert w.snapshot() == {J1}
    assert w.joins == {J1}
    assert w.fileno() == 99
    receiver.push(delete(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(False, J1)]
    assert w.joins == set()
    w.close()
    assert receiver.closed and dumper.closed


def test_join_refresh_and_leave() -> None:
    w, receiver, _ = watcher()
    assert w.snapshot() == set()
    assert w.read() == []
    receiver.push(new(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(True, J1)]
    receiver.push(new(H1, G1, mode=MCAST_EXCLUDE), new(H1, G1, mode=MCAST_EXCLUDE))  # re-announced
    assert w.read() == []
    receiver.push(delete(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(False, J1)]
    receiver.push(delete(H1, G1, mode=MCAST_EXCLUDE))  # already gone
    assert w.read() == []


def test_ignored_entries_give_no_events() -> None:
    w, receiver, _ = watcher()
    w.snapshot()
    receiver.push(
        new(VX100, G1),
        new(BR100, G1),
        new(H1, ip_address("ff02::1:ff12:3456")),
        new(H1, ip_address("224.0.0.251")),
        notify(RTM_NEWMDB, BR200, entry_info(H3, G1)),
        notify(RTM_NEWMDB, VX100, entry_info(VX100, G1, dst=ip_address("10.0.0.2"), state=MDB_PERMANENT)),
        delete(VX100, G1),
        b"\x00" * 10,
    )
    assert w.read() == []
    assert w.joins == set()


def test_mode_change_is_a_leave_and_a_join() -> None:
    w, receiver, _ = watcher()
    w.snapshot()
    receiver.push(new(H1, G1))  # IGMPv2 snooping: no mode
    (event,) = w.read()
    assert event == (True, LocalJoin("br100", "h1p", None, G1, False))
    receiver.push(new(H1, G1, mode=MCAST_EXCLUDE))  # the bridge moved to IGMPv3
    assert w.read() == [(False, LocalJoin("br100", "h1p", None, G1, False)), (True, J1)]


def test_source_specific_join_and_leave() -> None:
    w, receiver, _ = watcher()
    w.snapshot()
    receiver.push(new(H1, G1, source=S1, mode=MCAST_INCLUDE), new(H1, G1, mode=MCAST_INCLUDE, sources=[S1]))
    assert w.read() == [(True, J3)]
    receiver.push(delete(H1, G1, source=S1, mode=MCAST_INCLUDE))
    assert w.read() == [(False, J3)]
    receiver.push(delete(H1, G1, mode=MCAST_INCLUDE))
    assert w.read() == []


def test_include_to_exclude_switch() -> None:
    """(S1,G) INCLUDE, then the host asks for any source: (*,G) EXCLUDE covers S1."""
    w, receiver, _ = watcher()
    w.snapshot()
    receiver.push(new(H1, G1, source=S1, mode=MCAST_INCLUDE), new(H1, G1, mode=MCAST_INCLUDE, sources=[S1]))
    assert w.read() == [(True, J3)]
    receiver.push(new(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(False, J3), (True, J1)]


def test_star_excl_race_within_one_batch_gives_no_blip() -> None:
    """The kernel announces the STAR_EXCL copy before setting the flag, and before the (*,G)."""
    w, receiver, _ = watcher()
    w.snapshot()
    receiver.push(new(H2, G1, source=S1, mode=MCAST_INCLUDE), new(H2, G1, mode=MCAST_INCLUDE, sources=[S1]))
    assert w.read() == [(True, LocalJoin("br100", "h2p", S1, G1, False))]
    receiver.push(new(H1, G1, source=S1, mode=MCAST_INCLUDE), new(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(True, J1)]
    # Split over two reads, the copy shows up for a moment and then goes.
    w2, receiver2, _ = watcher()
    w2.snapshot()
    receiver2.push(new(H1, G1, source=S1, mode=MCAST_INCLUDE))
    assert w2.read() == [(True, J3)]
    receiver2.push(new(H1, G1, mode=MCAST_EXCLUDE))
    assert w2.read() == [(False, J3), (True, J1)]


def test_blocked_source_reported_only_when_asked() -> None:
    for excluded_sources, expected in (
        (False, []),
        (True, [(True, LocalJoin("br100", "h1p", S2, G1, True))]),
    ):
        w, receiver, _ = watcher(excluded_sources=excluded_sources)
        w.snapshot()
        receiver.push(new(H1, G1, mode=MCAST_EXCLUDE))
        assert w.read() == [(True, J1)]
        receiver.push(new(H1, G1, source=S2, mode=MCAST_INCLUDE, flags=MDB_FLAGS_BLOCKED))
        assert w.read() == expected


def test_leave_after_the_port_is_gone() -> None:
    """Deleting a port flushes its entries: the leave needs no name lookup."""
    gone = dict(NAMES)
    receiver, dumper = FakeReceiver(), FakeDumper()
    w = MdbWatcher(BRIDGES, EXCLUDE_PORTS, names=gone.get, notifications=receiver, dumper=dumper)
    w.snapshot()
    receiver.push(new(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(True, J1)]
    del gone[H1]
    receiver.push(delete(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(False, J1)]


def test_learned_only_watcher() -> None:
    w, receiver, _ = watcher(learned_only=True)
    w.snapshot()
    receiver.push(new(H1, G1, state=MDB_PERMANENT), new(H2, G1))
    assert w.read() == [(True, LocalJoin("br100", "h2p", None, G1, False))]


def test_overrun_raises_until_resync() -> None:
    w, receiver, dumper = watcher()
    w.snapshot()
    receiver.push(new(H1, G1, mode=MCAST_EXCLUDE))
    assert w.read() == [(True, J1)]
    # Lost: the leave of h1 and the join of h2; what is still queued is older than the dump.
    receiver.push(new(H2, G6), OSError(errno.ENOBUFS, "No buffer space available"), new(H2, G1))
    with pytest.raises(MdbOverrunError):
        w.read()
    assert w.needs_resync
    assert not receiver.queue  # emptied: a level-triggered reader must not spin on it
    receiver.push(new(H2, G6))
    with pytest.raises(MdbOverrunError):
        w.read()
    assert not receiver.queue
    receiver.push(new(H1, G6))  # stale by the time of the dump
    dumper.messages = [
        mdb_message(RTM_GETMDB, BR100, [entry_info(H2, G1, mode=MCAST_EXCLUDE)], [entry_info(H2, G6)])
    ]
    assert w.resync() == [(False, J1), (True, J2), (True, LocalJoin("br100", "h2p", None, G6, False))]
    assert not w.needs_resync
    assert not receiver.queue  # the stale queue was dropped
    assert w.read() == []
    assert w.joins == {J2, LocalJoin("br100", "h2p", None, G6, False)}


def test_other_receive_errors_propagate() -> None:
    w, receiver, _ = watcher()
    receiver.push(OSError(errno.EBADF, "closed"))
    with pytest.raises(OSError, match="closed"):
        w.read()


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_datagrams_never_raise(datagrams: list[bytes]) -> None:
    w, receiver, _ = watcher()
    w.snapshot()
    receiver.push(*datagrams)
    events = w.read()
    assert apply(events, set()) == set(w.joins)


# A model of the kernel: notifications put and remove entries; the watcher must always agree
# with the joins of whatever entries are present, and its events must add up to that.
_universe = [
    (H1, G1, None, MCAST_EXCLUDE, 0),
    (H1, G1, None, MCAST_INCLUDE, 0),
    (H1, G1, None, None, 0),
    (H1, G1, S1, MCAST_INCLUDE, 0),
    (H1, G1, S1, MCAST_INCLUDE, MDB_FLAGS_STAR_EXCL),
    (H1, G1, S2, MCAST_INCLUDE, MDB_FLAGS_BLOCKED),
    (H2, G1, None, MCAST_EXCLUDE, 0),
    (H2, G1, S1, MCAST_INCLUDE, 0),
    (H2, G6, None, None, 0),
    (VX100, G1, None, MCAST_EXCLUDE, 0),
    (H1, IPv4Address("224.0.0.251"), None, MCAST_EXCLUDE, 0),
]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(_universe), st.integers(min_value=1, max_value=3)),
        max_size=30,
    ),
    st.booleans(),
)
def test_watcher_agrees_with_the_entries(
    steps: list[tuple[bool, tuple[int, IPAddress, IPAddress | None, int | None, int], int]],
    excluded_sources: bool,
) -> None:
    w, receiver, _ = watcher(excluded_sources=excluded_sources)
    w.snapshot()
    kernel: dict[tuple[int, IPAddress | None, IPAddress], BridgeMdbEntry] = {}
    seen: set[LocalJoin] = set()
    for present, (port, group, source, mode, flags), batch in steps:
        key = (port, source, group)
        if present:
            kernel[key] = entry(port, group, source, mode, flags)
            receiver.push(new(port, group, source=source, mode=mode, flags=flags))
        else:
            kernel.pop(key, None)
            receiver.push(delete(port, group, source=source, mode=mode, flags=flags))
        if len(receiver.queue) >= batch:
            seen = apply(w.read(), seen)
    seen = apply(w.read(), seen)
    expected = joins(kernel.values(), excluded_sources=excluded_sources)
    assert seen == expected == w.joins
