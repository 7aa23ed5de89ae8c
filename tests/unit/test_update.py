"""bgp.update: the UPDATE, ROUTE-REFRESH and NOTIFICATION bodies ExaBGP passes on with
``receive { packets; }``, against ExaBGP's own decoding of the same session."""

from __future__ import annotations

import json
import struct
from ipaddress import ip_address
from pathlib import Path

import pytest

from bgp.attributes import (
    NO_ATTRIBUTES,
    PMSI_INGRESS_REPLICATION,
    Encapsulation,
    MulticastFlags,
    PmsiTunnel,
    RouteTarget,
)
from bgp.evpn import CodecError, InclusiveMulticast, RouteDistinguisher, SelectiveMulticast, SmetFlags
from bgp.exabgp_json import (
    _RECEIVED_UPDATE,
    EndOfRib,
    Event,
    Notification,
    ParseError,
    PeerOpen,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
    parse_line,
)
from bgp.update import OpenInfo, decode_notification, decode_open, decode_refresh, decode_update

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
VTEP = ip_address("10.0.0.7")
IMET = InclusiveMulticast(RouteDistinguisher.from_str("10.0.0.7:100"), 0, VTEP)
SMET = SelectiveMulticast(
    RouteDistinguisher.from_str("10.0.0.7:100"),
    0,
    None,
    ip_address("239.1.1.1"),
    VTEP,
    SmetFlags(SmetFlags.IGMP_V2),
)


def attr(code: int, value: bytes, flags: int = 0xC0) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | 0x10, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def mp_reach(next_hop: bytes, *nlri: bytes) -> bytes:
    return attr(14, struct.pack("!HBB", 25, 70, len(next_hop)) + next_hop + b"\x00" + b"".join(nlri), 0x80)


def mp_unreach(*nlri: bytes, afi: int = 25, safi: int = 70) -> bytes:
    return attr(15, struct.pack("!HB", afi, safi) + b"".join(nlri), 0x80)


def update(*attrs: bytes) -> bytes:
    body = b"".join(attrs)
    return b"\x00\x00" + struct.pack("!H", len(body)) + body


COMMUNITIES = attr(
    16,
    RouteTarget("65000", 100).pack() + Encapsulation(Encapsulation.VXLAN).pack() + MulticastFlags(1).pack(),
)
PMSI = attr(22, PmsiTunnel(PMSI_INGRESS_REPLICATION, 100 << 4, VTEP).pack())
ORIGIN = attr(1, b"\x00", 0x40)


def test_an_announce_carries_the_routes_next_hop_and_the_attributes_the_agent_uses() -> None:
    got = decode_update(update(ORIGIN, COMMUNITIES, PMSI, mp_reach(VTEP.packed, IMET.pack(), SMET.pack())))
    assert got.errors == ()
    assert got.announced == (IMET, SMET)
    assert got.next_hop == VTEP
    assert got.attributes.route_targets == {RouteTarget("65000", 100)}
    assert got.attributes.vxlan_encap and got.attributes.mcast_flags == MulticastFlags(1)
    assert got.attributes.pmsi is not None and got.attributes.pmsi.endpoint == VTEP


def test_withdrawals_and_both_end_of_rib_forms() -> None:
    got = decode_update(update(mp_unreach(IMET.pack(), SMET.pack())))
    assert got.withdrawn == (IMET, SMET) and got.announced == () and got.end_of_rib is None
    assert decode_update(update(mp_unreach())).end_of_rib == "l2vpn evpn"
    assert decode_update(b"\x00\x00\x00\x00").end_of_rib == "ipv4 unicast"


def test_ipv6_next_hops_of_16_and_32_octets() -> None:
    v6 = ip_address("fd00::7")
    assert decode_update(update(mp_reach(v6.packed, IMET.pack()))).next_hop == v6
    link_local = ip_address("fe80::1").packed
    assert decode_update(update(mp_reach(v6.packed + link_local, IMET.pack()))).next_hop == v6


def test_an_extended_length_attribute_is_read() -> None:
    many = b"".join(RouteTarget("65000", n).pack() for n in range(40))  # 320 octets
    got = decode_update(update(attr(16, many), mp_reach(VTEP.packed, IMET.pack())))
    assert len(got.attributes.route_targets) == 40


def test_malformed_attributes_make_the_routes_withdrawn_rfc_7606() -> None:
    got = decode_update(update(attr(16, b"\x00\x02\x00"), mp_reach(VTEP.packed, IMET.pack())))
    assert got.announced == () and got.withdrawn == (IMET,)
    assert "treated as withdrawn" in got.errors[0]


def test_a_bad_nlri_is_reported_and_its_neighbours_still_count() -> None:
    bad = b"\x03\x02\xff\xff"  # an IMET two octets long
    got = decode_update(update(mp_reach(VTEP.packed, IMET.pack(), bad, SMET.pack())))
    assert got.announced == (IMET, SMET)
    assert len(got.errors) == 1 and "does not decode" in got.errors[0]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00",
        b"\x00\x05\x00",
        b"\x00\x00\x00\x09\x80\x0e",
        update(attr(14, b"\x00\x19\x46\x09")),
        update(mp_reach(VTEP.packed, b"\x03\x40")),
        update(mp_reach(b"\x01\x02\x03", IMET.pack())),
    ],
)
def test_truncated_or_garbled_bodies_give_errors_never_exceptions(body: bytes) -> None:
    got = decode_update(body)
    assert got.errors and got.announced == ()


def test_other_families_are_ignored() -> None:
    got = decode_update(update(mp_unreach(b"\x18\x0a\x00\x00", afi=1, safi=1)))
    assert got.withdrawn == () and got.errors == ()


