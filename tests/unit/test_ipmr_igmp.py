"""Unit and property tests for ipmr.igmp: IGMP v1/v2/v3 and MLD v1/v2 parsing and queries.

Packets are built here by hand with ``struct`` from the RFC layouts (RFC 2236, 3376, 2710,
3810) and an independent checksum, not with the module's helpers, so a layout mistake in the
codec cannot hide behind the same mistake in the test.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipmr.igmp import (
    GroupChange,
    ParseError,
    Query,
    Report,
    checksum,
    igmp_query,
    is_link_local_group,
    mld_query,
    parse_igmp,
    parse_mld,
)

ROUTER_ALERT = b"\x94\x04\x00\x00"
G1 = IPv4Address("239.1.1.1")
G2 = IPv4Address("232.2.2.2")
S1 = IPv4Address("10.0.0.1")
S2 = IPv4Address("10.0.0.2")
H = IPv4Address("192.0.2.7")
G6 = IPv6Address("ff3e::1")
G6B = IPv6Address("ff05::2")
S6 = IPv6Address("2001:db8::1")
S6B = IPv6Address("2001:db8::2")
H6 = IPv6Address("fe80::7")


def cksum(data: bytes) -> int:
    """Straightforward RFC 1071 one's complement sum, written independently of the module."""
    if len(data) & 1:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def with_cksum(message: bytes) -> bytes:
    message = message[:2] + b"\0\0" + message[4:]
    return message[:2] + struct.pack("!H", cksum(message)) + message[4:]


def ip4(
    payload: bytes,
    src: IPv4Address = H,
    dst: IPv4Address = G1,
    options: bytes = ROUTER_ALERT,
    proto: int = 2,
    total: int | None = None,
    version: int = 4,
) -> bytes:
    ihl = (20 + len(options)) // 4
    length = 20 + len(options) + len(payload) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s", version << 4 | ihl, 0xC0, length, 0, 0, 1, proto, 0, src.packed, dst.packed
    )
    header += options
    header = header[:10] + struct.pack("!H", cksum(header)) + header[12:]
    return header + payload


def igmp8(kind: int, code: int, group: IPv4Address) -> bytes:
    return with_cksum(struct.pack("!BBH4s", kind, code, 0, group.packed))


def igmpv3_query(code: int, group: IPv4Address, sources: list[IPv4Address]) -> bytes:
    body = struct.pack("!BBH4sBBH", 0x11, code, 0, group.packed, 0x02, 125, len(sources))
    return with_cksum(body + b"".join(s.packed for s in sources))


def record4(kind: int, group: IPv4Address, sources: list[IPv4Address], aux: bytes = b"") -> bytes:
    assert len(aux) % 4 == 0
    return struct.pack("!BBH4s", kind, len(aux) // 4, len(sources), group.packed) + (
        b"".join(s.packed for s in sources) + aux
    )


def igmpv3_report(*records: bytes) -> bytes:
    return with_cksum(struct.pack("!BBHHH", 0x22, 0, 0, 0, len(records)) + b"".join(records))


def join(group: IPv4Address | IPv6Address, source: IPv4Address | IPv6Address | None = None) -> GroupChange:
    return GroupChange(True, source, group)


def leave(group: IPv4Address | IPv6Address, source: IPv4Address | IPv6Address | None = None) -> GroupChange:
    return GroupChange(False, source, group)


# --------------------------------------------------------------------------- checksum


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert checksum(bytes.fromhex("0001f203f4f5f6f7220d")) == 0


def test_checksum_odd_length_pads_with_zero() -> None:
    assert checksum(b"\x12\x34\x56") == cksum(b"\x12\x34\x56\x00")


# --------------------------------------------------------------------------- IGMP reports


def test_v1_report() -> None:
    assert parse_igmp(ip4(igmp8(0x12, 0, G1), options=b"")) == Report(H, 1, (join(G1),))


def test_v2_report_with_router_alert() -> None:
    assert parse_igmp(ip4(igmp8(0x16, 0, G1))) == Report(H, 2, (join(G1),))


