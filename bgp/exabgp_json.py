"""ExaBGP 5.0.15 JSON API lines (``"exabgp": "5.0.0"`` format) turned into typed events.

Both of ExaBGP's forms are read: ``parsed`` (ExaBGP decodes the message into JSON) and
``packets`` (the message body as hex, decoded by bgp.update), which the agent's launcher uses
because it costs ExaBGP about half as much per route (docs/exabgp-api.md).

``parse_line`` never raises: a line that is not JSON, not ExaBGP's shape, or carries a route
that does not decode becomes a ``ParseError`` event naming the peer and the reason, and the
other routes of the same line still come through. One line is one BGP message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

from bgp.attributes import (
    NO_ATTRIBUTES,
    MulticastFlags,
    OtherCommunity,
    PathAttributes,
    RouteTarget,
    decode_ext_community_int,
    parse_exabgp_pmsi,
)
from bgp.evpn import CodecError, EvpnRoute, IPAddress, decode_hex, parse_ip
from bgp.update import decode_notification, decode_open, decode_refresh, decode_update

EVPN_FAMILY = "l2vpn evpn"


@dataclass(frozen=True, slots=True)
class RouteAnnounce:
    peer: str
    route: EvpnRoute
    next_hop: IPAddress | None
    attributes: PathAttributes


@dataclass(frozen=True, slots=True)
class RouteWithdraw:
    peer: str
    route: EvpnRoute


@dataclass(frozen=True, slots=True)
class PeerState:
    """``state`` is ExaBGP's: connected, up, down (with a reason), or others it may add."""

    peer: str
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PeerOpen:
    """The peer's OPEN (``receive { open; packets; }``): its graceful-restart time, None when
    it does not offer graceful restart, and the families it offers it for."""

    peer: str
    restart_time: int | None
    families: frozenset[str]


@dataclass(frozen=True, slots=True)
class EndOfRib:
    peer: str
    family: str


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """Enhanced route refresh framing (RFC 7313): subtype begin / end, or a peer's query."""

    peer: str
    subtype: str
    family: str


@dataclass(frozen=True, slots=True)
class Notification:
    """A BGP NOTIFICATION for a peer, or ExaBGP's own ``shutdown`` (peer empty)."""

    peer: str
    text: str


@dataclass(frozen=True, slots=True)
class Ack:
    ok: bool


@dataclass(frozen=True, slots=True)
class ParseError:
    peer: str
    reason: str
    excerpt: str


Event: TypeAlias = (
    RouteAnnounce
    | RouteWithdraw
    | PeerState
    | PeerOpen
    | EndOfRib
    | RouteRefresh
    | Notification
    | Ack
    | ParseError
)


def _excerpt(line: str) -> str:
    return line if len(line) <= 120 else line[:117] + "..."


def parse_attributes(attrs: dict[str, Any]) -> PathAttributes:
    """Raises CodecError (or KeyError/TypeError on a wrong shape, turned into ParseError above).

    Cached on the fields it reads: a fabric sends the same few attribute sets again and again."""
    communities = attrs.get("extended-community", ())
    key = (tuple(c["value"] for c in communities), attrs.get("pmsi"))
    try:
        return _parse_attributes_cached(key)
    except TypeError:  # unhashable values: a malformed line, decode it uncached for the error
        return _parse_attributes(key)


@lru_cache(maxsize=16384)
def _parse_attributes_cached(key: tuple[tuple[Any, ...], Any]) -> PathAttributes:
    return _parse_attributes(key)


def _parse_attributes(key: tuple[tuple[Any, ...], Any]) -> PathAttributes:
    values, pmsi_text = key
    rts: list[RouteTarget] = []
    flags: MulticastFlags | None = None
    encap = False
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool):
            raise CodecError(f"extended community value {value!r} is not an integer")
        decoded = decode_ext_community_int(value)
        if isinstance(decoded, RouteTarget):
            rts.append(decoded)
        elif isinstance(decoded, MulticastFlags):
            flags = decoded
        elif isinstance(decoded, OtherCommunity):
            continue
        else:
            encap = encap or decoded.tunnel_type == decoded.VXLAN
    pmsi = parse_exabgp_pmsi(pmsi_text) if isinstance(pmsi_text, str) else None
    if not rts and pmsi is None and flags is None and not encap:
        return NO_ATTRIBUTES
    return PathAttributes(frozenset(rts), pmsi, flags, encap)


