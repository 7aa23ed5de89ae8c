"""EVPN NLRI codec (bgp.evpn) and the launcher command grammar (bgp.commands)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgp.attributes import PMSI_INGRESS_REPLICATION, MulticastFlags, PmsiTunnel, RouteTarget
from bgp.commands import EvpnCommand, RouteAttributes, format_command, parse_command
from bgp.evpn import (
    ZERO_ESI,
    CodecError,
    EthernetAutoDiscovery,
    EthernetSegment,
    EthernetSegmentId,
    EvpnRoute,
    InclusiveMulticast,
    IPAddress,
    IpPrefix,
    JoinSynch,
    LeaveSynch,
    MacIpAdvertisement,
    RouteDistinguisher,
    SelectiveMulticast,
    SmetFlags,
    decode_hex,
    decode_nlri,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RD = RouteDistinguisher.from_str("10.0.0.1:100")
ESI = EthernetSegmentId(bytes(range(1, 11)))
V4 = IPv4Address("10.0.0.1")
V6 = IPv6Address("2001:db8::1")
G4 = IPv4Address("239.1.1.1")
G6 = IPv6Address("ff0e::1:2")
S4 = IPv4Address("10.1.1.1")
S6 = IPv6Address("2001:db8::99")

# Golden raw hex from ExaBGP 5.0.15 (tests/golden/exabgp-5.0.15-two-agents.jsonl)
GOLDEN_IMET = "031100010A000001006400000000200A000001"
GOLDEN_SMET_STAR_G = "061800010A0000010064000000000020EF010101200A00000102"
GOLDEN_SMET_S_G = "061C00010A000001006400000000200A01010120EF010102200A00000104"


# --------------------------------------------------------------------------- round trips


def _examples() -> list[EvpnRoute]:
    v2 = SmetFlags(SmetFlags.IGMP_V2)
    v3_ex = SmetFlags(SmetFlags.IGMP_V3 | SmetFlags.EXCLUDE)
    return [
        EthernetAutoDiscovery(RD, ESI, 0xFFFFFFFF, 10100),
        EthernetAutoDiscovery(RD, ZERO_ESI, 0, 0),
        MacIpAdvertisement(RD, ESI, 100, "aa:bb:cc:00:11:22", V4, 10100, None),
        MacIpAdvertisement(RD, ESI, 100, "aa:bb:cc:00:11:22", V6, 10100, 50000),
        MacIpAdvertisement(RD, ZERO_ESI, 0, "02:00:00:00:00:01", None, 1, None),
        InclusiveMulticast(RD, 0, V4),
        InclusiveMulticast(RD, 4096, V6),
        EthernetSegment(RD, ESI, V4),
        EthernetSegment(RD, ESI, V6),
        IpPrefix(RD, ZERO_ESI, 0, IPv4Network("10.1.0.0/16"), IPv4Address("0.0.0.0"), 10100),
        IpPrefix(RD, ESI, 7, IPv6Network("2001:db8:1::/48"), V6, 0xFFFFFF),
        SelectiveMulticast(RD, 0, None, G4, V4, v2),
        SelectiveMulticast(RD, 0, S4, G4, V4, v3_ex),
        SelectiveMulticast(RD, 5, None, G6, V6, v2),
        SelectiveMulticast(RD, 5, S6, G6, V6, v3_ex),
        SelectiveMulticast(RD, 5, S6, G6, V4, v2),  # IPv4 originator for an IPv6 group is allowed
        JoinSynch(RD, ESI, 0, None, G4, V4, v2),
        JoinSynch(RD, ESI, 9, S6, G6, V6, v3_ex),
        LeaveSynch(RD, ESI, 0, None, G4, V4, 0xDEADBEEF, 10, v2),
        LeaveSynch(RD, ESI, 9, S6, G6, V6, 1, 255, v3_ex),
    ]


@pytest.mark.parametrize("route", _examples(), ids=lambda r: f"{r.NAME}-{len(r.pack())}")
def test_round_trip(route: EvpnRoute) -> None:
    packed = route.pack()
    assert packed[0] == route.CODE
    assert packed[1] == len(packed) - 2
    assert decode_nlri(packed) == route
    assert decode_hex(packed.hex().upper()) == route
    assert decode_hex("0x" + packed.hex()) == route


def test_every_route_type_covered_in_both_families() -> None:
    seen: dict[int, set[int]] = {}
    for route in _examples():
        fams = seen.setdefault(route.CODE, set())
        for name in ("originator", "ip", "gateway", "group"):
            value = getattr(route, name, None)
            if value is not None:
                fams.add(value.version)
    assert set(seen) == set(range(1, 9))
    for code in (2, 3, 4, 5, 6, 7, 8):
        assert seen[code] == {4, 6}, code


def test_imet_golden() -> None:
    route = decode_hex(GOLDEN_IMET)
    assert route == InclusiveMulticast(RouteDistinguisher.from_str("10.0.0.1:100"), 0, V4)
    assert isinstance(route, InclusiveMulticast)
    assert str(route.rd) == "10.0.0.1:100"
    assert route.pack().hex().upper() == GOLDEN_IMET


def test_smet_star_g_golden() -> None:
    route = decode_hex(GOLDEN_SMET_STAR_G)
    assert isinstance(route, SelectiveMulticast)
    assert str(route.rd) == "10.0.0.1:100"
    assert route.etag == 0
    assert route.source is None
    assert route.group == G4
    assert route.originator == V4
    assert route.flags == SmetFlags(SmetFlags.IGMP_V2)
    assert route.flags.names() == ["v2", "include"]
    assert route.pack().hex().upper() == GOLDEN_SMET_STAR_G


def test_smet_s_g_golden() -> None:
    route = decode_hex(GOLDEN_SMET_S_G)
    assert route == SelectiveMulticast(RD, 0, S4, IPv4Address("239.1.1.2"), V4, SmetFlags(SmetFlags.IGMP_V3))
    assert route.pack().hex().upper() == GOLDEN_SMET_S_G


def test_ipv4_star_g_smet_is_24_octets() -> None:
    packed = SelectiveMulticast(RD, 0, None, G4, V4, SmetFlags(2)).pack()
    assert packed[:2] == bytes([6, 24])
    assert len(packed) == 2 + 24
    # RD 8 | tag 4 | src len 1 | grp len 1 + 4 | orig len 1 + 4 | flags 1
    assert 8 + 4 + 1 + 5 + 5 + 1 == 24


def test_smet_sizes_other_forms() -> None:
    assert SelectiveMulticast(RD, 0, S4, G4, V4, SmetFlags(4)).pack()[1] == 28
    assert SelectiveMulticast(RD, 0, None, G6, V6, SmetFlags(2)).pack()[1] == 48
    assert SelectiveMulticast(RD, 0, S6, G6, V6, SmetFlags(4)).pack()[1] == 64


def test_join_and_leave_synch_layout() -> None:
    join = JoinSynch(RD, ESI, 3, S4, G4, V4, SmetFlags(4))
    body = join.pack()[2:]
    assert body[8:18] == ESI.raw
    assert len(body) == 8 + 10 + 4 + 5 + 5 + 5 + 1
    leave = LeaveSynch(RD, ESI, 3, S4, G4, V4, 0x01020304, 0x7F, SmetFlags(4))
    lbody = leave.pack()[2:]
    assert lbody[-6:] == bytes([1, 2, 3, 4, 0x7F, 4])
    decoded = decode_nlri(leave.pack())
    assert isinstance(decoded, LeaveSynch)
    assert decoded.sequence == 0x01020304
    assert decoded.max_response_time == 0x7F
    assert decoded.esi == ESI


def test_smet_key_excludes_flags() -> None:
    a = SelectiveMulticast(RD, 0, None, G4, V4, SmetFlags(SmetFlags.IGMP_V2))
    b = SelectiveMulticast(RD, 0, None, G4, V4, SmetFlags(SmetFlags.IGMP_V3 | SmetFlags.EXCLUDE))
    assert a != b
    assert a.key() == b.key()
    assert a.key() == a.pack()[:-1]
    assert len(a.key()) == 2 + 23
    other_group = SelectiveMulticast(RD, 0, None, IPv4Address("239.1.1.2"), V4, SmetFlags(2))
    other_source = SelectiveMulticast(RD, 0, S4, G4, V4, SmetFlags(2))
    other_origin = SelectiveMulticast(RD, 0, None, G4, IPv4Address("10.0.0.2"), SmetFlags(2))
    assert len({a.key(), other_group.key(), other_source.key(), other_origin.key()}) == 4


def test_smet_flags_names() -> None:
    assert SmetFlags(0).names() == ["include"]
    assert SmetFlags(1).names() == ["v1", "include"]
    assert SmetFlags(0x0F).names() == ["v1", "v2", "v3", "exclude"]
    assert SmetFlags(0x08).exclude
    assert not SmetFlags(0x07).exclude


def test_imet_key_is_whole_nlri() -> None:
    route = InclusiveMulticast(RD, 0, V4)
    assert route.key() == route.pack()


# --------------------------------------------------------------------------- qualifiers


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("65000:100", struct.pack("!HHI", 0, 65000, 100)),
        ("0:0", bytes(8)),
        ("65535:4294967295", struct.pack("!HHI", 0, 65535, 0xFFFFFFFF)),
        ("10.0.0.1:100", struct.pack("!H4sH", 1, IPv4Address("10.0.0.1").packed, 100)),
        ("255.255.255.255:65535", struct.pack("!H4sH", 1, b"\xff" * 4, 65535)),
        ("4200000000:7", struct.pack("!HIH", 2, 4200000000, 7)),
        ("65536:65535", struct.pack("!HIH", 2, 65536, 65535)),
    ],
)
def test_route_distinguisher_text(text: str, raw: bytes) -> None:
    rd = RouteDistinguisher.from_str(text)
    assert rd.raw == raw
    assert str(rd) == text
    assert RouteDistinguisher.from_str(str(rd)) == rd


def test_route_distinguisher_unknown_type_prints_hex() -> None:
    assert str(RouteDistinguisher(bytes([0, 9]) + bytes(6))) == "0x0009000000000000"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("65000", "ADMIN:NUMBER"),
        ("65000:", "ADMIN:NUMBER"),
        ("65000:-1", "ADMIN:NUMBER"),
        (":5", "bad administrator"),
        ("abc:5", "bad administrator"),
        ("10.0.0:5", "bad IPv4"),
        ("10.0.0.1:65536", "over 65535"),
        ("65000:4294967296", "out of range"),
        ("4200000000:65536", "out of range"),
        ("4294967296:1", "out of range"),
        ("1:\u00b2", "ADMIN:NUMBER"),  # superscript two: isdigit() but not int()
        ("\u00b2:1", "bad administrator"),
    ],
)
def test_route_distinguisher_errors(text: str, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        RouteDistinguisher.from_str(text)


def _rd_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds("{}:{}".format, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
        st.builds("{}:{}".format, st.ip_addresses(v=4), st.integers(0, 0xFFFF)),
        st.builds("{}:{}".format, st.integers(0x10000, 0xFFFFFFFF), st.integers(0, 0xFFFF)),
    )


@FAST
@given(_rd_text())
def test_route_distinguisher_text_round_trip(text: str) -> None:
    assert str(RouteDistinguisher.from_str(text)) == text


# --------------------------------------------------------------------------- errors


def _nlri(code: int, *parts: str) -> str:
    """Hex of one NLRI with a correct length octet around the given body parts."""
    body = "".join(parts)
    return f"{code:02X}{len(body) // 2:02X}{body}"


RD_HEX = "00010A0000010064"
TAG = "00000000"
ESI_HEX = "00" * 10
G_HEX = "20EF010101"
O_HEX = "200A000001"
V6_HEX = "8020010DB8000000000000000000000001"
BAD_INPUTS = [
    pytest.param("", "no type and length", id="empty"),
    pytest.param("03", "no type and length", id="one-octet"),
    pytest.param("0311" + RD_HEX + TAG, "length octet says 17, 12", id="length-octet-too-big"),
    pytest.param(GOLDEN_IMET + "00", "length octet says 17, 18", id="trailing-after-nlri"),
    pytest.param(_nlri(3, RD_HEX, TAG), "truncated at octet 12", id="truncated-body"),
    pytest.param(_nlri(3, RD_HEX, TAG, "20AA"), "truncated", id="truncated-ip"),
    pytest.param(_nlri(3, RD_HEX, TAG, O_HEX, "99"), "1 trailing octets", id="trailing-octets"),
    pytest.param(_nlri(3, RD_HEX, TAG, "180A0000"), "originator length 24 bits", id="bad-ip-length"),
    pytest.param(_nlri(3, RD_HEX, TAG, "00"), "originator length 0 bits", id="imet-no-originator"),
    pytest.param("0900", "route type 9 is not known", id="unknown-type-9"),
    pytest.param("0000", "route type 0 is not known", id="unknown-type-0"),
    pytest.param("FF00", "route type 255 is not known", id="unknown-type-255"),
    pytest.param(
        _nlri(6, RD_HEX, TAG, "00", "200A010101", O_HEX, "02"),
        "group 10.1.1.1 is not a multicast address",
        id="non-multicast-group",
    ),
    pytest.param(_nlri(6, RD_HEX, TAG, "00", "00", O_HEX, "02"), "group length 0 bits", id="smet-no-group"),
    pytest.param(
        _nlri(6, RD_HEX, TAG, V6_HEX, G_HEX, O_HEX, "02"), "differ in address family", id="mismatched-family"
    ),
    pytest.param(
        _nlri(6, RD_HEX, TAG, "08", G_HEX, O_HEX, "02"), "source length 8 bits", id="bad-source-length"
    ),
    pytest.param(_nlri(6, RD_HEX, TAG, "00", G_HEX, O_HEX), "type-6 route: truncated", id="smet-no-flags"),
    pytest.param(
        _nlri(6, RD_HEX, TAG, "00", G_HEX, O_HEX, "0200"), "type-6 route: 1 trailing", id="smet-trailing"
    ),
    pytest.param("zz", "not hexadecimal", id="bad-hex"),
    pytest.param("031", "not hexadecimal", id="odd-hex"),
    pytest.param("0x", "no type and length", id="only-prefix"),
    pytest.param("0xg3", "not hexadecimal", id="bad-hex-after-prefix"),
    pytest.param("03\u00e9", "not hexadecimal", id="non-ascii"),
    pytest.param(
        _nlri(2, RD_HEX, ESI_HEX, TAG, "28", "AABBCC001122", "00", "000064"),
        "MAC length 40",
        id="type2-mac-length",
    ),
    pytest.param(
        _nlri(2, RD_HEX, ESI_HEX, TAG, "30", "AABBCC001122", "00", "000064", "0000"),
        "type-2 route: truncated",
        id="type2-partial-label2",
    ),
    pytest.param(_nlri(5, "00" * 32), "type-5 route: 32 octets", id="type5-length"),
    pytest.param(
        _nlri(5, RD_HEX, ESI_HEX, TAG, "21", "0A010000", "00000000", "000064"),
        "prefix length 33 over 32",
        id="type5-prefix-length",
    ),
    pytest.param(_nlri(1, RD_HEX, ESI_HEX, TAG, "0000"), "type-1 route: truncated", id="type1-short"),
    pytest.param(_nlri(4, RD_HEX, ESI_HEX), "type-4 route: truncated", id="type4-short"),
    pytest.param(
        _nlri(7, RD_HEX, ESI_HEX, TAG, "00", G_HEX, O_HEX, "02", "FF"),
        "type-7 route: 1 trailing",
        id="type7-trailing",
    ),
    pytest.param(
        _nlri(7, RD_HEX, ESI_HEX, TAG, "00", "200A010101", O_HEX, "02"),
        "not a multicast",
        id="type7-unicast-group",
    ),
    pytest.param(
        _nlri(8, RD_HEX, ESI_HEX, TAG, "00", G_HEX, O_HEX, "00000001", "0A"),
        "type-8 route: truncated",
        id="type8-no-flags",
    ),
    pytest.param(
        _nlri(8, RD_HEX, ESI_HEX, TAG, V6_HEX, G_HEX, O_HEX, "00000001", "0A", "02"),
        "differ in address family",
        id="type8-mismatched-family",
    ),
]


@pytest.mark.parametrize(("text", "match"), BAD_INPUTS)
def test_decode_errors(text: str, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode_hex(text)


def test_bad_inputs_have_consistent_length_octets() -> None:
    # Guard the table above: the cases meant to reach a body decoder must pass the framing check.
    for param in BAD_INPUTS:
        text, match = param.values
        assert isinstance(text, str) and isinstance(match, str)
        if "length octet" in match or "hexadecimal" in match or "no type" in match:
            continue
        data = bytes.fromhex(text.removeprefix("0x"))
        assert data[1] == len(data) - 2, param.id


def test_codec_error_is_value_error() -> None:
    assert issubclass(CodecError, ValueError)


# --------------------------------------------------------------------------- hypothesis: codec


def _framed() -> st.SearchStrategy[bytes]:
    """Right framing (type 0-9, length octet matching) around arbitrary bodies."""
    return st.builds(
        lambda code, body: bytes([code, len(body)]) + body,
        st.integers(0, 9),
        st.binary(max_size=80),
    )


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid NLRI with one octet changed (length octet fixed up half the time)."""
    packed = bytearray(draw(st.sampled_from(_examples())).pack())
    pos = draw(st.integers(0, len(packed) - 1))
    packed[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        packed[1] = len(packed) - 2
    return bytes(packed)


@FAST
@given(st.one_of(st.binary(max_size=80), _framed(), _mutated()))
def test_decode_nlri_raises_only_codec_error(data: bytes) -> None:
    try:
        route = decode_nlri(data)
    except CodecError as exc:
        assert str(exc)
    else:
        assert data[0] == route.CODE
        if route.CODE != 5:  # type 5 drops host bits of the prefix, others are exact
            assert route.pack() == data


@FAST
@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet="0123456789abcdefABCDEFxX \t\n-", max_size=80),
        st.builds(lambda b: "0x" + b.hex(), _framed()),
    )
)
def test_decode_hex_raises_only_codec_error(text: str) -> None:
    try:
        decode_hex(text)
    except CodecError as exc:
        assert str(exc)