def test_v2_report_without_options() -> None:
    assert parse_igmp(ip4(igmp8(0x16, 0, G2), options=b"")) == Report(H, 2, (join(G2),))


def test_v2_leave() -> None:
    packet = ip4(igmp8(0x17, 0, G1), dst=IPv4Address("224.0.0.2"))
    assert parse_igmp(packet) == Report(H, 2, (leave(G1),))


def test_longer_options_area() -> None:
    options = b"\x01\x01\x01" + b"\x94\x04\x00\x00" + b"\x00"  # NOP NOP NOP, RA, EOL
    assert parse_igmp(ip4(igmp8(0x16, 0, G1), options=options)) == Report(H, 2, (join(G1),))


@pytest.mark.parametrize("kind", [0x12, 0x16, 0x17])
def test_v1_v2_non_multicast_group(kind: int) -> None:
    result = parse_igmp(ip4(igmp8(kind, 0, IPv4Address("10.9.9.9"))))
    assert isinstance(result, ParseError)
    assert "non-multicast" in result.reason


def test_v2_report_extra_bytes_ignored() -> None:
    message = with_cksum(struct.pack("!BBH4s", 0x16, 0, 0, G1.packed) + b"\0\0\0\0")
    assert parse_igmp(ip4(message)) == Report(H, 2, (join(G1),))


# --------------------------------------------------------------------------- IGMPv3 reports


def test_v3_is_ex_and_to_ex_join_star_g() -> None:
    packet = ip4(igmpv3_report(record4(2, G1, []), record4(4, G2, [S1])), dst=IPv4Address("224.0.0.22"))
    assert parse_igmp(packet) == Report(H, 3, (join(G1), join(G2)))


def test_v3_is_in_and_allow_join_sources() -> None:
    packet = ip4(igmpv3_report(record4(1, G1, [S1, S2]), record4(5, G2, [S2])))
    assert parse_igmp(packet) == Report(H, 3, (join(G1, S1), join(G1, S2), join(G2, S2)))


def test_v3_to_in_with_sources_joins_then_leaves_star_g() -> None:
    packet = ip4(igmpv3_report(record4(3, G1, [S1])))
    assert parse_igmp(packet) == Report(H, 3, (join(G1, S1), leave(G1)))


def test_v3_to_in_and_is_in_empty_leave_star_g() -> None:
    packet = ip4(igmpv3_report(record4(3, G1, []), record4(1, G2, [])))
    assert parse_igmp(packet) == Report(H, 3, (leave(G1), leave(G2)))


def test_v3_allow_empty_is_nothing() -> None:
    assert parse_igmp(ip4(igmpv3_report(record4(5, G1, [])))) == Report(H, 3, ())


def test_v3_block_leaves_sources() -> None:
    packet = ip4(igmpv3_report(record4(6, G1, [S1, S2])))
    assert parse_igmp(packet) == Report(H, 3, (leave(G1, S1), leave(G1, S2)))


def test_v3_aux_data_is_skipped() -> None:
    packet = ip4(igmpv3_report(record4(1, G1, [S1], aux=b"AUXDATA!"), record4(6, G2, [S2], aux=b"zzzz")))
    assert parse_igmp(packet) == Report(H, 3, (join(G1, S1), leave(G2, S2)))


def test_v3_skips_non_multicast_unknown_records_and_bad_sources() -> None:
    packet = ip4(
        igmpv3_report(
            record4(2, IPv4Address("10.1.1.1"), []),  # unicast group
            record4(9, G1, [S1]),  # unknown record type
            record4(1, G2, [IPv4Address("0.0.0.0"), IPv4Address("239.0.0.9"), S1]),
        )
    )
    assert parse_igmp(packet) == Report(H, 3, (join(G2, S1),))


def test_v3_report_from_unspecified_sender() -> None:
    packet = ip4(igmpv3_report(record4(4, G1, [])), src=IPv4Address("0.0.0.0"))
    assert parse_igmp(packet) == Report(None, 3, (join(G1),))


def test_v3_report_zero_records() -> None:
    assert parse_igmp(ip4(igmpv3_report())) == Report(H, 3, ())


