"""BGP messages as ExaBGP passes them on with ``receive { packets; }``: OPEN, UPDATE, ROUTE-REFRESH
and NOTIFICATION bodies, decoded by the agent itself.

ExaBGP's own decoding of an UPDATE and its JSON rendering of the result cost it about twice
what reading the message does, and made ExaBGP, not the agent, set the pace at which a leaf
learns its fabric (docs/benchmarks.md, convergence). So the agent's launcher lets ExaBGP skip
them and the agent reads the few parts of an UPDATE it uses: MP_REACH_NLRI / MP_UNREACH_NLRI
for l2vpn/evpn (RFC 4760, RFC 7432 section 7), extended communities (RFC 4360) and the PMSI
tunnel attribute (RFC 6514 section 5). Everything else is skipped by its length.

Errors follow RFC 7606: a malformed attribute the agent uses makes the UPDATE's routes count as
withdrawn ("treat-as-withdraw"), so no route is kept or installed with attributes that were
not understood; an NLRI that does not decode is reported and skipped, the others still count.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from bgp.attributes import (
    NO_ATTRIBUTES,
    MulticastFlags,
    OtherCommunity,
    PathAttributes,
    PmsiTunnel,
    RouteTarget,
    decode_ext_community,
)
from bgp.evpn import CodecError, EvpnRoute, IPAddress, decode_nlri, ip_from_bytes

AFI_L2VPN, SAFI_EVPN = 25, 70
AFI_IPV4, SAFI_UNICAST = 1, 1
ATTR_MP_REACH, ATTR_MP_UNREACH, ATTR_EXT_COMMUNITIES, ATTR_PMSI = 14, 15, 16, 22
FLAG_EXTENDED_LENGTH = 0x10
REFRESH_SUBTYPES = {0: "query", 1: "begin", 2: "end"}
_FAMILIES = {(AFI_L2VPN, SAFI_EVPN): "l2vpn evpn", (AFI_IPV4, SAFI_UNICAST): "ipv4 unicast"}
_U16 = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class Update:
    """What one UPDATE says about EVPN routes. ``errors`` are one line each; when the attributes
    were malformed, the announced routes are in ``withdrawn`` (RFC 7606 treat-as-withdraw)."""

    announced: tuple[EvpnRoute, ...] = ()
    next_hop: IPAddress | None = None
    attributes: PathAttributes = NO_ATTRIBUTES
    withdrawn: tuple[EvpnRoute, ...] = ()
    end_of_rib: str | None = None
    errors: tuple[str, ...] = ()


def family_name(afi: int, safi: int) -> str:
    return _FAMILIES.get((afi, safi), f"afi {afi} safi {safi}")


def _split_nlri(data: bytes, errors: list[str]) -> list[EvpnRoute]:
    """EVPN NLRI one after the other, each type and length octets first."""
    routes: list[EvpnRoute] = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + 2 > end:
            errors.append(f"EVPN NLRI truncated at octet {pos}")
            break
        stop = pos + 2 + data[pos + 1]
        if stop > end:
            errors.append(f"EVPN NLRI of type {data[pos]} runs {stop - end} octets past its attribute")
            break
        try:
            routes.append(decode_nlri(data[pos:stop]))
        except CodecError as exc:
            errors.append(f"route {data[pos:stop].hex()[:40]} does not decode: {exc}")
        pos = stop
    return routes


def _next_hop(raw: bytes) -> IPAddress | None:
    if len(raw) in (4, 16):
        return ip_from_bytes(raw)
    if len(raw) == 32:  # global and link-local: the global one is the VTEP's
        return ip_from_bytes(raw[:16])
    raise CodecError(f"next hop of {len(raw)} octets")


@lru_cache(maxsize=16384)
def path_attributes(communities: bytes, pmsi: bytes | None) -> PathAttributes:
    """The extended communities' and PMSI attribute's values, cached: a fabric sends the same
    few attribute sets again and again. Raises CodecError."""
    if len(communities) % 8:
        raise CodecError(f"extended communities attribute of {len(communities)} octets (not 8 each)")
    rts: list[RouteTarget] = []
    flags: MulticastFlags | None = None
    encap = False
    for i in range(0, len(communities), 8):
        decoded = decode_ext_community(communities[i : i + 8])
        if isinstance(decoded, RouteTarget):
            rts.append(decoded)
        elif isinstance(decoded, MulticastFlags):
            flags = decoded
        elif not isinstance(decoded, OtherCommunity):
            encap = encap or decoded.tunnel_type == decoded.VXLAN
    tunnel = PmsiTunnel.decode(pmsi) if pmsi is not None else None
    if not rts and tunnel is None and flags is None and not encap:
        return NO_ATTRIBUTES
    return PathAttributes(frozenset(rts), tunnel, flags, encap)


def decode_update(body: bytes) -> Update:
    """An UPDATE message body (after the 19-octet header). Never raises: problems are in
    ``errors``."""
    if body == b"\x00\x00\x00\x00":
        return Update(end_of_rib="ipv4 unicast")
    errors: list[str] = []
    try:
        withdrawn_len = _U16.unpack_from(body, 0)[0]
        at = 2 + withdrawn_len
        attrs_len = _U16.unpack_from(body, at)[0]
    except struct.error:
        return Update(errors=("UPDATE shorter than its length fields",))
    pos, end = at + 2, at + 2 + attrs_len
    if end > len(body):
        return Update(errors=(f"UPDATE attributes run {end - len(body)} octets past the message",))
    reach: bytes | None = None
    unreach: bytes | None = None
    communities = b""
    pmsi: bytes | None = None
    while pos < end:
        if pos + 3 > end:
            errors.append(f"path attribute header truncated at octet {pos}")
            break
        flags, code = body[pos], body[pos + 1]
        if flags & FLAG_EXTENDED_LENGTH:
            if pos + 4 > end:
                errors.append(f"path attribute {code} header truncated")
                break
            length, pos = _U16.unpack_from(body, pos + 2)[0], pos + 4
        else:
            length, pos = body[pos + 2], pos + 3
        value = body[pos : pos + length]
        if pos + length > end:
            errors.append(f"path attribute {code} runs {pos + length - end} octets past the attributes")
            break
        pos += length
        if code == ATTR_MP_REACH:
            reach = value
        elif code == ATTR_MP_UNREACH:
            unreach = value
        elif code == ATTR_EXT_COMMUNITIES:
            communities = value
        elif code == ATTR_PMSI:
            pmsi = value
    withdrawn: list[EvpnRoute] = []
    if unreach is not None:
        if len(unreach) < 3:
            errors.append(f"MP_UNREACH_NLRI of {len(unreach)} octets")
        else:
            afi, safi = _U16.unpack_from(unreach, 0)[0], unreach[2]
            if len(unreach) == 3 and reach is None:  # RFC 4724 section 2
                return Update(end_of_rib=family_name(afi, safi))
            if (afi, safi) == (AFI_L2VPN, SAFI_EVPN):
                withdrawn = _split_nlri(unreach[3:], errors)
    announced: list[EvpnRoute] = []
    next_hop: IPAddress | None = None
    if reach is not None:
        try:
            if len(reach) < 5 or len(reach) < 5 + reach[3]:
                raise CodecError(f"MP_REACH_NLRI of {len(reach)} octets")
            afi, safi, nh_len = _U16.unpack_from(reach, 0)[0], reach[2], reach[3]
            if (afi, safi) == (AFI_L2VPN, SAFI_EVPN):
                next_hop = _next_hop(reach[4 : 4 + nh_len])
                announced = _split_nlri(reach[5 + nh_len :], errors)
        except CodecError as exc:
            errors.append(f"MP_REACH_NLRI not understood: {exc}")
    attributes = NO_ATTRIBUTES
    if announced:
        try:
            attributes = path_attributes(communities, pmsi)
        except CodecError as exc:
            errors.append(f"attributes not understood ({exc}): routes treated as withdrawn (RFC 7606)")
            return Update(withdrawn=(*withdrawn, *announced), errors=tuple(errors))
    return Update(tuple(announced), next_hop, attributes, tuple(withdrawn), None, tuple(errors))


CAP_GRACEFUL_RESTART = 64
OPT_CAPABILITIES = 2


@dataclass(frozen=True, slots=True)
class OpenInfo:
    """What a peer's OPEN says about graceful restart (RFC 4724 section 3): its restart time
    and the families whose routes it asks us to keep across a restart; None without the
    capability."""

    restart_time: int | None
    families: frozenset[str] = frozenset()


def decode_open(body: bytes) -> OpenInfo:
    """An OPEN body (after the 19-octet header). Raises CodecError."""
    if len(body) < 10 or len(body) < 10 + body[9]:
        raise CodecError(f"OPEN of {len(body)} octets")
    params, pos = body[10 : 10 + body[9]], 0
    info = OpenInfo(None)
    while pos + 2 <= len(params):
        kind, length = params[pos], params[pos + 1]
        value, pos = params[pos + 2 : pos + 2 + length], pos + 2 + length
        if kind != OPT_CAPABILITIES:
            continue
        at = 0
        while at + 2 <= len(value):
            code, size = value[at], value[at + 1]
            cap, at = value[at + 2 : at + 2 + size], at + 2 + size
            if code == CAP_GRACEFUL_RESTART and len(cap) >= 2:
                families = frozenset(
                    family_name(_U16.unpack_from(cap, i)[0], cap[i + 2]) for i in range(2, len(cap) - 3, 4)
                )
                info = OpenInfo(_U16.unpack_from(cap, 0)[0] & 0x0FFF, families)
    return info


def decode_refresh(body: bytes) -> tuple[str, str]:
    """A ROUTE-REFRESH body (RFC 2918, 7313): (subtype name, family). Raises CodecError."""
    if len(body) != 4:
        raise CodecError(f"ROUTE-REFRESH of {len(body)} octets (want 4)")
    afi, subtype, safi = _U16.unpack_from(body, 0)[0], body[2], body[3]
    return REFRESH_SUBTYPES.get(subtype, str(subtype)), family_name(afi, safi)


def decode_notification(body: bytes) -> str:
    """A NOTIFICATION body as one line: ``code/subcode data``. Raises CodecError."""
    if len(body) < 2:
        raise CodecError(f"NOTIFICATION of {len(body)} octets")
    data = body[2:]
    printable = data.isascii() and data.decode("ascii").isprintable()
    text = data.decode("ascii") if printable else data.hex()
    return f"{body[0]}/{body[1]} {text}".rstrip()
