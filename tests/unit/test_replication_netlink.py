"""Unit and property tests for replication.netlink: the pure rtnetlink FDB/MDB codec.

Expected bytes are packed here by hand from the uapi layouts (netlink.h, neighbour.h,
if_bridge.h, if_link.h) rather than with the module's own structs, so a wrong layout in the
codec cannot hide behind the same mistake in the test.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgp.evpn import IPAddress
from replication.netlink import (
    AF_BRIDGE,
    MDB_PERMANENT,
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NTF_SELF,
    RTM_DELMDB,
    RTM_DELNEIGH,
    RTM_GETMDB,
    RTM_GETNEIGH,
    RTM_NEWMDB,
    RTM_NEWNEIGH,
    Ack,
    FdbRecord,
    MdbRecord,
    Message,
    brport_router_message,
    dump_request,
    fdb_message,
    iter_attrs,
    iter_messages,
    mdb_message,
    parse_ack,
    parse_fdb,
    parse_mdb,
)

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_MULTI = 0x02
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLA_F_NESTED = 0x8000
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
# neighbour.h
NDA_DST, NDA_LLADDR, NDA_PORT, NDA_VNI, NDA_IFINDEX, NDA_PROTOCOL = 1, 2, 6, 7, 8, 12
# if_bridge.h
MDBA_MDB, MDBA_ROUTER = 1, 2
MDBA_MDB_ENTRY = MDBA_MDB_ENTRY_INFO = 1
MDBA_MDB_EATTR_TIMER, MDBA_MDB_EATTR_SOURCE, MDBA_MDB_EATTR_RTPROT = 1, 4, 5
MDBA_MDB_EATTR_DST, MDBA_MDB_EATTR_DST_PORT, MDBA_MDB_EATTR_VNI = 6, 7, 8
MDBA_SET_ENTRY, MDBA_SET_ENTRY_ATTRS = 1, 2
MDBE_ATTR_SOURCE, MDBE_ATTR_RTPROT, MDBE_ATTR_DST = 1, 4, 5

ZERO_MAC = b"\x00" * 6
MCAST_MAC = bytes.fromhex("01005e010101")
V2 = ip_address("10.0.0.2")
V6A = ip_address("2001:db8::2")
G1 = ip_address("239.1.1.1")
G6 = ip_address("ff0e::1")
S1 = ip_address("192.0.2.10")
S6 = ip_address("2001:db8:1::10")
PROTO = 232


# --------------------------------------------------------------------------- hand packing


def nlmsghdr(length: int, kind: int, flags: int, seq: int, pid: int = 0) -> bytes:
    return struct.pack("=IHHII", length, kind, flags, seq, pid)


def nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\x00" * ((4 - size % 4) % 4)


def message(kind: int, body: bytes, flags: int = 0, seq: int = 0) -> bytes:
    """A complete netlink message; its length field excludes the trailing alignment pad."""
    return nlmsghdr(16 + len(body), kind, flags, seq) + body


def ndmsg(ifindex: int, state: int = NUD_NOARP | NUD_PERMANENT, family: int = AF_BRIDGE) -> bytes:
    # family u8, pad u8, pad u16, ifindex s32, state u16, flags u8, type u8
    return struct.pack("=BBHiHBB", family, 0, 0, ifindex, state, NTF_SELF, 0)


def br_mdb_entry(ifindex: int, group: IPAddress | None, proto: int, state: int = MDB_PERMANENT) -> bytes:
    # ifindex u32, state u8, flags u8, vid u16, addr { union { ip4; in6_addr; mac } u; __be16 proto } + pad
    raw = b"" if group is None else group.packed
    return (
        struct.pack("=IBBH", ifindex, state, 0, 0)
        + raw.ljust(16, b"\x00")
        + struct.pack("!H", proto)
        + b"\0\0"
    )


def single(data: bytes) -> Message:
    (msg,) = list(iter_messages(data))
    return msg


def attrs_of(payload: bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for kind, value in iter_attrs(payload, offset):
        assert kind not in out, f"attribute {kind} repeated"
        out[kind] = value
    return out


# --------------------------------------------------------------------------- FDB requests


def test_fdb_append_ipv4_exact_bytes() -> None:
    data = fdb_message(RTM_NEWNEIGH, 7, 5, ZERO_MAC, V2, PROTO)
    body = (
        ndmsg(5)
        + struct.pack("=HH", 10, NDA_LLADDR)
        + ZERO_MAC
        + b"\0\0"
        + struct.pack("=HH", 8, NDA_DST)
        + bytes([10, 0, 0, 2])
        + struct.pack("=HH", 5, NDA_PROTOCOL)
        + bytes([PROTO, 0, 0, 0])
    )
    assert data == nlmsghdr(16 + len(body), RTM_NEWNEIGH, 0x0C05, 7) + body
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", data)
    assert (length, kind, seq, pid) == (len(data), 28, 7, 0)
    assert flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
    family, ifindex, state, ntf, _type = struct.unpack_from("=BxxxiHBB", data, 16)
    assert (family, ifindex, state, ntf) == (7, 5, 0xC0, NTF_SELF)
    assert len(data) % 4 == 0


def test_fdb_append_ipv6_destination_and_protocol() -> None:
    msg = single(fdb_message(RTM_NEWNEIGH, 9, 12, MCAST_MAC, V6A, PROTO))
    assert msg.kind == RTM_NEWNEIGH
    assert msg.seq == 9
    attrs = attrs_of(msg.payload, 12)
    assert attrs == {NDA_LLADDR: MCAST_MAC, NDA_DST: V6A.packed, NDA_PROTOCOL: bytes([PROTO])}


def test_fdb_delete_has_no_create_flags_and_no_protocol() -> None:
    data = fdb_message(RTM_DELNEIGH, 3, 12, ZERO_MAC, V6A, PROTO)
    msg = single(data)
    assert msg.kind == RTM_DELNEIGH
    assert msg.flags == NLM_F_REQUEST | NLM_F_ACK
    body = ndmsg(12) + nla(NDA_LLADDR, ZERO_MAC) + nla(NDA_DST, V6A.packed)
    assert data == message(RTM_DELNEIGH, body, NLM_F_REQUEST | NLM_F_ACK, 3)
    assert NDA_PROTOCOL not in attrs_of(msg.payload, 12)


def test_fdb_add_without_protocol_leaves_attribute_out() -> None:
    msg = single(fdb_message(RTM_NEWNEIGH, 1, 5, ZERO_MAC, V2, None))
    assert set(attrs_of(msg.payload, 12)) == {NDA_LLADDR, NDA_DST}


# --------------------------------------------------------------------------- MDB requests


def test_mdb_add_star_g_ipv4_exact_bytes() -> None:
    data = mdb_message(RTM_NEWMDB, 11, 9, None, G1, V2, PROTO)
    entry = br_mdb_entry(9, G1, 0x0800)
    assert len(entry) == 28
    nested = nla(MDBE_ATTR_DST, V2.packed) + nla(MDBE_ATTR_RTPROT, bytes([PROTO]))
    body = (
        struct.pack("=BBHi", AF_BRIDGE, 0, 0, 9)
        + nla(MDBA_SET_ENTRY, entry)
        + struct.pack("=HH", 4 + len(nested), MDBA_SET_ENTRY_ATTRS | NLA_F_NESTED)
        + nested
    )
    assert data == message(RTM_NEWMDB, body, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, 11)
    # spot checks on the layout the kernel reads
    assert data[16 + 8 + 4 + 4] == MDB_PERMANENT  # br_mdb_entry.state
    assert data[16 + 8 + 4 + 24 : 16 + 8 + 4 + 26] == b"\x08\x00"  # addr.proto, big-endian


def test_mdb_delete_s_g_ipv6_layout() -> None:
    data = mdb_message(RTM_DELMDB, 12, 9, S6, G6, V6A, PROTO)
    msg = single(data)
    assert msg.kind == RTM_DELMDB
    assert msg.flags == NLM_F_REQUEST | NLM_F_ACK
    family, ifindex = struct.unpack_from("=Bxxxi", msg.payload)
    assert (family, ifindex) == (AF_BRIDGE, 9)
    top = list(iter_attrs(msg.payload, 8))
    assert [kind for kind, _ in top] == [MDBA_SET_ENTRY, MDBA_SET_ENTRY_ATTRS]
    assert top[0][1] == br_mdb_entry(9, G6, 0x86DD)
    assert top[0][1][24:26] == b"\x86\xdd"
    # the nested flag is on the wire even though iter_attrs strips it
    nested_hdr = struct.unpack_from("=HH", msg.payload, 8 + 4 + 28)
    assert nested_hdr[1] == MDBA_SET_ENTRY_ATTRS | NLA_F_NESTED
    inner = list(iter_attrs(top[1][1]))
    # (S,G): DST then SOURCE, and no RTPROT on a delete
    assert inner == [(MDBE_ATTR_DST, V6A.packed), (MDBE_ATTR_SOURCE, S6.packed)]


def test_mdb_add_s_g_carries_source_and_rtprot() -> None:
    msg = single(mdb_message(RTM_NEWMDB, 1, 4, S1, G1, V2, PROTO))
    _entry, nested = (value for _, value in iter_attrs(msg.payload, 8))
    assert dict(iter_attrs(nested)) == {
        MDBE_ATTR_DST: V2.packed,
        MDBE_ATTR_SOURCE: S1.packed,
        MDBE_ATTR_RTPROT: bytes([PROTO]),
    }


def test_mdb_star_g_has_no_source_attribute() -> None:
    for kind in (RTM_NEWMDB, RTM_DELMDB):
        msg = single(mdb_message(kind, 1, 4, None, G1, V2, PROTO))
        _entry, nested = (value for _, value in iter_attrs(msg.payload, 8))
        assert MDBE_ATTR_SOURCE not in dict(iter_attrs(nested))


def test_mdb_catch_all_groups() -> None:
    for group, proto in ((IPv4Address(0), b"\x08\x00"), (IPv6Address(0), b"\x86\xdd")):
        msg = single(mdb_message(RTM_NEWMDB, 1, 4, None, group, V2, PROTO))
        entry = next(iter_attrs(msg.payload, 8))[1]
        assert entry[8:24] == b"\x00" * 16
        assert entry[24:26] == proto


v4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


@st.composite
def mdb_args(draw: st.DrawFn) -> tuple[IPAddress | None, IPAddress, IPAddress]:
    family: st.SearchStrategy[IPAddress] = draw(st.sampled_from((v4, v6)))
    source: IPAddress | None = draw(st.none() | family)
    group: IPAddress = draw(family)
    dst: IPAddress = draw(st.one_of(v4, v6))  # the underlay family is independent of the group's
    return source, group, dst


@given(mdb_args(), st.sampled_from((RTM_NEWMDB, RTM_DELMDB)), st.integers(1, 2**31 - 1))
def test_mdb_message_round_trips_through_iter_attrs(
    args: tuple[IPAddress | None, IPAddress, IPAddress], kind: int, ifindex: int
) -> None:
    source, group, dst = args
    msg = single(mdb_message(kind, 5, ifindex, source, group, dst, PROTO))
    assert msg.kind == kind
    assert struct.unpack_from("=i", msg.payload, 4)[0] == ifindex
    (set_kind, entry), (attrs_kind, nested) = iter_attrs(msg.payload, 8)
    assert (set_kind, attrs_kind) == (MDBA_SET_ENTRY, MDBA_SET_ENTRY_ATTRS)
    assert struct.unpack_from("=I", entry)[0] == ifindex
    (proto,) = struct.unpack_from("!H", entry, 24)
    size = 4 if proto == 0x0800 else 16
    assert ip_address(entry[8 : 8 + size]) == group
    inner = dict(iter_attrs(nested))
    assert ip_address(inner[MDBE_ATTR_DST]) == dst
    if source is None:
        assert MDBE_ATTR_SOURCE not in inner
    else:
        assert ip_address(inner[MDBE_ATTR_SOURCE]) == source
    assert (MDBE_ATTR_RTPROT in inner) == (kind == RTM_NEWMDB)


# --------------------------------------------------------------------------- other requests


def test_dump_requests() -> None:
    neigh = dump_request(RTM_GETNEIGH, 21, 5)
    assert neigh == message(RTM_GETNEIGH, struct.pack("=BBHiHBB", 7, 0, 0, 5, 0, 0, 0), 0x301, 21)
    mdb = dump_request(RTM_GETMDB, 22)
    assert mdb == message(RTM_GETMDB, struct.pack("=BBHi", 7, 0, 0, 0), NLM_F_REQUEST | NLM_F_DUMP, 22)


def test_brport_router_message_layout() -> None:
    data = brport_router_message(30, 10, 2)
    # ifinfomsg: family u8, pad u8, type u16, index s32, flags u32, change u32
    ifinfo = struct.pack("=BBHiII", AF_BRIDGE, 0, 0, 10, 0, 0)
    protinfo = struct.pack("=HH", 12, 12 | NLA_F_NESTED) + nla(25, bytes([2]))
    assert data == message(19, ifinfo + protinfo, NLM_F_REQUEST | NLM_F_ACK, 30)


# --------------------------------------------------------------------------- replies: FDB


def test_parse_fdb_plain_record() -> None:
    body = ndmsg(5, NUD_PERMANENT) + nla(NDA_LLADDR, ZERO_MAC) + nla(NDA_DST, V2.packed)
    record = parse_fdb(single(message(RTM_NEWNEIGH, body, NLM_F_MULTI, 4)))
    assert record == FdbRecord(5, ZERO_MAC, V2, 0, NUD_PERMANENT, True)


def test_parse_fdb_ipv6_with_protocol() -> None:
    body = (
        ndmsg(6) + nla(NDA_LLADDR, MCAST_MAC) + nla(NDA_DST, V6A.packed) + nla(NDA_PROTOCOL, bytes([PROTO]))
    )
    record = parse_fdb(single(message(RTM_NEWNEIGH, body)))
    assert record == FdbRecord(6, MCAST_MAC, V6A, PROTO, 0xC0, True)


@pytest.mark.parametrize(
    "extra",
    [
        nla(NDA_PORT, struct.pack("!H", 4790)),
        nla(NDA_VNI, struct.pack("=I", 200)),
        nla(NDA_IFINDEX, struct.pack("=I", 3)),
    ],
)
def test_parse_fdb_entry_with_port_vni_or_ifindex_is_not_plain(extra: bytes) -> None:
    body = ndmsg(5) + nla(NDA_LLADDR, ZERO_MAC) + nla(NDA_DST, V2.packed) + extra
    record = parse_fdb(single(message(RTM_NEWNEIGH, body)))
    assert record is not None
    assert record.plain is False


def test_parse_fdb_without_destination_has_dst_none() -> None:
    record = parse_fdb(single(message(RTM_NEWNEIGH, ndmsg(5) + nla(NDA_LLADDR, MCAST_MAC))))
    assert record is not None
    assert record.dst is None


def test_parse_fdb_rejects_other_messages() -> None:
    good = nla(NDA_LLADDR, ZERO_MAC) + nla(NDA_DST, V2.packed)
    assert parse_fdb(single(message(RTM_NEWNEIGH, ndmsg(5, family=2) + good))) is None  # AF_INET
    assert parse_fdb(single(message(RTM_NEWMDB, ndmsg(5) + good))) is None
    assert parse_fdb(single(message(RTM_NEWNEIGH, ndmsg(5) + nla(NDA_DST, V2.packed)))) is None  # no MAC
    assert parse_fdb(single(message(RTM_NEWNEIGH, ndmsg(5) + nla(NDA_LLADDR, b"\1\2\3")))) is None
    assert parse_fdb(single(message(RTM_NEWNEIGH, b"\x07\0\0"))) is None  # short ndmsg


# --------------------------------------------------------------------------- replies: MDB


def mdb_info(ifindex: int, group: IPAddress | None, proto: int, *eattrs: bytes) -> bytes:
    return nla(MDBA_MDB_ENTRY_INFO, br_mdb_entry(ifindex, group, proto) + b"".join(eattrs))


def mdb_dump(device: int, *infos: bytes, nested_flag: bool = False) -> bytes:
    flag = NLA_F_NESTED if nested_flag else 0
    entry = nla(MDBA_MDB_ENTRY | flag, b"".join(infos))
    body = (
        struct.pack("=BBHi", AF_BRIDGE, 0, 0, device)
        + nla(MDBA_MDB | flag, entry)
        + nla(MDBA_ROUTER, nla(1, struct.pack("=I", 3)))  # ignored
    )
    return message(RTM_NEWMDB, body, NLM_F_MULTI, 8)


def test_parse_mdb_vxlan_dump_records() -> None:
    data = mdb_dump(
        9,
        mdb_info(
            9,
            G1,
            0x0800,
            nla(MDBA_MDB_EATTR_TIMER, struct.pack("=I", 0)),
            nla(MDBA_MDB_EATTR_RTPROT, bytes([PROTO])),
            nla(MDBA_MDB_EATTR_DST, V2.packed),
        ),
        mdb_info(
            9,
            G6,
            0x86DD,
            nla(MDBA_MDB_EATTR_SOURCE, S6.packed),
            nla(MDBA_MDB_EATTR_RTPROT, bytes([3])),
            nla(MDBA_MDB_EATTR_DST, V6A.packed),
        ),
        mdb_info(9, IPv4Address(0), 0x0800, nla(MDBA_MDB_EATTR_DST, IPv4Address(0).packed)),
        nested_flag=True,
    )
    assert parse_mdb(single(data)) == [
        MdbRecord(9, 9, None, G1, V2, PROTO, True),
        MdbRecord(9, 9, S6, G6, V6A, 3, True),
        MdbRecord(9, 9, None, IPv4Address(0), IPv4Address(0), 0, True),
    ]


def test_parse_mdb_bridge_entry_has_no_dst() -> None:
    data = mdb_dump(4, mdb_info(7, G1, 0x0800, nla(MDBA_MDB_EATTR_RTPROT, bytes([3]))))
    assert parse_mdb(single(data)) == [MdbRecord(4, 7, None, G1, None, 3, True)]


@pytest.mark.parametrize(
    "extra", [nla(MDBA_MDB_EATTR_DST_PORT, struct.pack("!H", 4790)), nla(MDBA_MDB_EATTR_VNI, b"\0\0\0\1")]
)
def test_parse_mdb_remote_with_port_or_vni_is_not_plain(extra: bytes) -> None:
    data = mdb_dump(9, mdb_info(9, G1, 0x0800, nla(MDBA_MDB_EATTR_DST, V2.packed), extra))
    (record,) = parse_mdb(single(data))
    assert record.plain is False


def test_parse_mdb_skips_l2_entries_and_short_info() -> None:
    l2 = nla(MDBA_MDB_ENTRY_INFO, br_mdb_entry(9, None, 0)[:8] + MCAST_MAC.ljust(16, b"\0") + b"\0" * 4)
    short = nla(MDBA_MDB_ENTRY_INFO, b"\0" * 20)
    assert parse_mdb(single(mdb_dump(9, l2, short))) == []


def test_parse_mdb_empty_device_and_other_messages() -> None:
    empty = message(RTM_NEWMDB, struct.pack("=BBHi", AF_BRIDGE, 0, 0, 9) + nla(MDBA_MDB, b""))
    assert parse_mdb(single(empty)) == []
    assert parse_mdb(single(message(RTM_NEWNEIGH, b"\0" * 16))) == []
    assert parse_mdb(single(message(RTM_NEWMDB, b"\7\0"))) == []


# --------------------------------------------------------------------------- replies: acks


def test_parse_ack_success_and_plain_error() -> None:
    echoed = nlmsghdr(56, RTM_NEWNEIGH, 0x0C05, 42)
    ok = single(message(NLMSG_ERROR, struct.pack("=i", 0) + echoed, NLM_F_CAPPED, 42))
    assert parse_ack(ok) == Ack(42, 0, "")
    err = single(message(NLMSG_ERROR, struct.pack("=i", -17) + echoed, 0, 43))
    assert parse_ack(err) == Ack(43, 17, "")


def test_parse_ack_capped_extended_text() -> None:
    echoed = nlmsghdr(56, RTM_NEWNEIGH, 0x0C05, 42)
    text = b"Address family not supported\x00"
    payload = struct.pack("=i", -97) + echoed + nla(2, struct.pack("=I", 16)) + nla(1, text)
    data = message(NLMSG_ERROR, payload, NLM_F_CAPPED | NLM_F_ACK_TLVS, 42)
    assert parse_ack(single(data)) == Ack(42, 97, "Address family not supported")


def test_parse_ack_uncapped_extended_text_skips_echoed_request() -> None:
    request = fdb_message(RTM_NEWNEIGH, 44, 5, ZERO_MAC, V2, PROTO)
    assert len(request) % 4 == 0
    odd = request[:-3]  # an echoed request whose length is not a multiple of 4
    odd = struct.pack("=I", len(odd)) + odd[4:]
    for echoed in (request, odd + b"\0" * 3):
        payload = struct.pack("=i", -105) + echoed + nla(1, b"No buffer space\x00")
        data = message(NLMSG_ERROR, payload, NLM_F_ACK_TLVS, 44)
        assert parse_ack(single(data)) == Ack(44, 105, "No buffer space")


def test_parse_ack_ignores_tlvs_without_flag_and_other_messages() -> None:
    echoed = nlmsghdr(56, RTM_NEWNEIGH, 0x0C05, 1)
    payload = struct.pack("=i", -22) + echoed + nla(1, b"text\x00")
    assert parse_ack(single(message(NLMSG_ERROR, payload, NLM_F_CAPPED, 1))) == Ack(1, 22, "")
    assert parse_ack(single(message(NLMSG_DONE, struct.pack("=i", 0)))) is None
    assert parse_ack(single(message(NLMSG_ERROR, b"\0\0"))) is None


# --------------------------------------------------------------------------- framing


def test_iter_messages_concatenated_with_padding() -> None:
    first = message(RTM_NEWNEIGH, b"abcde", 0, 1)  # 21 bytes, padded to 24 on the wire
    second = message(NLMSG_DONE, struct.pack("=i", 0), NLM_F_MULTI, 2)
    third = fdb_message(RTM_DELNEIGH, 3, 5, ZERO_MAC, V2, None)
    data = first + b"\0\0\0" + second + third
    assert list(iter_messages(data)) == [
        Message(RTM_NEWNEIGH, 0, 1, b"abcde"),
        Message(NLMSG_DONE, NLM_F_MULTI, 2, b"\0\0\0\0"),
        Message(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, 3, third[16:]),
    ]


def test_iter_messages_drops_truncated_tail() -> None:
    whole = message(NLMSG_DONE, struct.pack("=i", 0), 0, 1)
    later = fdb_message(RTM_NEWNEIGH, 2, 5, ZERO_MAC, V2, PROTO)
    for cut in range(len(later)):
        assert list(iter_messages(whole + later[:cut])) == [Message(NLMSG_DONE, 0, 1, b"\0" * 4)]
    assert list(iter_messages(b"")) == []


def test_iter_messages_stops_at_bogus_length() -> None:
    whole = message(NLMSG_DONE, struct.pack("=i", 0), 0, 1)
    too_short = nlmsghdr(8, NLMSG_DONE, 0, 2) + b"\0" * 8
    too_long = nlmsghdr(4096, NLMSG_DONE, 0, 3) + b"\0" * 8
    assert len(list(iter_messages(whole + too_short + whole))) == 1
    assert len(list(iter_messages(whole + too_long))) == 1


def test_iter_attrs_truncated_and_zero_length() -> None:
    data = nla(NDA_DST, V2.packed) + struct.pack("=HH", 12, NDA_LLADDR) + b"\1\2"
    assert list(iter_attrs(data)) == [(NDA_DST, V2.packed)]
    assert list(iter_attrs(struct.pack("=HH", 0, 1) + nla(2, b"x"))) == []
    assert list(iter_attrs(nla(1, b"x"), offset=100)) == []


# --------------------------------------------------------------------------- robustness

kinds = st.sampled_from((NLMSG_ERROR, NLMSG_DONE, RTM_NEWNEIGH, RTM_NEWMDB, RTM_DELMDB)) | st.integers(
    0, 0xFFFF
)


@given(st.binary(max_size=512))
def test_random_buffers_never_raise(data: bytes) -> None:
    for msg in iter_messages(data):
        parse_ack(msg)
        parse_fdb(msg)
        parse_mdb(msg)
    list(iter_attrs(data))


@given(kinds, st.integers(0, 0xFFFF), st.binary(max_size=512))
def test_random_payloads_never_raise(kind: int, flags: int, payload: bytes) -> None:
    msg = Message(kind, flags, 1, payload)
    ack = parse_ack(msg)
    assert ack is None or ack.seq == 1
    parse_fdb(msg)
    parse_mdb(msg)


@st.composite
def attr_soup(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Well-framed but arbitrary attribute trees, to get past the framing checks."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 12) | st.just(NLA_F_NESTED | 1))
        if depth < 3 and draw(st.booleans()):
            payload = draw(attr_soup(depth + 1))
        else:
            payload = draw(st.binary(max_size=40))
        parts.append(nla(kind, payload))
    return b"".join(parts)


@given(kinds, st.integers(0, 0xFFFF), st.binary(min_size=0, max_size=36), attr_soup())
def test_structured_garbage_never_raises(kind: int, flags: int, head: bytes, attrs: bytes) -> None:
    msg = Message(kind, flags, 1, head + attrs)
    parse_ack(msg)
    parse_fdb(msg)
    for record in parse_mdb(msg):
        assert record.group.version in (4, 6)