def test_v3_record_count_larger_than_records() -> None:
    message = with_cksum(struct.pack("!BBHHH", 0x22, 0, 0, 0, 2) + record4(2, G1, []))
    result = parse_igmp(ip4(message))
    assert isinstance(result, ParseError)
    assert "truncated" in result.reason


def test_v3_record_sources_past_end() -> None:
    record = struct.pack("!BBH4s", 1, 0, 3, G1.packed) + S1.packed  # 3 sources claimed, 1 there
    result = parse_igmp(ip4(with_cksum(struct.pack("!BBHHH", 0x22, 0, 0, 0, 1) + record)))
    assert isinstance(result, ParseError)


def test_v3_record_aux_past_end() -> None:
    record = struct.pack("!BBH4s", 1, 5, 1, G1.packed) + S1.packed + b"\0" * 8  # 5 words claimed
    result = parse_igmp(ip4(with_cksum(struct.pack("!BBHHH", 0x22, 0, 0, 0, 1) + record)))
    assert isinstance(result, ParseError)


# --------------------------------------------------------------------------- IGMP queries


def test_v1_query() -> None:
    packet = ip4(igmp8(0x11, 0, IPv4Address(0)), dst=IPv4Address("224.0.0.1"), options=b"")
    assert parse_igmp(packet) == Query(H, 1, None, 10.0)


def test_v2_general_and_group_queries() -> None:
    assert parse_igmp(ip4(igmp8(0x11, 100, IPv4Address(0)))) == Query(H, 2, None, 10.0)
    assert parse_igmp(ip4(igmp8(0x11, 10, G1))) == Query(H, 2, G1, 1.0)


def test_v3_query_linear_and_floating_codes() -> None:
    assert parse_igmp(ip4(igmpv3_query(100, IPv4Address(0), []))) == Query(H, 3, None, 10.0)
    assert parse_igmp(ip4(igmpv3_query(127, G1, []))) == Query(H, 3, G1, 12.7)
    # 0x80: exp 0, mant 0 -> 0x10 << 3 = 128 tenths
    assert parse_igmp(ip4(igmpv3_query(0x80, G1, []))) == Query(H, 3, G1, 12.8)
    # 0xAF: exp 2, mant 15 -> 31 << 5 = 992 tenths
    assert parse_igmp(ip4(igmpv3_query(0xAF, G1, []))) == Query(H, 3, G1, 99.2)
    # 0xFF: exp 7, mant 15 -> 31 << 10 = 31744 tenths
    assert parse_igmp(ip4(igmpv3_query(0xFF, G1, []))) == Query(H, 3, G1, 3174.4)


def test_v3_group_and_source_query() -> None:
    assert parse_igmp(ip4(igmpv3_query(50, G1, [S1, S2]))) == Query(H, 3, G1, 5.0)


def test_v3_query_sources_truncated() -> None:
    message = with_cksum(struct.pack("!BBH4sBBH", 0x11, 50, 0, G1.packed, 2, 125, 2) + S1.packed)
    result = parse_igmp(ip4(message))
    assert isinstance(result, ParseError)


@pytest.mark.parametrize("extra", [1, 2, 3])
def test_query_of_9_to_11_bytes_is_rejected(extra: int) -> None:
    message = with_cksum(struct.pack("!BBH4s", 0x11, 100, 0, G1.packed) + b"\0" * extra)
    assert isinstance(parse_igmp(ip4(message)), ParseError)


def test_query_for_unicast_group() -> None:
    assert isinstance(parse_igmp(ip4(igmp8(0x11, 100, IPv4Address("10.0.0.9")))), ParseError)


# --------------------------------------------------------------------------- IGMP errors


def test_bad_igmp_checksum() -> None:
    message = bytearray(igmp8(0x16, 0, G1))
    message[3] ^= 0xFF
    assert parse_igmp(ip4(bytes(message))) == ParseError("bad IGMP checksum")


def test_bad_checksum_in_v3_report_body() -> None:
    message = bytearray(igmpv3_report(record4(1, G1, [S1])))
    message[-1] ^= 0x01
    assert parse_igmp(ip4(bytes(message))) == ParseError("bad IGMP checksum")


