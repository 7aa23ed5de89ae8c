"""Unit and property tests for ipmr.reader: the MFC rtnetlink codec, the procfs VIF tables and
the human view.

Messages are packed here by hand from the uapi layouts (rtnetlink.h: struct rtmsg, struct
rtnexthop, struct rta_mfc_stats) rather than with the module's own structs, so a wrong layout
in the codec cannot hide behind the same mistake in the test. The byte sequences mirror what
Linux 6.18 was seen to send (see tests/netns/test_ipmr_reader.py).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipmr.reader import (
    Mroute,
    VifStats,
    mroute_dump_request,
    mroute_lines,
    parse_mroute,
    parse_vif_table,
    read_vifs,
)
from replication.netlink import Message, iter_attrs, iter_messages

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP = 0x01, 0x02, 0x300
RTA_DST, RTA_SRC, RTA_IIF, RTA_MULTIPATH, RTA_TABLE, RTA_MFC_STATS, RTA_EXPIRES = 1, 2, 3, 9, 15, 17, 23
RTNH_F_UNRESOLVED = 0x20
RTN_MULTICAST = 5
RTPROT_MROUTED = 17


def nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\x00" * (-size & 3)


def rtmsg(family: int, table: int, flags: int = 0) -> bytes:
    bits = 32 if family == 128 else 128
    return struct.pack(
        "=BBBBBBBBI", family, bits, bits, 0, table & 0xFF, RTPROT_MROUTED, 0, RTN_MULTICAST, flags
    )


def nexthops(*oifs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("=HBBi", 8, 0, ttl, ifindex) for ifindex, ttl in oifs)


def newroute(
    family: int,
    source: str,
    group: str,
    *,
    table: int | None = None,
    iif: int | None = None,
    oifs: tuple[tuple[int, int], ...] | None = None,
    stats: tuple[int, int, int] | None = None,
    expires: int | None = None,
    flags: int = 0,
    kind: int = RTM_NEWROUTE,
) -> Message:
    table = table if table is not None else (253 if family == 128 else 254)
    body = rtmsg(family, table, flags) + nla(RTA_TABLE, struct.pack("=I", table))
    body += nla(RTA_SRC, ip_address(source).packed) + nla(RTA_DST, ip_address(group).packed)
    if iif is not None:
        body += nla(RTA_IIF, struct.pack("=I", iif))
    if oifs is not None:
        body += nla(RTA_MULTIPATH, nexthops(*oifs))
    if stats is not None:
        body += nla(RTA_MFC_STATS, struct.pack("=QQQ", *stats))
    if expires is not None:
        body += nla(RTA_EXPIRES, struct.pack("=Q", expires))
    return Message(kind, NLM_F_MULTI, 7, body)


# --------------------------------------------------------------------------- request


@pytest.mark.parametrize(("family", "rtnl"), [(4, 128), (6, 129), (128, 128), (129, 129)])
def test_dump_request_is_a_plain_rtm_getroute_dump_of_the_ipmr_family(family: int, rtnl: int) -> None:
    data = mroute_dump_request(42, family)
    assert data == struct.pack("=IHHII", 28, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 42, 0) + struct.pack(
        "=BBBBBBBBI", rtnl, 0, 0, 0, 0, 0, 0, 0, 0
    )
    [msg] = list(iter_messages(data))
    assert (msg.kind, msg.seq) == (RTM_GETROUTE, 42)


def test_dump_request_filters_a_table_through_rta_table() -> None:
    small = mroute_dump_request(1, 4, table=100)
    assert small[16 + 4] == 100  # rtm_table
    assert list(iter_attrs(small, 16 + 12)) == [(RTA_TABLE, struct.pack("=I", 100))]
    big = mroute_dump_request(1, 6, table=1000)
    assert big[16] == 129
    assert big[16 + 4] == 252  # RT_TABLE_COMPAT: the 8-bit field cannot hold 1000
    assert list(iter_attrs(big, 16 + 12)) == [(RTA_TABLE, struct.pack("=I", 1000))]
    assert struct.unpack_from("=I", big)[0] == len(big) == 16 + 12 + 8


@pytest.mark.parametrize("family", [0, 2, 10, 5, 130])
def test_dump_request_refuses_other_families(family: int) -> None:
    with pytest.raises(ValueError, match="multicast routing family"):
        mroute_dump_request(1, family)


# --------------------------------------------------------------------------- parse_mroute


def test_resolved_ipv4_entry_with_oifs_stats_and_idle_time() -> None:
    msg = newroute(
        128,
        "10.0.0.1",
        "239.1.1.1",
        iif=2,
        oifs=((4, 3), (3, 1)),
        stats=(3, 384, 1),
        expires=50,
    )
    route = parse_mroute(msg)
    assert route == Mroute(
        family=4,
        table=253,
        source=IPv4Address("10.0.0.1"),
        group=IPv4Address("239.1.1.1"),
        iif=2,
        oifs=((3, 1), (4, 3)),
        packets=3,
        bytes=384,
        wrong_if=1,
        unresolved=False,
    )
    assert route is not None
    assert route.idle == 0.5


def test_resolved_ipv6_entry() -> None:
    msg = newroute(129, "fd00::1", "ff0e::1:1", iif=2, oifs=((3, 1), (4, 1)), stats=(3, 444, 0), expires=0)
    assert parse_mroute(msg) == Mroute(
        6, 254, IPv6Address("fd00::1"), IPv6Address("ff0e::1:1"), 2, ((3, 1), (4, 1)), 3, 444, 0, False, 0.0
    )


def test_idle_time_is_left_out_of_equality() -> None:
    a = parse_mroute(newroute(128, "10.0.0.1", "239.1.1.1", iif=2, oifs=(), stats=(0, 0, 0), expires=0))
    b = parse_mroute(newroute(128, "10.0.0.1", "239.1.1.1", iif=2, oifs=(), stats=(0, 0, 0), expires=900))
    assert a == b
    assert hash(a) == hash(b)
    assert a is not None
    assert b is not None
    assert (a.idle, b.idle) == (0.0, 9.0)


def test_entry_without_multipath_or_stats_has_no_oifs_and_zero_counters() -> None:
    route = parse_mroute(newroute(128, "10.0.0.1", "239.1.1.1", iif=5))
    assert route is not None
    assert (route.iif, route.oifs, route.packets, route.bytes, route.wrong_if, route.idle) == (
        5,
        (),
        0,
        0,
        0,
        None,
    )
    empty_nest = parse_mroute(newroute(128, "10.0.0.1", "239.1.1.1", iif=5, oifs=()))
    assert empty_nest == route


@pytest.mark.parametrize(
    ("family", "source", "group", "want_group"),
    [
        (128, "0.0.0.0", "239.3.3.3", IPv4Address("239.3.3.3")),
        (128, "0.0.0.0", "0.0.0.0", None),
        (129, "::", "ff0e::3:3", IPv6Address("ff0e::3:3")),
        (129, "::", "::", None),
    ],
)
def test_wildcards_map_to_none(family: int, source: str, group: str, want_group: IPv4Address | None) -> None:
    route = parse_mroute(newroute(family, source, group, iif=2, oifs=((3, 1),)))
    assert route is not None
    assert route.source is None
    assert route.group == want_group


def test_missing_src_and_dst_are_wildcards_too() -> None:
    body = rtmsg(128, 253) + nla(RTA_IIF, struct.pack("=I", 2))
    route = parse_mroute(Message(RTM_NEWROUTE, 0, 1, body))
    assert route is not None
    assert (route.source, route.group, route.iif) == (None, None, 2)


def test_unresolved_entry_as_the_kernel_sends_it() -> None:
    # Only RTA_TABLE/SRC/DST and RTNH_F_UNRESOLVED in rtm_flags: no IIF, oifs, stats, expiry.
    route = parse_mroute(newroute(128, "10.0.0.1", "239.9.9.9", flags=RTNH_F_UNRESOLVED))
    assert route == Mroute(4, 253, IPv4Address("10.0.0.1"), IPv4Address("239.9.9.9"), None, (), 0, 0, 0, True)
    route6 = parse_mroute(newroute(129, "fd00::1", "ff0e::9:9", flags=RTNH_F_UNRESOLVED))
    assert route6 is not None
    assert (route6.family, route6.unresolved, route6.iif) == (6, True, None)


def test_resolved_entry_without_iif_is_not_unresolved() -> None:
    # The parent VIF was deleted: the kernel leaves RTA_IIF out but the entry is resolved.
    route = parse_mroute(newroute(128, "10.0.0.1", "239.1.1.1", oifs=((3, 1),), stats=(0, 0, 0)))
    assert route is not None
    assert (route.iif, route.unresolved) == (None, False)


def test_table_comes_from_rta_table_not_the_truncated_rtm_table() -> None:
    route = parse_mroute(newroute(128, "10.0.0.1", "239.1.1.1", table=1000, iif=2))
    assert route is not None
    assert route.table == 1000
    body = rtmsg(129, 77)  # no RTA_TABLE: fall back to the header
    only_header = parse_mroute(Message(RTM_NEWROUTE, 0, 1, body))
    assert only_header is not None
    assert only_header.table == 77


def test_delroute_notifications_parse_alike() -> None:
    new = newroute(128, "10.0.0.1", "239.1.1.1", iif=2, oifs=((3, 1),))
    gone = parse_mroute(new._replace(kind=RTM_DELROUTE))
    assert gone == parse_mroute(new)


def test_padded_rtnexthops_are_walked_by_their_length() -> None:
    # A rtnexthop may carry nested attributes after it (rtnh_len > 8): skip them.
    nest = struct.pack("=HBBi", 16, 0, 1, 3) + nla(99, b"abcd") + struct.pack("=HBBi", 8, 0, 2, 4)
    body = rtmsg(128, 253) + nla(RTA_IIF, struct.pack("=I", 2)) + nla(RTA_MULTIPATH, nest)
    route = parse_mroute(Message(RTM_NEWROUTE, 0, 1, body))
    assert route is not None
    assert route.oifs == ((3, 1), (4, 2))


@pytest.mark.parametrize(
    "msg",
    [
        Message(RTM_NEWROUTE, 0, 1, b""),
        Message(RTM_NEWROUTE, 0, 1, rtmsg(128, 253)[:11]),
        Message(RTM_GETROUTE, 0, 1, rtmsg(128, 253)),
        Message(28, 0, 1, rtmsg(128, 253)),  # RTM_NEWNEIGH
        Message(RTM_NEWROUTE, 0, 1, struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 2, 0, 1, 0)),  # unicast
        Message(RTM_NEWROUTE, 0, 1, rtmsg(128, 253) + nla(RTA_DST, IPv6Address("ff0e::1").packed)),
        Message(RTM_NEWROUTE, 0, 1, rtmsg(129, 254) + nla(RTA_SRC, IPv4Address("10.0.0.1").packed)),
        Message(RTM_NEWROUTE, 0, 1, rtmsg(128, 253) + nla(RTA_MULTIPATH, struct.pack("=HBBi", 12, 0, 1, 3))),
        Message(RTM_NEWROUTE, 0, 1, rtmsg(128, 253) + nla(RTA_MULTIPATH, struct.pack("=HBBi", 4, 0, 1, 3))),
    ],
)
def test_malformed_or_foreign_messages_give_none(msg: Message) -> None:
    assert parse_mroute(msg) is None


def test_short_attributes_are_ignored_not_fatal() -> None:
    body = (
        rtmsg(128, 253)
        + nla(RTA_TABLE, b"\x01")
        + nla(RTA_IIF, b"\x02\x00")
        + nla(RTA_MFC_STATS, b"\x00" * 8)
        + nla(RTA_EXPIRES, b"\x00" * 4)
    )
    route = parse_mroute(Message(RTM_NEWROUTE, 0, 1, body))
    assert route == Mroute(4, 253, None, None, None, (), 0, 0, 0, False)


_FAST = settings(max_examples=400, deadline=None)
_ATTR = st.tuples(
    st.sampled_from([RTA_DST, RTA_SRC, RTA_IIF, RTA_MULTIPATH, RTA_TABLE, RTA_MFC_STATS, RTA_EXPIRES, 0, 21]),
    st.binary(max_size=40),
)


@_FAST
@given(st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_random_payloads_never_raise(kind: int, payload: bytes) -> None:
    route = parse_mroute(Message(kind, 0, 0, payload))
    assert route is None or route.family in (4, 6)


@_FAST
@given(
    st.sampled_from([128, 129, 2, 10]),
    st.integers(0, 0xFFFFFFFF),
    st.lists(_ATTR, max_size=8),
    st.binary(max_size=12),
)
def test_random_attributes_never_raise(
    family: int, flags: int, attrs: list[tuple[int, bytes]], tail: bytes
) -> None:
    body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 253, 0, 0, 0, flags)
    body += b"".join(nla(kind, data) for kind, data in attrs) + tail
    route = parse_mroute(Message(RTM_NEWROUTE, 0, 0, body))
    if route is not None:
        assert route.unresolved == bool(flags & RTNH_F_UNRESOLVED)
        assert list(route.oifs) == sorted(route.oifs)


# --------------------------------------------------------------------------- procfs VIF tables

IP_MR_VIF = """\
Interface      BytesIn  PktsIn  BytesOut PktsOut Flags Local    Remote
 0 r0              384       3         0       0 00008 00000002 00000000
 1 r1                0       0       384       3 00008 00000003 00000000
 2 vxlan-very-long-name   12345678901     7 0 0 00000 0A000001 00000000
 3 pimreg            0       0         0       0 00004 00000000 00000000