def test_route_refresh_and_notification_bodies() -> None:
    assert decode_refresh(bytes.fromhex("00190146")) == ("begin", "l2vpn evpn")
    assert decode_refresh(bytes.fromhex("00190246")) == ("end", "l2vpn evpn")
    assert decode_refresh(bytes.fromhex("00010001")) == ("query", "ipv4 unicast")
    assert decode_notification(bytes.fromhex("0602") + b"bye") == "6/2 bye"
    assert decode_notification(bytes.fromhex("0401")) == "4/1"
    assert decode_notification(bytes.fromhex("0303ff00")) == "3/3 ff00"


def test_packet_lines_become_events() -> None:
    head = '{"exabgp": "5.0.0", "neighbor": {"address": {"local": "10.0.0.2", "peer": "10.0.0.1"}, '
    refresh = head + '"message": {"category": 5, "body": "0x00190146"}}, "type": "route-refresh"}'
    assert parse_line(refresh) == [RouteRefresh("10.0.0.1", "begin", "l2vpn evpn")]
    note = head + '"message": {"category": 3, "body": "0x0602"}}, "type": "notification"}'
    assert parse_line(note) == [Notification("10.0.0.1", "6/2")]
    eor = (
        head + f'"message": {{"category": 2, "body": "0x{update(mp_unreach()).hex()}"}}}}, "type": "update"}}'
    )
    assert parse_line(eor) == [EndOfRib("10.0.0.1", "l2vpn evpn")]
    garbled = head + '"message": {"category": 2, "body": "0xZZ"}}, "type": "update"}'
    [error] = parse_line(garbled)
    assert isinstance(error, ParseError) and "not hexadecimal" in error.reason
    empty = decode_update(update(mp_reach(VTEP.packed)))
    assert empty.announced == () and empty.attributes == NO_ATTRIBUTES


def _route_events(path: Path) -> list[Event]:
    events = [e for line in path.read_text().splitlines() for e in parse_line(line)]
    return [e for e in events if isinstance(e, RouteAnnounce | RouteWithdraw | EndOfRib | ParseError)]


def test_the_same_session_gives_the_same_events_in_both_forms() -> None:
    """tests/netns/test_two_agents.py records one session twice, as ``packets`` and as ``parsed``."""
    packets = _route_events(GOLDEN / "exabgp-5.0.15-session-packets.jsonl")
    parsed = _route_events(GOLDEN / "exabgp-5.0.15-session.jsonl")
    assert packets == parsed
    assert any(isinstance(e, RouteAnnounce) for e in packets)
    assert any(isinstance(e, RouteWithdraw) for e in packets)
    assert not any(isinstance(e, ParseError) for e in packets)


def open_body(*capabilities: bytes, hold: int = 90) -> bytes:
    caps = b"".join(capabilities)
    params = bytes([2, len(caps)]) + caps
    return struct.pack("!BHH4sB", 4, 65000, hold, bytes([10, 0, 0, 1]), len(params)) + params


def graceful(time: int, *families: tuple[int, int]) -> bytes:
    value = struct.pack("!H", 0x8000 | time) + b"".join(struct.pack("!HBB", a, s, 0x80) for a, s in families)
    return bytes([64, len(value)]) + value


def test_open_graceful_restart_offer() -> None:
    mp_evpn = bytes([1, 4, 0, 25, 0, 70])
    info = decode_open(open_body(mp_evpn, graceful(120, (25, 70), (1, 1))))
    assert info == OpenInfo(120, frozenset({"l2vpn evpn", "ipv4 unicast"}))
    assert decode_open(open_body(mp_evpn)) == OpenInfo(None)
    assert decode_open(open_body(graceful(90))) == OpenInfo(90, frozenset())  # helper mode: no family
    with pytest.raises(CodecError):
        decode_open(b"\x04\x00")


def test_open_lines_become_peer_open_events() -> None:
    body = open_body(graceful(30, (25, 70))).hex()
    line = (
        '{"exabgp": "5.0.0", "type": "open", "neighbor": {"address": {"local": "10.0.0.2", '
        f'"peer": "10.0.0.1"}}, "direction": "receive", "message": {{"category": 1, "body": "0x{body}"}}}}}}'
    )
    assert parse_line(line) == [PeerOpen("10.0.0.1", 30, frozenset({"l2vpn evpn"}))]
    assert parse_line(line.replace('"receive"', '"send"')) == []


def test_exabgps_received_update_lines_take_the_fast_path_with_the_same_events() -> None:
    """Received UPDATEs in ExaBGP's exact layout skip json.loads (bgp.exabgp_json); each golden
    line gives the same events either way, and lines that differ in any way take the general
    path: a malformed one still becomes a ParseError, never a route."""
    lines = (GOLDEN / "exabgp-5.0.15-session-packets.jsonl").read_text().splitlines()
    updates = [line for line in lines if '"type": "update"' in line and '"direction": "receive"' in line]
    assert updates and all(_RECEIVED_UPDATE.fullmatch(line) for line in updates)
    for line in updates:
        assert parse_line(line) == parse_line(json.dumps(json.loads(line)))  # other spacing: general path
    line = next(u for u in updates if len(u) > 400)
    for broken in (
        line.replace('"time": ', '"time": 1.', 1),  # 1.1795610138.76: not a JSON number
        line[:-1],  # unbalanced braces
        line.replace('"body": "0x', '"body": "0xA', 1),  # odd number of hex digits
    ):
        [event] = parse_line(broken)
        assert isinstance(event, ParseError), broken