def test_not_igmp_protocol() -> None:
    result = parse_igmp(ip4(igmp8(0x16, 0, G1), proto=17))
    assert isinstance(result, ParseError)
    assert "protocol 17" in result.reason


def test_not_ipv4() -> None:
    assert isinstance(parse_igmp(ip4(igmp8(0x16, 0, G1), version=6)), ParseError)


def test_ihl_below_five() -> None:
    packet = bytearray(ip4(igmp8(0x16, 0, G1), options=b""))
    packet[0] = 0x44
    assert isinstance(parse_igmp(bytes(packet)), ParseError)


def test_ihl_past_the_end() -> None:
    packet = bytearray(ip4(igmp8(0x16, 0, G1), options=b""))
    packet[0] = 0x4F  # 60-byte header in a 28-byte packet
    assert isinstance(parse_igmp(bytes(packet)), ParseError)


def test_total_length_longer_than_data() -> None:
    assert isinstance(parse_igmp(ip4(igmp8(0x16, 0, G1), total=100)), ParseError)


def test_total_length_shorter_than_header() -> None:
    assert isinstance(parse_igmp(ip4(igmp8(0x16, 0, G1), total=10)), ParseError)


def test_bytes_after_total_length_are_ignored() -> None:
    packet = ip4(igmp8(0x16, 0, G1), total=32) + b"\xff" * 6  # link-layer padding
    assert parse_igmp(packet) == Report(H, 2, (join(G1),))


def test_unknown_igmp_type() -> None:
    result = parse_igmp(ip4(igmp8(0x13, 0, G1)))  # DVMRP
    assert isinstance(result, ParseError)
    assert "0x13" in result.reason


def test_upcall_is_not_igmp() -> None:
    upcall = b"\0" * 8 + bytes([1, 0, 3, 0]) + S1.packed + G1.packed
    assert isinstance(parse_igmp(upcall), ParseError)


SAMPLE_IGMP = [
    igmp8(0x16, 0, G1),
    igmp8(0x11, 100, IPv4Address(0)),
    igmpv3_query(0xAF, G1, [S1, S2]),
    igmpv3_report(record4(1, G1, [S1, S2], aux=b"abcd"), record4(3, G2, [S1]), record4(4, G1, [])),
]


@pytest.mark.parametrize("message", SAMPLE_IGMP, ids=["v2-report", "v2-query", "v3-query", "v3-report"])
def test_truncation_at_every_length(message: bytes) -> None:
    packet = ip4(message)
    for length in range(len(packet)):
        assert isinstance(parse_igmp(packet[:length]), ParseError)
    # the IGMP message cut short inside a consistent IP packet with a fixed checksum
    for length in range(len(message)):
        cut = with_cksum(message[:length]) if length >= 4 else message[:length]
        result = parse_igmp(ip4(cut))
        assert isinstance(result, (Report, Query, ParseError))
        if message[0] == 0x22 and length > 0:
            assert isinstance(result, ParseError)


# --------------------------------------------------------------------------- MLD


def mld24(kind: int, delay: int, group: IPv6Address) -> bytes:
    return struct.pack("!BBHHH16s", kind, 0, 0, delay, 0, group.packed)


def mldv2_query(code: int, group: IPv6Address, sources: list[IPv6Address]) -> bytes:
    head = struct.pack("!BBHHH16sBBH", 130, 0, 0, code, 0, group.packed, 0x02, 125, len(sources))
    return head + b"".join(s.packed for s in sources)


def record6(kind: int, group: IPv6Address, sources: list[IPv6Address], aux: bytes = b"") -> bytes:
    return struct.pack("!BBH16s", kind, len(aux) // 4, len(sources), group.packed) + (
        b"".join(s.packed for s in sources) + aux
    )


def mldv2_report(*records: bytes) -> bytes:
    return struct.pack("!BBHHH", 143, 0, 0, 0, len(records)) + b"".join(records)


def test_mld_v1_report_and_done() -> None:
    assert parse_mld(mld24(131, 0, G6), H6) == Report(H6, 1, (join(G6),))
    assert parse_mld(mld24(132, 0, G6), H6) == Report(H6, 1, (leave(G6),))


