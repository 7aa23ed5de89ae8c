"""ExaBGP 5.0.15 JSON lines -> typed events (bgp.exabgp_json): golden lines, bad input, fuzzing."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgp.attributes import PMSI_INGRESS_REPLICATION, MulticastFlags, PmsiTunnel, RouteTarget
from bgp.evpn import InclusiveMulticast, RouteDistinguisher, SelectiveMulticast, SmetFlags
from bgp.exabgp_json import (
    EVPN_FAMILY,
    Ack,
    EndOfRib,
    Event,
    Notification,
    ParseError,
    PeerState,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
    parse_line,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "exabgp-5.0.15-two-agents.jsonl"
LINES = GOLDEN.read_text().splitlines()
PEER = "10.0.0.1"
RD = RouteDistinguisher.from_str("10.0.0.1:100")
ORIGIN = IPv4Address("10.0.0.1")
IMET = InclusiveMulticast(RD, 0, ORIGIN)
SMET_STAR_G = SelectiveMulticast(RD, 0, None, IPv4Address("239.1.1.1"), ORIGIN, SmetFlags(SmetFlags.IGMP_V2))
SMET_S_G = SelectiveMulticast(
    RD, 0, IPv4Address("10.1.1.1"), IPv4Address("239.1.1.2"), ORIGIN, SmetFlags(SmetFlags.IGMP_V3)
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _by_counter(counter: int) -> list[Event]:
    for line in LINES:
        if json.loads(line).get("counter") == counter:
            return parse_line(line)
    raise AssertionError(f"no golden line with counter {counter}")


def _only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


def _errors(events: list[Event]) -> list[ParseError]:
    return [e for e in events if isinstance(e, ParseError)]


# --------------------------------------------------------------------------- golden lines


def test_golden_file_present() -> None:
    assert len(LINES) == 20
    assert all(json.loads(line)["exabgp"] == "5.0.0" for line in LINES)


@pytest.mark.parametrize("line", LINES, ids=[f"line{i + 1}" for i in range(len(LINES))])
def test_golden_line_parses_cleanly(line: str) -> None:
    events = parse_line(line)
    assert events
    assert not _errors(events)


def test_golden_sequence() -> None:
    kinds = [type(e).__name__ for line in LINES for e in parse_line(line)]
    assert kinds == [
        "PeerState", "PeerState", "EndOfRib",
        "RouteAnnounce", "RouteAnnounce", "RouteAnnounce",
        "RouteRefresh", "RouteAnnounce", "RouteAnnounce", "RouteAnnounce", "RouteRefresh",
        "RouteWithdraw",
        "PeerState", "PeerState", "PeerState", "PeerState", "PeerState", "PeerState", "PeerState",
        "Notification",
    ]  # fmt: skip


def test_peer_state_up_and_down() -> None:
    assert _only(_by_counter(1)) == PeerState(PEER, "connected")
    assert _only(_by_counter(2)) == PeerState(PEER, "up")
    assert _only(_by_counter(13)) == PeerState(PEER, "down", "closing connection")


def test_end_of_rib() -> None:
    assert _only(_by_counter(3)) == EndOfRib(PEER, EVPN_FAMILY)
    assert EVPN_FAMILY == "l2vpn evpn"


def test_imet_announce() -> None:
    event = _only(_by_counter(4))
    assert isinstance(event, RouteAnnounce)
    assert event.peer == PEER
    assert event.route == IMET
    assert event.next_hop == ORIGIN
    attrs = event.attributes
    assert attrs.pmsi == PmsiTunnel(PMSI_INGRESS_REPLICATION, 100, ORIGIN)
    assert attrs.pmsi.vni == 100
    assert attrs.mcast_flags == MulticastFlags(MulticastFlags.IGMP_PROXY)
    assert attrs.mcast_flags.igmp_proxy
    assert attrs.route_targets == frozenset({RouteTarget("65000", 100)})
    assert attrs.vxlan_encap


def test_smet_announces() -> None:
    star_g = _only(_by_counter(5))
    assert isinstance(star_g, RouteAnnounce)
    assert star_g.route == SMET_STAR_G
    assert star_g.next_hop == ORIGIN
    assert star_g.attributes.pmsi is None
    assert star_g.attributes.mcast_flags is None
    assert star_g.attributes.route_targets == frozenset({RouteTarget("65000", 100)})
    assert star_g.attributes.vxlan_encap
    s_g = _only(_by_counter(6))
    assert isinstance(s_g, RouteAnnounce)
    assert s_g.route == SMET_S_G


def test_route_refresh_framing() -> None:
    assert _only(_by_counter(7)) == RouteRefresh(PEER, "begin", EVPN_FAMILY)
    assert _only(_by_counter(11)) == RouteRefresh(PEER, "end", EVPN_FAMILY)
    replayed = [e.route for c in (8, 9, 10) for e in _by_counter(c) if isinstance(e, RouteAnnounce)]
    assert replayed == [IMET, SMET_STAR_G, SMET_S_G]


def test_smet_withdraw() -> None:
    assert _only(_by_counter(12)) == RouteWithdraw(PEER, SMET_STAR_G)


def test_shutdown_notification() -> None:
    assert _only(parse_line(LINES[-1])) == Notification("", "shutdown")


def test_peer_notification() -> None:
    doc = {
        "exabgp": "5.0.0",
        "type": "notification",
        "neighbor": {
            "address": {"local": "10.0.0.2", "peer": PEER},
            "message": {"notification": {"code": 6, "subcode": 2, "data": "shut"}},
        },
    }
    assert _only(parse_line(json.dumps(doc))) == Notification(PEER, "6/2 shut")


@pytest.mark.parametrize(("line", "ok"), [("done", True), ("error", False), ("  done\n", True)])
def test_acks(line: str, ok: bool) -> None:
    assert parse_line(line) == [Ack(ok)]


@pytest.mark.parametrize("line", ["", "   ", "\n"])
def test_blank_line(line: str) -> None:
    assert parse_line(line) == []


def test_other_message_types_ignored() -> None:
    doc = json.loads(LINES[0])
    for kind in ("open", "keepalive", "operational", "signal"):
        doc["type"] = kind
        assert parse_line(json.dumps(doc)) == []


def test_several_routes_in_one_line() -> None:
    doc = json.loads(_line(5))
    nlris = doc["neighbor"]["message"]["update"]["announce"][EVPN_FAMILY][PEER]
    nlris.append({"code": 6, "parsed": False, "raw": SMET_S_G.pack().hex().upper()})
    events = parse_line(json.dumps(doc))
    assert [e.route for e in events if isinstance(e, RouteAnnounce)] == [SMET_STAR_G, SMET_S_G]


def test_other_families_skipped() -> None:
    doc = json.loads(_line(5))
    update = doc["neighbor"]["message"]["update"]
    update["announce"]["ipv4 unicast"] = {PEER: [{"nlri": "10.9.0.0/16"}]}
    update["withdraw"] = {"ipv4 unicast": [{"nlri": "10.8.0.0/16"}]}
    (event,) = parse_line(json.dumps(doc))
    assert isinstance(event, RouteAnnounce)
    assert event.route == SMET_STAR_G


# --------------------------------------------------------------------------- bad input


def _line(counter: int) -> str:
    return next(line for line in LINES if json.loads(line).get("counter") == counter)


def _doc(counter: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_line(counter))
    return doc


def test_not_json() -> None:
    error = _only(parse_line("this is not json {"))
    assert isinstance(error, ParseError)
    assert error.peer == ""
    assert "not JSON" in error.reason
    assert error.excerpt == "this is not json {"


def test_json_list() -> None:
    error = _only(parse_line('[{"type": "update"}]'))
    assert isinstance(error, ParseError)
    assert "not an object" in error.reason


def test_object_without_type() -> None:
    doc = _doc(2)
    del doc["type"]
    error = _only(parse_line(json.dumps(doc)))
    assert isinstance(error, ParseError)
    assert error.peer == PEER
    assert "without 'type'" in error.reason


def test_undecodable_raw_keeps_other_routes() -> None:
    doc = _doc(5)
    nlris = doc["neighbor"]["message"]["update"]["announce"][EVPN_FAMILY][PEER]
    nlris.insert(0, {"code": 6, "parsed": False, "raw": "0618DEADBEEF"})
    nlris.append({"code": 6, "parsed": False, "raw": SMET_S_G.pack().hex()})
    events = parse_line(json.dumps(doc))
    assert [e.route for e in events if isinstance(e, RouteAnnounce)] == [SMET_STAR_G, SMET_S_G]
    (error,) = _errors(events)
    assert error.peer == PEER
    assert "0618DEADBEEF" in error.reason
    assert "does not decode" in error.reason


def test_undecodable_withdraw_keeps_other_routes() -> None:
    doc = _doc(12)
    doc["neighbor"]["message"]["update"]["withdraw"][EVPN_FAMILY].append({"code": 6, "raw": "zz"})
    events = parse_line(json.dumps(doc))
    assert [e for e in events if not isinstance(e, ParseError)] == [RouteWithdraw(PEER, SMET_STAR_G)]
    (error,) = _errors(events)
    assert error.peer == PEER
    assert "not hexadecimal" in error.reason


def test_route_without_raw() -> None:
    doc = _doc(5)
    doc["neighbor"]["message"]["update"]["announce"][EVPN_FAMILY][PEER].append({"code": 6})
    events = parse_line(json.dumps(doc))
    assert [e.route for e in events if isinstance(e, RouteAnnounce)] == [SMET_STAR_G]
    (error,) = _errors(events)
    assert error.peer == PEER
    assert "without 'raw'" in error.reason


def test_route_list_not_a_list() -> None:
    doc = _doc(5)
    doc["neighbor"]["message"]["update"]["announce"][EVPN_FAMILY][PEER] = {"raw": "06"}
    (error,) = parse_line(json.dumps(doc))
    assert isinstance(error, ParseError)
    assert error.peer == PEER
    assert "not a JSON list" in error.reason


@pytest.mark.parametrize(
    "pmsi",
    [
        "pmsi:ingressreplication:0:6:10.0.0.1",  # no bracket: VNI lost
        "pmsi:ingressreplication:0:6(100)",
        "garbage",
        "pmsi:ingressreplication:0:6(100):10.0.0.300",
    ],
)
def test_malformed_pmsi(pmsi: str) -> None:
    doc = _doc(4)
    doc["neighbor"]["message"]["update"]["attribute"]["pmsi"] = pmsi
    events = parse_line(json.dumps(doc))
    (error,) = events  # the route is not installed with attributes it could not read
    assert isinstance(error, ParseError)
    assert error.peer == PEER
    assert "attributes not understood" in error.reason


@pytest.mark.parametrize(
    "community",
    [
        {"string": "target:65000:100"},  # no value
        {"value": "x"},
        {"value": -1},
        {"value": 1 << 64},
        {"value": [1]},
        {"value": None},
        "target:65000:100",
        {"value": float("inf")},
        {"value": float("nan")},
    ],
)
def test_malformed_extended_community(community: object) -> None:
    doc = _doc(4)
    doc["neighbor"]["message"]["update"]["attribute"]["extended-community"].append(community)
    events = parse_line(json.dumps(doc))  # json.dumps writes Infinity / NaN, which json.loads accepts
    assert events
    errors = _errors(events)
    assert errors == events
    assert errors[0].peer == PEER


@pytest.mark.parametrize(
    ("counter", "path"),
    [
        (2, ("neighbor", "state")),
        (3, ("neighbor", "message", "eor", "safi")),
        (3, ("neighbor", "message")),
        (7, ("neighbor", "route-refresh", "subtype")),
        (7, ("neighbor", "route-refresh")),
        (4, ("neighbor",)),
    ],
)
def test_missing_keys(counter: int, path: tuple[str, ...]) -> None:
    doc = _doc(counter)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    error = _only(parse_line(json.dumps(doc)))
    assert isinstance(error, ParseError)
    if path == ("neighbor",):
        assert error.peer == ""
        assert "unexpected shape" in error.reason
    else:
        assert error.peer == PEER
        assert f"lacks {path[-1]!r}" in error.reason


@pytest.mark.parametrize(
    "line",
    [
        '{"type": "update", "neighbor": []}',
        '{"type": "update", "neighbor": "x"}',
        '{"type": "update", "neighbor": {"message": 5}}',
        '{"type": "update", "neighbor": {"message": "eor update"}}',
        '{"type": "update", "neighbor": {"message": {"update": []}}}',
        '{"type": "update", "neighbor": {"message": {"update": {"announce": [1]}}}}',
        '{"type": "update", "neighbor": {"message": {"update": {"announce": "x"}}}}',
        '{"type": "update", "neighbor": {"message": {"update": {"withdraw": [1]}}}}',
        '{"type": "update", "neighbor": {"message": {"update": {"attribute": null, "announce": {"a": 1}}}}}',
        '{"type": "notification", "neighbor": {"message": {"notification": 5}}}',
        '{"type": "state", "neighbor": null}',
        '{"type": null}',
        "[" * 100_000,
        '{"a": ' * 100_000,
        "1" * 5000,
    ],
)
def test_wrong_shapes_give_parse_error(line: str) -> None:
    events = parse_line(line)
    assert events
    assert all(isinstance(e, ParseError) for e in events)


# --------------------------------------------------------------------------- fuzzing


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 70), 1 << 70),
        st.floats(),  # includes inf / nan, which json.dumps writes and json.loads reads back
        st.text(max_size=12),
        st.sampled_from(["l2vpn evpn", "update", "pmsi:ingressreplication:0:6(100):10.0.0.1", "06", PEER]),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.one_of(
                    st.sampled_from(
                        [
                            "type", "neighbor", "address", "peer", "message", "update", "eor", "afi", "safi",
                            "announce", "withdraw", "attribute", "extended-community", "value", "pmsi", "raw",
                            "state", "reason", "route-refresh", "subtype", "notification", "l2vpn evpn", PEER,
                        ]
                    ),
                    st.text(max_size=6),
                ),
                children,
                max_size=5,
            ),
        ),
        max_leaves=20,
    )  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


@st.composite
def _mutated_golden(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(json.loads(draw(st.sampled_from(LINES))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(_json_values())
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return json.dumps(doc)


@st.composite
def _text_mutated_golden(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(LINES))
    start = draw(st.integers(0, len(line)))
    end = draw(st.integers(start, min(len(line), start + 8)))
    return line[:start] + draw(st.text(max_size=4)) + line[end:]


def _check(line: str) -> None:
    events = parse_line(line)  # must not raise
    assert isinstance(events, list)
    for event in events:
        assert isinstance(
            event,
            RouteAnnounce
            | RouteWithdraw
            | PeerState
            | EndOfRib
            | RouteRefresh
            | Notification
            | Ack
            | ParseError,
        )
        if isinstance(event, ParseError):
            assert event.reason
            assert len(event.excerpt) <= 120


@FAST
@given(st.text(max_size=200))
def test_random_text_never_raises(line: str) -> None:
    _check(line)


@FAST
@given(_json_values())
def test_random_json_never_raises(doc: Any) -> None:
    _check(json.dumps(doc))


@FAST
@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["update", "state", "refresh", "notification"])},
        optional={"neighbor": _json_values(), "notification": _json_values()},
    )
)
def test_random_typed_json_never_raises(doc: dict[str, Any]) -> None:
    _check(json.dumps(doc))


@FAST
@given(_mutated_golden())
def test_mutated_golden_never_raises(line: str) -> None:
    _check(line)


@FAST
@given(_text_mutated_golden())
def test_text_mutated_golden_never_raises(line: str) -> None:
    _check(line)