def _rd() -> st.SearchStrategy[RouteDistinguisher]:
    return st.one_of(
        _rd_text().map(RouteDistinguisher.from_str), st.binary(min_size=8, max_size=8).map(RouteDistinguisher)
    )


def _ip() -> st.SearchStrategy[IPAddress]:
    return st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@st.composite
def _source_group(draw: st.DrawFn) -> tuple[IPAddress | None, IPAddress]:
    version = draw(st.sampled_from((4, 6)))
    group: IPAddress = draw(st.ip_addresses(network="224.0.0.0/4" if version == 4 else "ff00::/8"))
    source: IPAddress | None = draw(st.none() | st.ip_addresses(v=version))
    return source, group


@st.composite
def _smet(draw: st.DrawFn) -> SelectiveMulticast:
    source, group = draw(_source_group())
    return SelectiveMulticast(
        draw(_rd()),
        draw(st.integers(0, 0xFFFFFFFF)),
        source,
        group,
        draw(_ip()),
        SmetFlags(draw(st.integers(0, 255))),
    )


def _imet() -> st.SearchStrategy[InclusiveMulticast]:
    return st.builds(InclusiveMulticast, _rd(), st.integers(0, 0xFFFFFFFF), _ip())


@FAST
@given(st.one_of(_smet(), _imet()))
def test_generated_smet_imet_round_trip(route: SelectiveMulticast | InclusiveMulticast) -> None:
    packed = route.pack()
    assert packed[1] == len(packed) - 2
    assert decode_nlri(packed) == route
    assert decode_hex(packed.hex()) == route
    if isinstance(route, SelectiveMulticast):
        assert route.key() == packed[:-1]
        flipped = SmetFlags(route.flags.raw ^ 0xFF)
        other = SelectiveMulticast(route.rd, route.etag, route.source, route.group, route.originator, flipped)
        assert other.key() == route.key()