def test_mld_sender_optional_and_unspecified() -> None:
    assert parse_mld(mld24(131, 0, G6)) == Report(None, 1, (join(G6),))
    assert parse_mld(mldv2_report(record6(4, G6, [])), IPv6Address("::")) == Report(None, 2, (join(G6),))


def test_mld_v1_non_multicast_group() -> None:
    assert isinstance(parse_mld(mld24(131, 0, S6), H6), ParseError)


def test_mld_v1_query() -> None:
    assert parse_mld(mld24(130, 10000, IPv6Address("::")), H6) == Query(H6, 1, None, 10.0)
    assert parse_mld(mld24(130, 1000, G6), H6) == Query(H6, 1, G6, 1.0)


def test_mld_v2_query_codes() -> None:
    assert parse_mld(mldv2_query(10000, IPv6Address("::"), []), H6) == Query(H6, 2, None, 10.0)
    assert parse_mld(mldv2_query(0x7FFF, G6, []), H6) == Query(H6, 2, G6, 32.767)
    # 0x8000: exp 0, mant 0 -> 0x1000 << 3 = 32768 ms
    assert parse_mld(mldv2_query(0x8000, G6, []), H6) == Query(H6, 2, G6, 32.768)
    # 0x8D4C: exp 0, mant 0xD4C -> 0x1D4C << 3 = 60000 ms
    assert parse_mld(mldv2_query(0x8D4C, G6, []), H6) == Query(H6, 2, G6, 60.0)
    # 0xFFFF: exp 7, mant 0xFFF -> 0x1FFF << 10 ms
    assert parse_mld(mldv2_query(0xFFFF, G6, []), H6) == Query(H6, 2, G6, 8387.584)


def test_mld_v2_query_with_sources() -> None:
    assert parse_mld(mldv2_query(1000, G6, [S6, S6B]), H6) == Query(H6, 2, G6, 1.0)
    truncated = mldv2_query(1000, G6, [S6, S6B])[:-1]
    assert isinstance(parse_mld(truncated, H6), ParseError)


@pytest.mark.parametrize("size", [4, 8, 23, 25, 26, 27])
def test_mld_query_bad_lengths(size: int) -> None:
    message = mldv2_query(1000, G6, [])[:size]
    assert isinstance(parse_mld(message, H6), ParseError)


def test_mld_query_for_unicast_group() -> None:
    assert isinstance(parse_mld(mld24(130, 1000, S6), H6), ParseError)


def test_mld_v2_report_record_types() -> None:
    message = mldv2_report(
        record6(2, G6, [S6]),  # IS_EX
        record6(4, G6B, []),  # TO_EX
        record6(1, G6, [S6]),  # IS_IN
        record6(5, G6B, [S6, S6B]),  # ALLOW
        record6(3, G6, [S6B]),  # TO_IN
        record6(3, G6B, []),  # TO_IN {}
        record6(1, G6, []),  # IS_IN {}
        record6(6, G6B, [S6]),  # BLOCK
    )
    assert parse_mld(message, H6) == Report(
        H6,
        2,
        (
            join(G6),
            join(G6B),
            join(G6, S6),
            join(G6B, S6),
            join(G6B, S6B),
            join(G6, S6B),
            leave(G6),
            leave(G6B),
            leave(G6),
            leave(G6B, S6),
        ),
    )


def test_mld_v2_report_skips_and_aux() -> None:
    message = mldv2_report(
        record6(2, S6, []),  # unicast group
        record6(7, G6, [S6]),  # unknown type
        record6(1, G6, [IPv6Address("::"), IPv6Address("ff02::1"), S6], aux=b"12345678"),
        record6(6, G6B, [S6B]),
    )
    assert parse_mld(message, H6) == Report(H6, 2, (join(G6, S6), leave(G6B, S6B)))


def test_mld_v2_report_truncated_records() -> None:
    message = mldv2_report(record6(1, G6, [S6]), record6(2, G6B, [], aux=b"abcd"))
    for length in range(len(message)):
        assert isinstance(parse_mld(message[:length], H6), ParseError)
    assert isinstance(parse_mld(message, H6), Report)