def _peer_of(neighbor: Any) -> str:
    if not isinstance(neighbor, dict):
        return ""
    address = neighbor.get("address")
    if isinstance(address, dict):
        return str(address.get("peer", ""))
    return ""


def _routes(peer: str, nlris: Any, out: list[Event]) -> list[EvpnRoute]:
    routes: list[EvpnRoute] = []
    if not isinstance(nlris, list):
        out.append(ParseError(peer, "EVPN route list is not a JSON list", _excerpt(str(nlris))))
        return routes
    for nlri in nlris:
        raw = nlri.get("raw") if isinstance(nlri, dict) else None
        if not isinstance(raw, str):
            out.append(ParseError(peer, "EVPN route without 'raw' hex", _excerpt(str(nlri))))
            continue
        try:
            routes.append(decode_hex(raw))
        except CodecError as exc:
            out.append(ParseError(peer, f"route {raw[:40]} does not decode: {exc}", _excerpt(raw)))
    return routes


def _update(peer: str, update: dict[str, Any], out: list[Event]) -> None:
    announce = update.get("announce")
    if announce:
        try:
            attributes = parse_attributes(update.get("attribute", {}))
        except (CodecError, KeyError, TypeError, ValueError, OverflowError) as exc:  # int(Infinity)
            excerpt = _excerpt(str(update.get("attribute")))
            out.append(ParseError(peer, f"attributes not understood: {exc}", excerpt))
            attributes = None
        for family, by_nexthop in announce.items():
            if family != EVPN_FAMILY or not isinstance(by_nexthop, dict):
                continue
            for next_hop, nlris in by_nexthop.items():
                routes = _routes(peer, nlris, out)
                if attributes is None:
                    continue  # reported once above; do not install routes with unknown attributes
                try:
                    nh: IPAddress | None = parse_ip(next_hop)
                except CodecError:
                    nh = None
                out.extend(RouteAnnounce(peer, route, nh, attributes) for route in routes)
    withdraw = update.get("withdraw")
    if withdraw:
        for family, nlris in withdraw.items():
            if family == EVPN_FAMILY:
                out.extend(RouteWithdraw(peer, route) for route in _routes(peer, nlris, out))


def _body(text: Any) -> bytes:
    """ExaBGP's ``"body": "0x..."`` hex of a message (``receive { packets; }``)."""
    if not isinstance(text, str):
        raise CodecError("message body is not a string")
    try:
        return bytes.fromhex(text[2:] if text[:2] in ("0x", "0X") else text)
    except ValueError:
        raise CodecError(f"message body is not hexadecimal: {text[:40]!r}") from None


def _raw_update(peer: str, body_hex: Any, out: list[Event]) -> None:
    """An UPDATE passed on undecoded (the agent's launcher): bgp.update reads it."""
    update = decode_update(_body(body_hex))
    if update.end_of_rib is not None:
        out.append(EndOfRib(peer, update.end_of_rib))
        return
    for error in update.errors:
        out.append(ParseError(peer, error, ""))
    out.extend(RouteWithdraw(peer, route) for route in update.withdrawn)
    nh, attributes = update.next_hop, update.attributes
    out.extend(RouteAnnounce(peer, route, nh, attributes) for route in update.announced)