# --------------------------------------------------------------------------- command grammar


def test_format_command_imet_text() -> None:
    cmd = EvpnCommand(
        "announce",
        InclusiveMulticast(RD, 0, V4),
        RouteAttributes(
            next_hop=V4,
            route_targets=(RouteTarget("65000", 100),),
            pmsi=PmsiTunnel(PMSI_INGRESS_REPLICATION, 10100, V4),
            mcast_flags=MulticastFlags(MulticastFlags.IGMP_PROXY),
        ),
        (IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")),
    )
    text = format_command(cmd)
    assert text == (
        "neighbor 10.0.0.2 neighbor 10.0.0.3 announce evpn imet rd 10.0.0.1:100 etag 0 "
        "originator 10.0.0.1 next-hop 10.0.0.1 pmsi ingress-replication 10100 10.0.0.1 "
        "rt 65000:100 encap vxlan mcast-flags igmp-proxy"
    )
    assert parse_command(text) == cmd


def test_format_command_smet_text() -> None:
    cmd = EvpnCommand(
        "withdraw",
        SelectiveMulticast(RD, 0, None, G4, V4, SmetFlags(SmetFlags.IGMP_V3 | SmetFlags.EXCLUDE)),
        RouteAttributes(next_hop=V4, vxlan_encap=False),
    )
    text = format_command(cmd)
    assert text == (
        "withdraw evpn smet rd 10.0.0.1:100 etag 0 source * group 239.1.1.1 originator 10.0.0.1 "
        "flags v3+exclude next-hop 10.0.0.1"
    )
    assert parse_command(text) == cmd


def test_parse_command_defaults() -> None:
    cmd = parse_command(
        "announce evpn smet rd 65000:1 etag 0 group 239.1.1.1 originator 10.0.0.1 next-hop 10.0.0.1"
    )
    assert isinstance(cmd.route, SelectiveMulticast)
    assert cmd.route.source is None
    assert cmd.route.flags == SmetFlags(0)
    assert cmd.attributes.vxlan_encap is False
    assert cmd.attributes.mcast_flags is None
    assert cmd.neighbors == ()


IMET = "announce evpn imet rd 1:1 etag 0 originator 10.0.0.1 next-hop 10.0.0.1"
SMET = "announce evpn smet rd 1:1 etag 0"
BAD_COMMANDS = [
    ("", "expected"),
    ("announce", "expected"),
    ("announce evpn", "expected"),
    ("announce ipv4 imet", "expected"),
    ("neighbor", "needs an address"),
    ("neighbor 10.0.0.300 announce evpn imet", "not an IP address"),
    ("announce evpn mac rd 1:1", "not supported"),
    ("announce evpn imet rd 1:1 etag 0 originator 10.0.0.1", "needs 'next-hop'"),
    ("announce evpn imet rd 1:1 etag 0 next-hop 10.0.0.1", "needs 'originator'"),
    ("announce evpn imet rd 1:1 etag 0 originator 10.0.0.1 next-hop 10.0.0.1 rd 1:2", "given twice"),
    ("announce evpn imet rd 1:1 etag 4294967296 originator 10.0.0.1 next-hop 10.0.0.1", "32-bit"),
    ("announce evpn imet rd 1:1 etag -1 originator 10.0.0.1 next-hop 10.0.0.1", "32-bit"),
    ("announce evpn imet rd 1:1 etag \u00b2 originator 10.0.0.1 next-hop 10.0.0.1", "32-bit"),
    ("announce evpn imet rd 1:\u00b2 etag 0 originator 10.0.0.1 next-hop 10.0.0.1", "route distinguisher"),
    (IMET + " pmsi ingress-replication 1", "pmsi"),
    (IMET + " pmsi p2mp 1 10.0.0.1", "pmsi"),
    (IMET + " pmsi ingress-replication 16777216 10.0.0.1", "24-bit"),
    (IMET + " pmsi ingress-replication 1 10.0.0.256", "not an IP address"),
    (IMET + " encap mpls", "not supported"),
    (IMET + " mcast-flags pim", "unknown flag"),
    (IMET + " rt 65000", "route target"),
    (IMET + " rt 65000:\u00b2", "route target"),
    (IMET + " rt \u00b2:1", "route target"),
    (IMET + " colour red", "unknown word"),
    ("announce evpn imet rd 1:1 etag 0 originator 10.0.0.1 next-hop", "needs a value"),
    (SMET + " originator 10.0.0.1 next-hop 10.0.0.1", "needs 'group'"),
    (SMET + " group 10.1.1.1 originator 10.0.0.1 next-hop 10.0.0.1", "not a multicast"),
    (SMET + " source 2001:db8::1 group 239.1.1.1 originator 10.0.0.1 next-hop 10.0.0.1", "address family"),
    (SMET + " group 239.1.1.1 originator 10.0.0.1 next-hop 10.0.0.1 flags v4", "unknown SMET flag"),
]


@pytest.mark.parametrize(("line", "match"), BAD_COMMANDS)
def test_parse_command_errors(line: str, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        parse_command(line)


def _rt() -> st.SearchStrategy[RouteTarget]:
    def rt(admin: object, number: int) -> RouteTarget:
        return RouteTarget(str(admin), number)

    return st.one_of(
        st.builds(rt, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
        st.builds(rt, st.ip_addresses(v=4), st.integers(0, 0xFFFF)),
        st.builds(rt, st.integers(0x10000, 0xFFFFFFFF), st.integers(0, 0xFFFF)),
    )


@st.composite
def _command(draw: st.DrawFn) -> EvpnCommand:
    rd = RouteDistinguisher.from_str(draw(_rd_text()))
    etag = draw(st.integers(0, 0xFFFFFFFF))
    route: InclusiveMulticast | SelectiveMulticast
    if draw(st.booleans()):
        route = InclusiveMulticast(rd, etag, draw(_ip()))
    else:
        source, group = draw(_source_group())
        flags = SmetFlags(draw(st.integers(0, 0x0F)))
        route = SelectiveMulticast(rd, etag, source, group, draw(_ip()), flags)
    tunnel = st.builds(PmsiTunnel, st.just(PMSI_INGRESS_REPLICATION), st.integers(0, 0xFFFFFF), _ip())
    pmsi = draw(st.none() | tunnel)
    attrs = RouteAttributes(
        next_hop=draw(_ip()),
        route_targets=tuple(draw(st.lists(_rt(), max_size=3))),
        pmsi=pmsi,
        vxlan_encap=draw(st.booleans()),
        mcast_flags=draw(st.none() | st.integers(0, 3).map(MulticastFlags)),
    )
    neighbors = tuple(draw(st.lists(_ip(), max_size=3)))
    return EvpnCommand(draw(st.sampled_from(("announce", "withdraw"))), route, attrs, neighbors)


@FAST
@given(_command())
def test_command_round_trip(cmd: EvpnCommand) -> None:
    text = format_command(cmd)
    assert "\n" not in text
    assert parse_command(text) == cmd


WORDS = [
    "neighbor", ",", "announce", "withdraw", "evpn", "imet", "smet", "rd", "etag", "originator",
    "next-hop", "source", "group", "flags", "pmsi", "ingress-replication", "rt", "encap", "vxlan",
    "mcast-flags", "igmp-proxy+mld-proxy", "igmp-proxy,mld-proxy", "none", "v1+v2+v3+exclude", "v2,v3",
    "*", "10.0.0.1", "239.1.1.1",
    "2001:db8::1", "ff0e::1", "65000:100", "10.0.0.1:1", "4294967295", "4294967296", "0", "-1",
    "\u00b2", "1:\u00b2", "\u0663", "1.2.3.4:\u0663",
]  # fmt: skip


@FAST
@given(
    st.one_of(
        st.text(max_size=120),
        st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=24).map(" ".join),
        _command()
        .map(format_command)
        .flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
    )
)
def test_parse_command_raises_only_codec_error(line: str) -> None:
    try:
        cmd = parse_command(line)
    except CodecError as exc:
        assert str(exc)
    else:
        assert parse_command(format_command(cmd)).route == cmd.route


def test_parse_ip_accepts_both_families() -> None:
    cmd = parse_command(
        "neighbor 2001:db8::2 announce evpn imet rd 1:1 etag 0 originator 2001:db8::1 next-hop ::1"
    )
    assert cmd.neighbors == (ip_address("2001:db8::2"),)
    assert isinstance(cmd.route, InclusiveMulticast)
    assert cmd.route.originator == V6