@pytest.mark.parametrize(
    "message",
    [mld24(131, 0, G6), mld24(132, 0, G6), mldv2_query(100, G6, [S6])],
    ids=["report", "done", "v2-query"],
)
def test_mld_truncation_at_every_length(message: bytes) -> None:
    for length in range(len(message)):
        result = parse_mld(message[:length], H6)
        if message[0] == 130 and length in (24, 28):
            # RFC 3810 §8.1: a 24-byte query is MLDv1; 28 bytes is v2 (here with a lost source)
            assert isinstance(result, Query if length == 24 else ParseError)
        else:
            assert isinstance(result, ParseError)


def test_mld_not_mld() -> None:
    echo = struct.pack("!BBHHH", 128, 0, 0, 1, 1) + b"ping"
    result = parse_mld(echo, H6)
    assert isinstance(result, ParseError)
    assert "128" in result.reason
    upcall = bytes([0, 1]) + b"\0" * 38
    assert isinstance(parse_mld(upcall), ParseError)


# --------------------------------------------------------------------------- query builders


def test_igmp_v2_query_bytes() -> None:
    body = bytes([0x11, 100]) + b"\0\0" + b"\0\0\0\0"
    expected = body[:2] + struct.pack("!H", cksum(body)) + body[4:]
    assert igmp_query(version=2) == expected
    assert expected == bytes.fromhex("11 64 ee 9b 00 00 00 00")
    group_body = bytes([0x11, 10, 0, 0, 239, 1, 1, 1])
    assert igmp_query(G1, version=2, max_response=1.0) == with_cksum(group_body)


def test_igmp_v3_query_bytes() -> None:
    body = bytes([0x11, 100, 0, 0, 0, 0, 0, 0, 0x02, 125, 0, 0])
    assert igmp_query() == with_cksum(body)
    assert len(igmp_query()) == 12
    group_body = bytes([0x11, 0xAF, 0, 0, 239, 1, 1, 1, 0x02, 125, 0, 0])
    assert igmp_query(G1, max_response=100.0) == with_cksum(group_body)  # 99.2 s, rounded down