# A received UPDATE in the ``packets`` form, exactly as ExaBGP 5.0.15 prints it: most lines in a
# burst. Matching it is a quarter of the cost of json.loads; the pattern admits only text that
# is valid JSON with the same peer and body, and anything else takes the general path below.
_RECEIVED_UPDATE = re.compile(
    r'\{ "exabgp": "[^"\\]*", "time": \d+(?:\.\d+)?(?:[eE][+-]?\d+)?, '
    r'"host" : "[^"\\]*", "pid" : \d+, "ppid" : \d+, '
    r'"counter": \d+, "type": "update", "neighbor": \{ "address": \{ "local": "[0-9A-Fa-f.:]*", '
    r'"peer": "([0-9A-Fa-f.:]+)" \}, "asn": \{ "local": \d+, "peer": \d+ \}, '
    r'"router-id": "[0-9A-Fa-f.:]*" , "direction": "receive", '
    r'"message": \{ "category": 2, "header": "0x[0-9A-F]*", "body": "0x([0-9A-F]*)" \}  \} \}'
)

_PACKET_END = '" }  } }'  # how such a line ends: other lines skip the pattern for one comparison


def parse_line(line: str) -> list[Event]:
    text = line.strip()
    fast = _RECEIVED_UPDATE.fullmatch(text) if text.endswith(_PACKET_END) else None
    if fast is not None:
        out: list[Event] = []
        peer = fast.group(1)
        try:
            _raw_update(peer, fast.group(2), out)
        except CodecError as exc:  # odd number of hex digits
            out.append(ParseError(peer, f"update message not understood: {exc}", _excerpt(text)))
        return out
    if text in ("done", "error"):
        return [Ack(text == "done")]
    if not text:
        return []
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        return [ParseError("", f"not JSON: {exc}", _excerpt(text))]
    if not isinstance(doc, dict):
        return [ParseError("", "JSON line is not an object", _excerpt(text))]
    out = []
    kind = doc.get("type")
    neighbor: Any = doc.get("neighbor")  # shape checked by the except below
    peer = _peer_of(neighbor)
    try:
        if kind == "update":
            message = neighbor["message"]
            if "body" in message:
                _raw_update(peer, message["body"], out)
            elif "eor" in message:
                eor = message["eor"]
                out.append(EndOfRib(peer, f"{eor['afi']} {eor['safi']}"))
            elif "update" in message:
                _update(peer, message["update"], out)
        elif kind == "state":
            out.append(PeerState(peer, str(neighbor["state"]), str(neighbor.get("reason", ""))))
        elif kind == "open":
            if neighbor.get("direction") == "receive" and "body" in neighbor["message"]:
                info = decode_open(_body(neighbor["message"]["body"]))
                out.append(PeerOpen(peer, info.restart_time, info.families))
        elif kind == "route-refresh":
            subtype, family = decode_refresh(_body(neighbor["message"]["body"]))
            out.append(RouteRefresh(peer, subtype, family))
        elif kind == "refresh":
            refresh = neighbor["route-refresh"]
            out.append(RouteRefresh(peer, str(refresh["subtype"]), f"{refresh['afi']} {refresh['safi']}"))
        elif kind == "notification":
            if isinstance(doc.get("notification"), str):
                out.append(Notification(peer, doc["notification"]))
            elif "body" in neighbor["message"]:
                out.append(Notification(peer, decode_notification(_body(neighbor["message"]["body"]))))
            else:
                note = neighbor["message"]["notification"]
                note_text = f"{note.get('code')}/{note.get('subcode')} {note.get('data', '')}"
                out.append(Notification(peer, note_text))
        elif kind is None:
            out.append(ParseError(peer, "JSON object without 'type'", _excerpt(text)))
        # other types (open, keepalive, operational, signal) carry nothing the agent needs
    except KeyError as exc:
        out.append(ParseError(peer, f"{kind} message lacks {exc}", _excerpt(text)))
    except CodecError as exc:
        out.append(ParseError(peer, f"{kind} message not understood: {exc}", _excerpt(text)))
    except (TypeError, AttributeError) as exc:  # e.g. a list or null where an object belongs
        out.append(ParseError(peer, f"{kind} message has an unexpected shape: {exc}", _excerpt(text)))
    return out