31 none              1       2         3       4 00008 00000009 00000000
"""

IP6_MR_VIF = """\
Interface      BytesIn  PktsIn  BytesOut PktsOut Flags
 0 r0              444       3         0       0 00000
 1 r1                0       0       444       3 00000
 2 pim6reg           0       0         0       0 00001
"""


def test_parse_ipv4_vif_table() -> None:
    assert parse_vif_table(IP_MR_VIF) == [
        VifStats(0, "r0", 384, 3, 0, 0, 8),
        VifStats(1, "r1", 0, 0, 384, 3, 8),
        VifStats(2, "vxlan-very-long-name", 12345678901, 7, 0, 0, 0),
        VifStats(3, "pimreg", 0, 0, 0, 0, 4),
        VifStats(31, "none", 1, 2, 3, 4, 8),
    ]


def test_parse_ipv6_vif_table() -> None:
    assert parse_vif_table(IP6_MR_VIF) == [
        VifStats(0, "r0", 444, 3, 0, 0, 0),
        VifStats(1, "r1", 0, 0, 444, 3, 0),
        VifStats(2, "pim6reg", 0, 0, 0, 0, 1),
    ]


def test_parse_vif_table_skips_the_header_and_malformed_lines() -> None:
    text = (
        "Interface      BytesIn  PktsIn  BytesOut PktsOut Flags\n"
        "\n"
        " 0 r0 1 2 3\n"  # too short
        " x r1 1 2 3 4 00000\n"  # index not a number
        " 1 r1 1 2 three 4 00000\n"
        " 2 r2 1 2 3 4 0000G\n"
        " 3 r3 -1 2 3 4 00000\n"
        " 4 r4 1 2 3 4 000A0 trailing columns are fine\n"
    )
    assert parse_vif_table(text) == [VifStats(4, "r4", 1, 2, 3, 4, 0xA0)]
    assert parse_vif_table("") == []


def test_read_vifs_picks_the_file_of_the_family(tmp_path: Path) -> None:
    (tmp_path / "ip_mr_vif").write_text(IP_MR_VIF)
    (tmp_path / "ip6_mr_vif").write_text(IP6_MR_VIF)
    assert [v.name for v in read_vifs(4, tmp_path)] == ["r0", "r1", "vxlan-very-long-name", "pimreg", "none"]
    assert [v.name for v in read_vifs(6, tmp_path)] == ["r0", "r1", "pim6reg"]
    with pytest.raises(OSError):
        read_vifs(4, tmp_path / "missing")
    with pytest.raises(ValueError):
        read_vifs(2, tmp_path)


# --------------------------------------------------------------------------- human view


def test_mroute_lines() -> None:
    names = {2: "eth0", 3: "eth1", 4: "eth2"}
    v4 = IPv4Address
    routes = [
        Mroute(4, 253, v4("10.0.0.9"), v4("239.9.9.9"), None, (), 0, 0, 0, True),
        Mroute(4, 253, v4("10.0.0.1"), v4("239.1.1.1"), 2, ((3, 1), (4, 1)), 10, 1000, 0, False),
        Mroute(4, 253, None, v4("239.1.1.0"), 2, ((3, 1), (9, 3)), 1, 2, 3, False),
        Mroute(4, 1000, None, None, None, (), 0, 0, 0, False),
        Mroute(6, 254, IPv6Address("fd00::1"), IPv6Address("ff0e::1"), 3, ((2, 1),), 5, 500, 0, False),
    ]
    assert mroute_lines(routes, names) == [
        "(*, 239.1.1.0) iif eth0 oifs eth1 if9(ttl 3) packets 1 bytes 2 wrong 3",
        "(10.0.0.1, 239.1.1.1) iif eth0 oifs eth1 eth2 packets 10 bytes 1000 wrong 0",
        "(10.0.0.9, 239.9.9.9) unresolved",
        "(*, *) iif none oifs none packets 0 bytes 0 wrong 0 table 1000",
        "(fd00::1, ff0e::1) iif eth1 oifs eth0 packets 5 bytes 500 wrong 0",
    ]
    assert mroute_lines([], names) == []
