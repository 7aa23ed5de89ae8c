"""Unit and property tests for ipmr.structs: the IPMR/IP6MR setsockopt structs and upcalls.

Expected bytes are written out here field by field from include/uapi/linux/mroute.h,
mroute6.h and in6.h (host byte order for integers, as the kernel reads them), not with the
module's own ``struct.Struct`` objects, so a wrong layout in the codec shows up as a diff.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipmr import structs
from ipmr.structs import (
    IGMPMSG_NOCACHE,
    IGMPMSG_WRONGVIF,
    IGMPMSG_WRVIFWHOLE,
    MRT6MSG_NOCACHE,
    MRT6MSG_WRONGMIF,
    Upcall,
    is_upcall4,
    mf6cctl,
    mfcctl,
    mif6ctl,
    mif6ctl_delete,
    parse_igmpmsg,
    parse_mrt6msg,
    vifctl,
    vifctl_delete,
)

ORDER = sys.byteorder


def u8(value: int) -> bytes:
    return value.to_bytes(1, ORDER)


def u16(value: int) -> bytes:
    return value.to_bytes(2, ORDER)


def u32(value: int) -> bytes:
    return value.to_bytes(4, ORDER)


def i32(value: int) -> bytes:
    return value.to_bytes(4, ORDER, signed=True)


def sockaddr_in6(addr: str) -> bytes:
    # family AF_INET6 = 10 (host order), port 0, flowinfo 0, address, scope_id 0
    return u16(10) + b"\x00\x00" + b"\x00" * 4 + IPv6Address(addr).packed + b"\x00" * 4


def test_constants_match_mroute_h() -> None:
    expected = {
        "MRT_INIT": 200,
        "MRT_DONE": 201,
        "MRT_ADD_VIF": 202,
        "MRT_DEL_VIF": 203,
        "MRT_ADD_MFC": 204,
        "MRT_DEL_MFC": 205,
        "MRT_VERSION": 206,
        "MRT_ASSERT": 207,
        "MRT_PIM": 208,
        "MRT_TABLE": 209,
        "MRT_FLUSH": 212,
        "MRT_FLUSH_MFC": 1,
        "MRT_FLUSH_MFC_STATIC": 2,
        "MRT_FLUSH_VIFS": 4,
        "MRT_FLUSH_VIFS_STATIC": 8,
        "MAXVIFS": 32,
        "VIFF_TUNNEL": 1,
        "VIFF_REGISTER": 4,
        "VIFF_USE_IFINDEX": 8,
        "IGMPMSG_NOCACHE": 1,
        "IGMPMSG_WRONGVIF": 2,
        "IGMPMSG_WHOLEPKT": 3,
        "IGMPMSG_WRVIFWHOLE": 4,
        "RT_TABLE_DEFAULT": 253,
    }
    for name, value in expected.items():
        assert getattr(structs, name) == value, name


def test_constants_match_mroute6_h() -> None:
    expected = {
        "MRT6_INIT": 200,
        "MRT6_DONE": 201,
        "MRT6_ADD_MIF": 202,
        "MRT6_DEL_MIF": 203,
        "MRT6_ADD_MFC": 204,
        "MRT6_DEL_MFC": 205,
        "MRT6_VERSION": 206,
        "MRT6_ASSERT": 207,
        "MRT6_PIM": 208,
        "MRT6_TABLE": 209,
        "MRT6_FLUSH": 212,
        "MRT6_FLUSH_MFC": 1,
        "MRT6_FLUSH_MIFS": 4,
        "MAXMIFS": 32,
        "MRT6MSG_NOCACHE": 1,
        "MRT6MSG_WRONGMIF": 2,
        "MRT6MSG_WHOLEPKT": 3,
        "MRT6MSG_WRMIFWHOLE": 4,
    }
    for name, value in expected.items():
        assert getattr(structs, name) == value, name


def test_all_names_exist() -> None:
    for name in structs.__all__:
        assert hasattr(structs, name), name


# --------------------------------------------------------------------------- vifctl


def test_vifctl_bytes() -> None:
    expected = u16(3) + u8(8) + u8(1) + u32(0) + i32(7) + b"\x00" * 4
    assert vifctl(3, 7) == expected
    assert len(expected) == 16


def test_vifctl_threshold_and_rate_limit() -> None:
    expected = u16(31) + u8(8) + u8(64) + u32(1000) + i32(0x12345678) + b"\x00" * 4
    assert vifctl(31, 0x12345678, threshold=64, rate_limit=1000) == expected


def test_vifctl_delete_is_vifi_and_zeros() -> None:
    assert vifctl_delete(5) == u16(5) + b"\x00" * 14


@pytest.mark.parametrize(
    ("vifi", "ifindex", "threshold", "rate"),
    [(32, 1, 1, 0), (-1, 1, 1, 0), (0, -1, 1, 0), (0, 2**31, 1, 0), (0, 1, 256, 0), (0, 1, 1, 2**32)],
)
def test_vifctl_impossible_arguments(vifi: int, ifindex: int, threshold: int, rate: int) -> None:
    with pytest.raises(ValueError):
        vifctl(vifi, ifindex, threshold, rate)


def test_vifctl_delete_out_of_range() -> None:
    with pytest.raises(ValueError):
        vifctl_delete(32)


# --------------------------------------------------------------------------- mfcctl


def test_mfcctl_bytes() -> None:
    ttls = bytearray(32)
    ttls[1] = ttls[4] = ttls[31] = 1
    expected = (
        IPv4Address("10.0.0.1").packed
        + IPv4Address("239.1.2.3").packed
        + u16(2)
        + bytes(ttls)
        + b"\x00\x00"  # pad to the u32 counters
        + u32(0) * 3
        + i32(0)
    )
    got = mfcctl(IPv4Address("10.0.0.1"), IPv4Address("239.1.2.3"), 2, [4, 1, 31, 4])
    assert got == expected
    assert len(got) == 60


def test_mfcctl_star_g_no_oifs() -> None:
    got = mfcctl(IPv4Address("0.0.0.0"), IPv4Address("239.9.9.9"), 0, ())
    assert got == b"\x00" * 4 + bytes([239, 9, 9, 9]) + u16(0) + b"\x00" * 50


def test_mfcctl_accepts_any_iterable() -> None:
    a = mfcctl(IPv4Address("1.2.3.4"), IPv4Address("239.0.0.1"), 0, iter([1, 2]))
    b = mfcctl(IPv4Address("1.2.3.4"), IPv4Address("239.0.0.1"), 0, {2, 1})
    assert a == b


@pytest.mark.parametrize(("parent", "oifs"), [(32, [1]), (-1, [1]), (0, [32]), (0, [-1]), (0, [0, 40])])
def test_mfcctl_vif_out_of_range(parent: int, oifs: list[int]) -> None:
    with pytest.raises(ValueError):
        mfcctl(IPv4Address("1.2.3.4"), IPv4Address("239.0.0.1"), parent, oifs)


def test_mfcctl_wrong_family() -> None:
    with pytest.raises(ValueError):
        mfcctl(IPv6Address("::1"), IPv4Address("239.0.0.1"), 0, [])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mif6ctl


def test_mif6ctl_bytes() -> None:
    expected = u16(4) + u8(0) + u8(1) + u16(9) + b"\x00\x00" + u32(0)
    assert mif6ctl(4, 9) == expected
    assert len(expected) == 12


def test_mif6ctl_threshold_rate() -> None:
    expected = u16(31) + u8(0) + u8(255) + u16(65535) + b"\x00\x00" + u32(77)
    assert mif6ctl(31, 65535, threshold=255, rate_limit=77) == expected


def test_mif6ctl_ifindex_must_fit_u16() -> None:
    with pytest.raises(ValueError):
        mif6ctl(0, 65536)


def test_mif6ctl_index_out_of_range() -> None:
    with pytest.raises(ValueError):
        mif6ctl(32, 1)
    with pytest.raises(ValueError):
        mif6ctl_delete(32)


def test_mif6ctl_delete_starts_with_mifi() -> None:
    assert mif6ctl_delete(7) == u16(7) + b"\x00" * 10


# --------------------------------------------------------------------------- mf6cctl


def test_mf6cctl_bytes() -> None:
    words = [0] * 8
    words[0] = (1 << 0) | (1 << 5) | (1 << 31)
    expected = (
        sockaddr_in6("2001:db8::1")
        + sockaddr_in6("ff3e::1234")
        + u16(3)
        + b"\x00\x00"  # pad before the u32 if_set
        + b"".join(u32(w) for w in words)
    )
    got = mf6cctl(IPv6Address("2001:db8::1"), IPv6Address("ff3e::1234"), 3, [5, 0, 31])
    assert got == expected
    assert len(got) == 92


def test_mf6cctl_star_g() -> None:
    got = mf6cctl(IPv6Address("::"), IPv6Address("ff05::1"), 1, [2])
    assert got[:28] == sockaddr_in6("::")
    assert got[28:56] == sockaddr_in6("ff05::1")
    assert got[56:58] == u16(1)
    assert got[60:64] == u32(4)
    assert got[64:] == b"\x00" * 28


@pytest.mark.parametrize(("parent", "oifs"), [(32, []), (0, [32]), (0, [-1])])
def test_mf6cctl_out_of_range(parent: int, oifs: list[int]) -> None:
    with pytest.raises(ValueError):
        mf6cctl(IPv6Address("::"), IPv6Address("ff05::1"), parent, oifs)


def test_mf6cctl_wrong_family() -> None:
    with pytest.raises(ValueError):
        mf6cctl(IPv4Address("1.2.3.4"), IPv6Address("ff05::1"), 0, [])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- igmpmsg


def igmpmsg(msgtype: int, vif: int, src: str, dst: str, mbz: int = 0, vif_hi: int = 0) -> bytes:
    return (
        b"\x00" * 8 + bytes([msgtype, mbz, vif, vif_hi]) + IPv4Address(src).packed + IPv4Address(dst).packed
    )


def test_parse_igmpmsg_nocache() -> None:
    data = igmpmsg(IGMPMSG_NOCACHE, 3, "10.1.1.1", "239.1.1.1")
    assert is_upcall4(data)
    assert parse_igmpmsg(data) == Upcall(
        IGMPMSG_NOCACHE, 3, IPv4Address("10.1.1.1"), IPv4Address("239.1.1.1")
    )


def test_parse_igmpmsg_vif_hi_and_trailing_packet() -> None:
    data = igmpmsg(IGMPMSG_WRVIFWHOLE, 2, "10.1.1.1", "239.1.1.1", vif_hi=1) + b"\x45" + b"\x00" * 30
    upcall = parse_igmpmsg(data)
    assert upcall is not None
    assert upcall.vif == 258
    assert upcall.kind == IGMPMSG_WRVIFWHOLE


def test_parse_igmpmsg_rejects() -> None:
    good = igmpmsg(IGMPMSG_WRONGVIF, 1, "10.1.1.1", "239.1.1.1")
    assert parse_igmpmsg(good) is not None
    for length in range(20):
        assert parse_igmpmsg(good[:length]) is None
        assert not is_upcall4(good[:length])
    assert parse_igmpmsg(igmpmsg(1, 1, "10.1.1.1", "239.1.1.1", mbz=2)) is None
    assert parse_igmpmsg(igmpmsg(0, 1, "10.1.1.1", "239.1.1.1")) is None


def test_is_upcall4_tells_a_real_igmp_packet_apart() -> None:
    # IPv4 header of an IGMPv2 report: protocol 2 at offset 9
    header = bytes([0x46, 0, 0, 32, 0, 0, 0, 0, 1, 2, 0, 0]) + bytes([10, 0, 0, 2, 239, 1, 1, 1])
    packet = header + b"\x94\x04\x00\x00" + bytes([0x16, 0, 0, 0, 239, 1, 1, 1])
    assert not is_upcall4(packet)
    assert parse_igmpmsg(packet) is None


# --------------------------------------------------------------------------- mrt6msg


def mrt6msg(msgtype: int, mif: int, src: str, dst: str, mbz: int = 0) -> bytes:
    return bytes([mbz, msgtype]) + u16(mif) + b"\x00" * 4 + IPv6Address(src).packed + IPv6Address(dst).packed


def test_parse_mrt6msg() -> None:
    data = mrt6msg(MRT6MSG_NOCACHE, 6, "2001:db8::5", "ff3e::1")
    assert len(data) == 40
    assert parse_mrt6msg(data) == Upcall(
        MRT6MSG_NOCACHE, 6, IPv6Address("2001:db8::5"), IPv6Address("ff3e::1")
    )
    assert parse_mrt6msg(mrt6msg(MRT6MSG_WRONGMIF, 300, "::1", "ff02::1") + b"xx") == Upcall(
        MRT6MSG_WRONGMIF, 300, IPv6Address("::1"), IPv6Address("ff02::1")
    )


def test_parse_mrt6msg_rejects() -> None:
    good = mrt6msg(MRT6MSG_NOCACHE, 1, "2001:db8::5", "ff3e::1")
    for length in range(40):
        assert parse_mrt6msg(good[:length]) is None
    # a real ICMPv6 message (MLD report, type 131) has a non-zero first byte
    assert parse_mrt6msg(mrt6msg(MRT6MSG_NOCACHE, 1, "::", "ff3e::1", mbz=131)) is None
    assert parse_mrt6msg(mrt6msg(0, 1, "::", "ff3e::1")) is None


# --------------------------------------------------------------------------- properties


@given(st.binary(max_size=64))
def test_upcall_parsers_never_raise(data: bytes) -> None:
    up4 = parse_igmpmsg(data)
    up6 = parse_mrt6msg(data)
    assert isinstance(is_upcall4(data), bool)
    if up4 is not None:
        assert is_upcall4(data)
        assert isinstance(up4.source, IPv4Address)
    if up6 is not None:
        assert isinstance(up6.group, IPv6Address)


@given(
    st.integers(0, 31),
    st.integers(0, 31),
    st.frozensets(st.integers(0, 31)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_mfcctl_ttls_match_oifs(
    parent: int, mifparent: int, oifs: frozenset[int], origin: int, group: int
) -> None:
    raw = mfcctl(IPv4Address(origin), IPv4Address(group), parent, oifs)
    assert len(raw) == 60
    assert {i for i, ttl in enumerate(raw[10:42]) if ttl} == set(oifs)
    raw6 = mf6cctl(IPv6Address(origin), IPv6Address(group << 96), mifparent, oifs)
    assert len(raw6) == 92
    bits = int.from_bytes(raw6[60:64], ORDER)
    assert {i for i in range(32) if bits >> i & 1} == set(oifs)
    assert raw6[64:] == b"\x00" * 28
