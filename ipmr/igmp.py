"""IGMP (RFC 2236, RFC 3376) and MLD (RFC 2710, RFC 3810) messages, parsed and built with ``struct``.

Pure: bytes in, values out, no sockets. The IPMR driver reads host membership reports from
its raw IGMP and ICMPv6 sockets and turns them into edge joins and leaves; this module says
what one message means, as a list of :class:`GroupChange` values, and builds the queries the
driver sends. Parsers never raise: anything malformed comes back as a :class:`ParseError`
with a one-line reason the caller can log or count.

What a report means here. The kernel MFC forwards by (S,G) or (*,G) entry and cannot express
"everything from G except S", so IGMPv3/MLDv2 source filtering is reduced to joins and
leaves of (S,G) and (*,G):

* MODE_IS_EXCLUDE / CHANGE_TO_EXCLUDE_MODE: join (*,G). The exclude list is not modelled;
  excluded sources are forwarded anyway (the host filters them itself).
* MODE_IS_INCLUDE / ALLOW_NEW_SOURCES with sources: join (S,G) for each source.
* CHANGE_TO_INCLUDE_MODE with sources: join (S,G) for each source, then leave (*,G).
* CHANGE_TO_INCLUDE_MODE or MODE_IS_INCLUDE with no sources: leave (*,G).
* BLOCK_OLD_SOURCES: leave (S,G) for each source.
* IGMPv1/v2 report, MLDv1 report: join (*,G); IGMPv2 leave, MLDv1 done: leave (*,G).

Records for a group that is not multicast, records of an unknown type, and sources that are
unspecified or multicast are skipped (RFC 3376 §4.2.12 asks for unknown records to be
ignored; an (S,G) with S = 0.0.0.0 would read as (*,G) in the MFC). A report sent from the
unspecified address (allowed for IGMPv3 and MLDv2 before a host has an address) has sender
None. Nothing here checks TTL, hop limit or the router alert option, nor that a v1/v2
report was sent to its own group: that is policy for the caller.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from bgp.evpn import IPAddress

__all__ = [
    "GroupChange",
    "ParseError",
    "Query",
    "Report",
    "checksum",
    "igmp_query",
    "is_link_local_group",
    "mld_query",
    "parse_igmp",
    "parse_mld",
]

IPPROTO_IGMP: Final = 2

# IGMP types
IGMP_QUERY: Final = 0x11
IGMP_V1_REPORT: Final = 0x12
IGMP_V2_REPORT: Final = 0x16
IGMP_V2_LEAVE: Final = 0x17
IGMP_V3_REPORT: Final = 0x22

# ICMPv6 types for MLD
MLD_QUERY: Final = 130
MLD_V1_REPORT: Final = 131
MLD_V1_DONE: Final = 132
MLD_V2_REPORT: Final = 143

# IGMPv3 / MLDv2 group record types
MODE_IS_INCLUDE: Final = 1
MODE_IS_EXCLUDE: Final = 2
CHANGE_TO_INCLUDE_MODE: Final = 3
CHANGE_TO_EXCLUDE_MODE: Final = 4
ALLOW_NEW_SOURCES: Final = 5
BLOCK_OLD_SOURCES: Final = 6

DEFAULT_QRV: Final = 2  # robustness variable sent in v3/v2 queries
DEFAULT_QQIC: Final = 125  # query interval (s) sent in v3/v2 queries (RFC 3376 §8.2 default)

_IPV4_HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
_IGMP_V2: Final = struct.Struct("!BBH4s")  # type, max resp, checksum, group
_IGMP_V3_QUERY: Final = struct.Struct("!BBH4sBBH")  # ... flags/QRV, QQIC, number of sources
_IGMP_V3_REPORT_HEAD: Final = struct.Struct("!BBHHH")  # type, reserved, checksum, reserved, n
_IGMP_V3_RECORD: Final = struct.Struct("!BBH4s")  # type, aux words, n sources, group
_MLD_V1: Final = struct.Struct("!BBHHH16s")  # type, code, checksum, max delay, reserved, group
_MLD_V2_QUERY: Final = struct.Struct("!BBHHH16sBBH")  # ... flags/QRV, QQIC, number of sources
_MLD_V2_REPORT_HEAD: Final = struct.Struct("!BBHHH")
_MLD_V2_RECORD: Final = struct.Struct("!BBH16s")

_V1_QUERY_MAX_RESPONSE: Final = 10.0  # RFC 2236 §4: a v1 query counts as max resp 10 s
_ANY4: Final = IPv4Address(0)
_ANY6: Final = IPv6Address(0)


@dataclass(frozen=True, slots=True)
class GroupChange:
    """One join or leave: ``source`` None means any source, i.e. (*,G)."""

    join: bool
    source: IPAddress | None
    group: IPAddress


@dataclass(frozen=True, slots=True)
class Report:
    """A membership report (or leave/done): ``version`` is 1/2/3 for IGMP, 1/2 for MLD."""

    sender: IPAddress | None
    version: int
    changes: tuple[GroupChange, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """A membership query from another querier; ``group`` None is a general query.

    Sources of a group-and-source-specific query are not kept.
    """

    sender: IPAddress | None
    version: int
    group: IPAddress | None
    max_response: float  # seconds


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why a message was not understood (one line, for logs and counters)."""

    reason: str