def test_igmp_v1_query_bytes() -> None:
    assert igmp_query(version=1) == with_cksum(bytes([0x11, 0, 0, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    ("group", "version", "max_response"),
    [
        (None, 4, 10.0),
        (None, 0, 10.0),
        (IPv4Address("10.0.0.1"), 3, 10.0),
        (G1, 1, 10.0),
        (None, 2, 0.0),
        (None, 2, 25.6),
        (None, 3, 3174.5),
        (None, 3, -1.0),
        (None, 3, float("nan")),
        (None, 3, float("inf")),
        (None, 3, 1e308),
    ],
)
def test_igmp_query_impossible(group: IPv4Address | None, version: int, max_response: float) -> None:
    with pytest.raises(ValueError):
        igmp_query(group, version, max_response)


def test_igmp_query_ipv6_group_rejected() -> None:
    with pytest.raises(ValueError):
        igmp_query(G6)  # type: ignore[arg-type]


def test_mld_v1_query_bytes() -> None:
    expected = bytes([130, 0, 0, 0]) + struct.pack("!HH", 10000, 0) + bytes(16)
    assert mld_query(version=1) == expected
    assert mld_query(G6, version=1, max_response=0.5) == bytes([130, 0, 0, 0, 0x01, 0xF4, 0, 0]) + G6.packed


def test_mld_v2_query_bytes() -> None:
    expected = bytes([130, 0, 0, 0, 0x27, 0x10, 0, 0]) + bytes(16) + bytes([0x02, 125, 0, 0])
    assert mld_query() == expected
    assert len(expected) == 28
    floating = bytes([130, 0, 0, 0, 0x8D, 0x4C, 0, 0]) + G6.packed + bytes([0x02, 125, 0, 0])
    assert mld_query(G6, max_response=60.0) == floating


@pytest.mark.parametrize(
    ("group", "version", "max_response"),
    [
        (None, 3, 10.0),
        (S6, 2, 10.0),
        (None, 1, 65.536),
        (None, 1, 0.0),
        (None, 2, 8387.585),
        (None, 2, float("nan")),
    ],
)
def test_mld_query_impossible(group: IPv6Address | None, version: int, max_response: float) -> None:
    with pytest.raises(ValueError):
        mld_query(group, version, max_response)


# --------------------------------------------------------------------------- round trips


@settings(max_examples=150)
@given(
    st.one_of(st.none(), st.integers(0xE0000000, 0xEFFFFFFF).map(IPv4Address)),
    st.sampled_from([2, 3]),
    st.floats(0.1, 3174.4),
)
def test_igmp_query_round_trip(group: IPv4Address | None, version: int, max_response: float) -> None:
    if version == 2:
        max_response = min(max_response, 25.5)
    result = parse_igmp(ip4(igmp_query(group, version, max_response), dst=group or IPv4Address("224.0.0.1")))
    assert isinstance(result, Query)
    assert (result.sender, result.version, result.group) == (H, version, group)
    requested = round(max_response * 10) / 10
    assert result.max_response <= requested + 1e-9
    assert result.max_response >= requested * (1 - 1 / 16) - 1e-9


def test_igmp_v1_query_round_trip() -> None:
    assert parse_igmp(ip4(igmp_query(version=1))) == Query(H, 1, None, 10.0)


@settings(max_examples=150)
@given(
    st.one_of(st.none(), st.integers(0xFF << 120, (1 << 128) - 1).map(IPv6Address)),
    st.sampled_from([1, 2]),
    st.floats(0.001, 8387.584),
)
def test_mld_query_round_trip(group: IPv6Address | None, version: int, max_response: float) -> None:
    if version == 1:
        max_response = min(max_response, 65.535)
    result = parse_mld(mld_query(group, version, max_response), H6)
    assert isinstance(result, Query)
    assert (result.sender, result.version, result.group) == (H6, version, group)
    requested = round(max_response * 1000) / 1000
    assert result.max_response <= requested + 1e-9
    assert result.max_response >= requested * (1 - 1 / 4096) - 1e-9


# --------------------------------------------------------------------------- link-local groups


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("224.0.0.1", True),
        ("224.0.0.22", True),
        ("224.0.0.255", True),
        ("224.0.1.1", False),
        ("239.1.1.1", False),
        ("ff02::1", True),
        ("ff02::1:ff00:1", True),
        ("ff12::1234", True),
        ("ff01::1", True),
        ("ff05::2", False),
        ("ff3e::1", False),
        ("ff0e::1", False),
    ],
)
def test_is_link_local_group(group: str, expected: bool) -> None:
    address = IPv6Address(group) if ":" in group else IPv4Address(group)
    assert is_link_local_group(address) is expected


# --------------------------------------------------------------------------- never raise


@given(st.binary(max_size=80))
def test_parse_igmp_random_bytes(data: bytes) -> None:
    assert isinstance(parse_igmp(data), (Report, Query, ParseError))


@given(st.binary(max_size=120), st.sampled_from([0x11, 0x12, 0x16, 0x17, 0x22, 0x30]))
def test_parse_igmp_random_message_valid_checksum(body: bytes, kind: int) -> None:
    message = bytes([kind]) + body
    if len(message) >= 4:
        message = with_cksum(message)
    result = parse_igmp(ip4(message))
    assert isinstance(result, (Report, Query, ParseError))
    if isinstance(result, Report):
        for change in result.changes:
            assert change.group.is_multicast


@given(st.binary(max_size=200), st.sampled_from([None, H6]))
def test_parse_mld_random_bytes(data: bytes, sender: IPv6Address | None) -> None:
    assert isinstance(parse_mld(data, sender), (Report, Query, ParseError))


@given(st.sampled_from([130, 131, 132, 143]), st.binary(max_size=200))
def test_parse_mld_random_body(kind: int, body: bytes) -> None:
    result = parse_mld(bytes([kind]) + body, H6)
    assert isinstance(result, (Report, Query, ParseError))
    if isinstance(result, Report):
        for change in result.changes:
            assert change.group.is_multicast
            assert change.source is None or not change.source.is_multicast