def checksum(data: bytes) -> int:
    """The internet checksum (RFC 1071) of ``data``; 0 over data that carries a correct one."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def is_link_local_group(group: IPAddress) -> bool:
    """True for groups a router never forwards: 224.0.0.0/24, and IPv6 multicast of link scope
    or narrower (ff02::/16 and the like, e.g. ff12::/16; also ff01::/16 interface-local).

    The driver ignores reports for these groups: the kernel does not route them anyway.
    """
    packed = group.packed
    if isinstance(group, IPv4Address):
        return packed[:3] == b"\xe0\x00\x00"
    return packed[0] == 0xFF and (packed[1] & 0x0F) <= 2


def _sender(addr: IPAddress | None) -> IPAddress | None:
    if addr is None or addr.is_unspecified:
        return None
    return addr


def _usable_source(addr: IPAddress) -> bool:
    return not (addr.is_unspecified or addr.is_multicast)


def _record_changes(
    kind: int, group: IPAddress, sources: list[IPAddress], changes: list[GroupChange]
) -> None:
    """Append what one v3/MLDv2 group record means (see the module docstring)."""
    if not group.is_multicast:
        return
    usable = [s for s in sources if _usable_source(s)]
    if kind in (MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE_MODE):
        changes.append(GroupChange(True, None, group))
    elif kind in (MODE_IS_INCLUDE, ALLOW_NEW_SOURCES):
        changes.extend(GroupChange(True, s, group) for s in usable)
        if kind == MODE_IS_INCLUDE and not sources:
            changes.append(GroupChange(False, None, group))
    elif kind == CHANGE_TO_INCLUDE_MODE:
        changes.extend(GroupChange(True, s, group) for s in usable)
        changes.append(GroupChange(False, None, group))
    elif kind == BLOCK_OLD_SOURCES:
        changes.extend(GroupChange(False, s, group) for s in usable)


# --------------------------------------------------------------------------- IGMP


def _igmpv3_max_response(code: int) -> float:
    """RFC 3376 §4.1.1: codes from 128 on are 1|exp(3)|mant(4), (mant | 0x10) << (exp + 3)."""
    if code < 128:
        return code / 10
    return (((code & 0x0F) | 0x10) << (((code >> 4) & 0x07) + 3)) / 10


def parse_igmp(packet: bytes) -> Report | Query | ParseError:
    """A whole IPv4 packet from the raw IGMP socket (header, options, IGMP message)."""
    if len(packet) < _IPV4_HEADER.size:
        return ParseError(f"truncated IP header ({len(packet)} bytes)")
    ver_ihl, _tos, total, _id, _frag, _ttl, proto, _sum, src, _dst = _IPV4_HEADER.unpack_from(packet)
    if ver_ihl >> 4 != 4:
        return ParseError(f"not IPv4 (version {ver_ihl >> 4})")
    header = (ver_ihl & 0x0F) * 4
    if header < _IPV4_HEADER.size:
        return ParseError(f"bad IP header length {header}")
    if proto != IPPROTO_IGMP:
        return ParseError(f"not IGMP (IP protocol {proto})")
    if total < header:
        return ParseError(f"bad IP total length {total}")
    if total > len(packet):
        return ParseError(f"truncated packet ({len(packet)} of {total} bytes)")
    message = packet[header:total]
    if len(message) < _IGMP_V2.size:
        return ParseError(f"truncated IGMP message ({len(message)} bytes)")
    if checksum(message) != 0:
        return ParseError("bad IGMP checksum")
    return _parse_igmp_message(message, _sender(IPv4Address(src)))


def _parse_igmp_message(message: bytes, sender: IPAddress | None) -> Report | Query | ParseError:
    kind, code, _sum, raw_group = _IGMP_V2.unpack_from(message)
    group = IPv4Address(raw_group)
    if kind == IGMP_QUERY:
        return _parse_igmp_query(message, code, group, sender)
    if kind in (IGMP_V1_REPORT, IGMP_V2_REPORT, IGMP_V2_LEAVE):
        if not group.is_multicast:
            return ParseError(f"IGMP type {kind:#x} for non-multicast group {group}")
        version = 1 if kind == IGMP_V1_REPORT else 2
        return Report(sender, version, (GroupChange(kind != IGMP_V2_LEAVE, None, group),))
    if kind == IGMP_V3_REPORT:
        return _parse_igmpv3_report(message, sender)
    return ParseError(f"unknown IGMP type {kind:#x}")


def _parse_igmp_query(
    message: bytes, code: int, group: IPv4Address, sender: IPAddress | None
) -> Query | ParseError:
    query_group = None if group.is_unspecified else group
    if query_group is not None and not query_group.is_multicast:
        return ParseError(f"IGMP query for non-multicast group {group}")
    size = len(message)
    if size == _IGMP_V2.size:  # RFC 3376 §7.1: 8 bytes is v1 (code 0) or v2
        if code == 0:
            return Query(sender, 1, query_group, _V1_QUERY_MAX_RESPONSE)
        return Query(sender, 2, query_group, code / 10)
    if size < _IGMP_V3_QUERY.size:
        return ParseError(f"IGMP query of {size} bytes")
    nsources = _IGMP_V3_QUERY.unpack_from(message)[6]
    if size < _IGMP_V3_QUERY.size + 4 * nsources:
        return ParseError(f"truncated IGMPv3 query ({nsources} sources in {size} bytes)")
    return Query(sender, 3, query_group, _igmpv3_max_response(code))


def _parse_igmpv3_report(message: bytes, sender: IPAddress | None) -> Report | ParseError:
    size = len(message)
    if size < _IGMP_V3_REPORT_HEAD.size:
        return ParseError(f"truncated IGMPv3 report ({size} bytes)")
    nrecords = _IGMP_V3_REPORT_HEAD.unpack_from(message)[4]
    offset = _IGMP_V3_REPORT_HEAD.size
    changes: list[GroupChange] = []
    for index in range(nrecords):
        if offset + _IGMP_V3_RECORD.size > size:
            return ParseError(f"truncated IGMPv3 report (record {index + 1} of {nrecords})")
        kind, aux_words, nsources, raw_group = _IGMP_V3_RECORD.unpack_from(message, offset)
        offset += _IGMP_V3_RECORD.size
        end = offset + 4 * nsources + 4 * aux_words
        if end > size:
            return ParseError(f"truncated IGMPv3 report (record {index + 1} of {nrecords})")
        sources: list[IPAddress] = [
            IPv4Address(message[at : at + 4]) for at in range(offset, offset + 4 * nsources, 4)
        ]
        _record_changes(kind, IPv4Address(raw_group), sources, changes)
        offset = end
    return Report(sender, 3, tuple(changes))


def _igmpv3_code(tenths: int) -> int:
    """Max resp code for a time in 1/10 s; times between two floating codes round down."""
    if tenths < 128:
        return tenths
    exp = 0
    while tenths >> (exp + 3) > 0x1F:
        exp += 1
    return 0x80 | exp << 4 | (tenths >> (exp + 3)) & 0x0F


def _in_units(max_response: float, per_second: int, high: int) -> int:
    """``max_response`` seconds as a whole number of 1/``per_second`` s units in 1..high."""
    scaled = max_response * per_second
    if not math.isfinite(scaled):
        raise ValueError(f"max response {max_response} is not a usable number of seconds")
    value = round(scaled)
    if not 1 <= value <= high:
        raise ValueError(f"max response {max_response} s outside {1 / per_second:g}..{high / per_second:g} s")
    return value


def igmp_query(group: IPv4Address | None = None, version: int = 3, max_response: float = 10.0) -> bytes:
    """An IGMP membership query (the message only; the kernel adds the IP header).

    Version 1: 8 bytes, code 0, general only. Version 2: 8 bytes, max response in 1/10 s
    (0.1..25.5 s). Version 3: 12 bytes with S 0, QRV 2, QQIC 125 and no sources; the max
    response (0.1..3174.4 s) uses the floating-point code above 12.7 s, rounded down to a
    representable value. ``group`` None is a general query. ValueError for anything else.
    """
    if group is None:
        group = _ANY4
    elif not isinstance(group, IPv4Address) or not group.is_multicast:
        raise ValueError(f"IGMP query group {group} is not an IPv4 multicast group")
    if version == 1:
        if not group.is_unspecified:
            raise ValueError("IGMPv1 has no group-specific queries")
        message = _IGMP_V2.pack(IGMP_QUERY, 0, 0, group.packed)
    elif version == 2:
        code = _in_units(max_response, 10, 0xFF)
        message = _IGMP_V2.pack(IGMP_QUERY, code, 0, group.packed)
    elif version == 3:
        code = _igmpv3_code(_in_units(max_response, 10, 0x1F << 10))
        message = _IGMP_V3_QUERY.pack(IGMP_QUERY, code, 0, group.packed, DEFAULT_QRV, DEFAULT_QQIC, 0)
    else:
        raise ValueError(f"IGMP version {version} (1, 2 or 3)")
    return message[:2] + checksum(message).to_bytes(2, "big") + message[4:]


# --------------------------------------------------------------------------- MLD


def _mldv2_max_response(code: int) -> float:
    """RFC 3810 §5.1.3: codes from 32768 on are 1|exp(3)|mant(12), (mant | 0x1000) << (exp + 3)."""
    if code < 0x8000:
        return code / 1000
    return (((code & 0x0FFF) | 0x1000) << (((code >> 12) & 0x07) + 3)) / 1000


def _mldv2_code(millis: int) -> int:
    if millis < 0x8000:
        return millis
    exp = 0
    while millis >> (exp + 3) > 0x1FFF:
        exp += 1
    return 0x8000 | exp << 12 | (millis >> (exp + 3)) & 0x0FFF


def parse_mld(icmp6: bytes, sender: IPv6Address | None = None) -> Report | Query | ParseError:
    """An ICMPv6 message from the raw ICMPv6 socket (no IPv6 header; the kernel has checked
    the checksum). ``sender`` is the source address from ``recvfrom``, if the caller has it.
    """
    size = len(icmp6)
    if size < 4:
        return ParseError(f"truncated ICMPv6 message ({size} bytes)")
    kind = icmp6[0]
    who = _sender(sender)
    if kind == MLD_QUERY:
        return _parse_mld_query(icmp6, who)
    if kind in (MLD_V1_REPORT, MLD_V1_DONE):
        if size < _MLD_V1.size:
            return ParseError(f"truncated MLD message ({size} bytes)")
        group = IPv6Address(icmp6[8:24])
        if not group.is_multicast:
            return ParseError(f"MLD type {kind} for non-multicast group {group}")
        return Report(who, 1, (GroupChange(kind == MLD_V1_REPORT, None, group),))
    if kind == MLD_V2_REPORT:
        return _parse_mldv2_report(icmp6, who)
    return ParseError(f"not an MLD message (ICMPv6 type {kind})")


def _parse_mld_query(icmp6: bytes, sender: IPAddress | None) -> Query | ParseError:
    size = len(icmp6)
    if size < _MLD_V1.size:
        return ParseError(f"truncated MLD query ({size} bytes)")
    _type, _code, _sum, max_code, _res, raw_group = _MLD_V1.unpack_from(icmp6)
    group = IPv6Address(raw_group)
    query_group = None if group.is_unspecified else group
    if query_group is not None and not query_group.is_multicast:
        return ParseError(f"MLD query for non-multicast group {group}")
    if size == _MLD_V1.size:  # RFC 3810 §8.1: 24 bytes is v1, 28 or more is v2
        return Query(sender, 1, query_group, max_code / 1000)
    if size < _MLD_V2_QUERY.size:
        return ParseError(f"MLD query of {size} bytes")
    nsources = _MLD_V2_QUERY.unpack_from(icmp6)[8]
    if size < _MLD_V2_QUERY.size + 16 * nsources:
        return ParseError(f"truncated MLDv2 query ({nsources} sources in {size} bytes)")
    return Query(sender, 2, query_group, _mldv2_max_response(max_code))


def _parse_mldv2_report(icmp6: bytes, sender: IPAddress | None) -> Report | ParseError:
    size = len(icmp6)
    if size < _MLD_V2_REPORT_HEAD.size:
        return ParseError(f"truncated MLDv2 report ({size} bytes)")
    nrecords = _MLD_V2_REPORT_HEAD.unpack_from(icmp6)[4]
    offset = _MLD_V2_REPORT_HEAD.size
    changes: list[GroupChange] = []
    for index in range(nrecords):
        if offset + _MLD_V2_RECORD.size > size:
            return ParseError(f"truncated MLDv2 report (record {index + 1} of {nrecords})")
        kind, aux_words, nsources, raw_group = _MLD_V2_RECORD.unpack_from(icmp6, offset)
        offset += _MLD_V2_RECORD.size
        end = offset + 16 * nsources + 4 * aux_words
        if end > size:
            return ParseError(f"truncated MLDv2 report (record {index + 1} of {nrecords})")
        sources: list[IPAddress] = [
            IPv6Address(icmp6[at : at + 16]) for at in range(offset, offset + 16 * nsources, 16)
        ]
        _record_changes(kind, IPv6Address(raw_group), sources, changes)
        offset = end
    return Report(sender, 2, tuple(changes))


def mld_query(group: IPv6Address | None = None, version: int = 2, max_response: float = 10.0) -> bytes:
    """An MLD query as an ICMPv6 message with checksum 0 (the kernel fills it in on raw
    ICMPv6 sockets). Version 1: 24 bytes, max response delay in ms (0.001..65.535 s).
    Version 2: 28 bytes, S 0, QRV 2, QQIC 125, no sources; the max response
    (0.001..8387.584 s) uses the floating-point code from 32.768 s, rounded down.
    ``group`` None is a general query. ValueError for anything else.
    """
    if group is None:
        group = _ANY6
    elif not isinstance(group, IPv6Address) or not group.is_multicast:
        raise ValueError(f"MLD query group {group} is not an IPv6 multicast group")
    if version == 1:
        millis = _in_units(max_response, 1000, 0xFFFF)
        return _MLD_V1.pack(MLD_QUERY, 0, 0, millis, 0, group.packed)
    if version == 2:
        code = _mldv2_code(_in_units(max_response, 1000, 0x1FFF << 10))
        return _MLD_V2_QUERY.pack(MLD_QUERY, 0, 0, code, 0, group.packed, DEFAULT_QRV, DEFAULT_QQIC, 0)
    raise ValueError(f"MLD version {version} (1 or 2)")
