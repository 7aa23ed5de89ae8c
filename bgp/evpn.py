"""EVPN NLRI values and their wire codec (RFC 7432, RFC 9136, RFC 9251).

Each route type is an immutable value with ``pack`` (type and length octets included) and a
``decode`` that accepts exactly what the RFC layout allows. ``decode_nlri`` raises nothing but
``CodecError``: every reader of peer data can rely on that one exception type.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import ClassVar, TypeAlias

IPAddress: TypeAlias = IPv4Address | IPv6Address


class CodecError(ValueError):
    """Peer or user data that does not follow the wire layout."""


def ip_from_bytes(data: bytes) -> IPAddress:
    if len(data) == 4:
        return IPv4Address(data)
    if len(data) == 16:
        return IPv6Address(data)
    raise CodecError(f"IP address of {len(data)} octets")


@lru_cache(maxsize=16384)
def parse_ip(text: str) -> IPAddress:
    try:
        return ip_address(text)
    except ValueError as exc:
        raise CodecError(f"not an IP address: {text!r}") from exc


# --------------------------------------------------------------------------- qualifiers


@dataclass(frozen=True, slots=True)
class RouteDistinguisher:
    """RFC 4364 §4.2: type 0 (ASN2:nn32), type 1 (IPv4:nn16), type 2 (ASN4:nn16)."""

    raw: bytes  # 8 octets

    @classmethod
    def from_str(cls, text: str) -> RouteDistinguisher:
        admin, sep, number = text.rpartition(":")
        if not sep or not (number.isascii() and number.isdigit()):
            raise CodecError(f"route distinguisher {text!r}: expected ADMIN:NUMBER")
        value = int(number)
        if "." in admin:
            try:
                ip = IPv4Address(admin)
            except ValueError as exc:
                raise CodecError(f"route distinguisher {text!r}: bad IPv4 administrator") from exc
            if value > 0xFFFF:
                raise CodecError(f"route distinguisher {text!r}: number over 65535")
            return cls(struct.pack("!H4sH", 1, ip.packed, value))
        if not (admin.isascii() and admin.isdigit()):
            raise CodecError(f"route distinguisher {text!r}: bad administrator")
        asn = int(admin)
        if asn <= 0xFFFF and value <= 0xFFFFFFFF:
            return cls(struct.pack("!HHI", 0, asn, value))
        if asn <= 0xFFFFFFFF and value <= 0xFFFF:
            return cls(struct.pack("!HIH", 2, asn, value))
        raise CodecError(f"route distinguisher {text!r}: out of range")

    def __str__(self) -> str:
        kind = struct.unpack_from("!H", self.raw)[0]
        if kind == 0:
            _, asn, value = struct.unpack("!HHI", self.raw)
            return f"{asn}:{value}"
        if kind == 1:
            _, ip, value = struct.unpack("!H4sH", self.raw)
            return f"{IPv4Address(ip)}:{value}"
        if kind == 2:
            _, asn, value = struct.unpack("!HIH", self.raw)
            return f"{asn}:{value}"
        return "0x" + self.raw.hex()


@dataclass(frozen=True, slots=True)
class EthernetSegmentId:
    """RFC 7432 §5: 10 octets; all zero for single-homed segments."""

    raw: bytes

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.raw)


ZERO_ESI = EthernetSegmentId(bytes(10))


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# --------------------------------------------------------------------------- reader


class _Reader:
    """Bounds-checked cursor over one NLRI body; every short read is a CodecError."""

    __slots__ = ("data", "name", "pos")

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise CodecError(f"{self.name}: truncated at octet {self.pos} (need {n} more)")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def ip_bits(self, allow_empty: bool, what: str) -> IPAddress | None:
        bits = self.byte()
        if bits == 0 and allow_empty:
            return None
        if bits not in (32, 128):
            raise CodecError(f"{self.name}: {what} length {bits} bits (want 32 or 128)")
        return ip_from_bytes(self.take(bits // 8))

    def done(self) -> None:
        if self.pos != len(self.data):
            raise CodecError(f"{self.name}: {len(self.data) - self.pos} trailing octets")


def _ip_field(ip: IPAddress | None) -> bytes:
    if ip is None:
        return b"\x00"
    return bytes([ip.max_prefixlen]) + ip.packed


def _header(code: int, body: bytes) -> bytes:
    if len(body) > 255:
        raise CodecError(f"route type {code}: body of {len(body)} octets does not fit")
    return bytes([code, len(body)]) + body


# --------------------------------------------------------------------------- route types


@dataclass(frozen=True, slots=True)
class EthernetAutoDiscovery:
    """Type 1 (RFC 7432 §7.1): RD | ESI | Ethernet Tag | MPLS Label (3). Decoded only."""

    CODE: ClassVar[int] = 1
    NAME: ClassVar[str] = "ethernet-auto-discovery"
    rd: RouteDistinguisher
    esi: EthernetSegmentId
    etag: int
    label: int

    @classmethod
    def decode(cls, body: bytes) -> EthernetAutoDiscovery:
        r = _Reader(body, "type-1 route")
        route = cls(RouteDistinguisher(r.take(8)), EthernetSegmentId(r.take(10)), r.u32(), r.u24())
        r.done()
        return route

    def pack(self) -> bytes:
        body = self.rd.raw + self.esi.raw + struct.pack("!I", self.etag) + self.label.to_bytes(3, "big")
        return _header(self.CODE, body)


@dataclass(frozen=True, slots=True)
class MacIpAdvertisement:
    """Type 2 (RFC 7432 §7.2): RD | ESI | Tag | MAC len | MAC | IP len | IP | Label1 [| Label2]."""

    CODE: ClassVar[int] = 2
    NAME: ClassVar[str] = "mac-ip-advertisement"
    rd: RouteDistinguisher
    esi: EthernetSegmentId
    etag: int
    mac: str
    ip: IPAddress | None
    label1: int
    label2: int | None

    @classmethod
    def decode(cls, body: bytes) -> MacIpAdvertisement:
        r = _Reader(body, "type-2 route")
        rd, esi, etag = RouteDistinguisher(r.take(8)), EthernetSegmentId(r.take(10)), r.u32()
        mac_bits = r.byte()
        if mac_bits != 48:
            raise CodecError(f"type-2 route: MAC length {mac_bits} bits (want 48)")
        mac = _mac_str(r.take(6))
        ip = r.ip_bits(True, "IP")
        label1 = r.u24()
        label2 = r.u24() if r.pos < len(body) else None
        r.done()
        return cls(rd, esi, etag, mac, ip, label1, label2)

    def pack(self) -> bytes:
        mac = bytes(int(p, 16) for p in self.mac.split(":"))
        body = self.rd.raw + self.esi.raw + struct.pack("!IB", self.etag, 48) + mac + _ip_field(self.ip)
        body += self.label1.to_bytes(3, "big")
        if self.label2 is not None:
            body += self.label2.to_bytes(3, "big")
        return _header(self.CODE, body)


@dataclass(frozen=True, slots=True)
class InclusiveMulticast:
    """Type 3 IMET (RFC 7432 §7.3): RD | Ethernet Tag | IP length | Originator IP."""

    CODE: ClassVar[int] = 3
    NAME: ClassVar[str] = "inclusive-multicast"
    rd: RouteDistinguisher
    etag: int
    originator: IPAddress

    @classmethod
    def decode(cls, body: bytes) -> InclusiveMulticast:
        r = _Reader(body, "type-3 route")
        rd, etag = RouteDistinguisher(r.take(8)), r.u32()
        originator = r.ip_bits(False, "originator")
        r.done()
        assert originator is not None
        return cls(rd, etag, originator)

    def pack(self) -> bytes:
        return _header(self.CODE, self.rd.raw + struct.pack("!I", self.etag) + _ip_field(self.originator))

    def key(self) -> bytes:
        return self.pack()


@dataclass(frozen=True, slots=True)
class EthernetSegment:
    """Type 4 (RFC 7432 §7.4): RD | ESI | IP length | Originator IP. Decoded only."""

    CODE: ClassVar[int] = 4
    NAME: ClassVar[str] = "ethernet-segment"
    rd: RouteDistinguisher
    esi: EthernetSegmentId
    originator: IPAddress

    @classmethod
    def decode(cls, body: bytes) -> EthernetSegment:
        r = _Reader(body, "type-4 route")
        rd, esi = RouteDistinguisher(r.take(8)), EthernetSegmentId(r.take(10))
        originator = r.ip_bits(False, "originator")
        r.done()
        assert originator is not None
        return cls(rd, esi, originator)

    def pack(self) -> bytes:
        return _header(self.CODE, self.rd.raw + self.esi.raw + _ip_field(self.originator))


@dataclass(frozen=True, slots=True)
class IpPrefix:
    """Type 5 (RFC 9136 §3.1): RD | ESI | Tag | Prefix len | Prefix | Gateway | Label (3).

    Prefix and gateway are both 4 or both 16 octets: the NLRI length tells which."""

    CODE: ClassVar[int] = 5
    NAME: ClassVar[str] = "ip-prefix"
    rd: RouteDistinguisher
    esi: EthernetSegmentId
    etag: int
    prefix: IPv4Network | IPv6Network
    gateway: IPAddress
    label: int

    @classmethod
    def decode(cls, body: bytes) -> IpPrefix:
        if len(body) not in (34, 58):
            raise CodecError(f"type-5 route: {len(body)} octets (want 34 or 58)")
        width = 4 if len(body) == 34 else 16
        r = _Reader(body, "type-5 route")
        rd, esi, etag = RouteDistinguisher(r.take(8)), EthernetSegmentId(r.take(10)), r.u32()
        plen = r.byte()
        if plen > width * 8:
            raise CodecError(f"type-5 route: prefix length {plen} over {width * 8}")
        addr = ip_from_bytes(r.take(width))
        gateway = ip_from_bytes(r.take(width))
        label = r.u24()
        r.done()
        net_cls = IPv4Network if width == 4 else IPv6Network
        return cls(rd, esi, etag, net_cls((addr, plen), strict=False), gateway, label)

    def pack(self) -> bytes:
        body = self.rd.raw + self.esi.raw + struct.pack("!IB", self.etag, self.prefix.prefixlen)
        body += self.prefix.network_address.packed + self.gateway.packed + self.label.to_bytes(3, "big")
        return _header(self.CODE, body)


@dataclass(frozen=True, slots=True)
class SmetFlags:
    """RFC 9251 §9.1 Flags octet, most significant bit first: 4 reserved, IE, v3, v2, v1."""

    raw: int

    IGMP_V1: ClassVar[int] = 0x01
    IGMP_V2: ClassVar[int] = 0x02
    IGMP_V3: ClassVar[int] = 0x04
    EXCLUDE: ClassVar[int] = 0x08  # IE: set = exclude mode (only meaningful with v3)

    @property
    def exclude(self) -> bool:
        return bool(self.raw & self.EXCLUDE)

    def names(self) -> list[str]:
        out = [name for bit, name in ((1, "v1"), (2, "v2"), (4, "v3")) if self.raw & bit]
        out.append("exclude" if self.exclude else "include")
        return out


def _decode_sg(r: _Reader) -> tuple[IPAddress | None, IPAddress, IPAddress]:
    source = r.ip_bits(True, "source")
    group = r.ip_bits(False, "group")
    originator = r.ip_bits(False, "originator")
    assert group is not None and originator is not None
    if group.is_multicast is False:
        raise CodecError(f"group {group} is not a multicast address")
    if source is not None and source.version != group.version:
        raise CodecError(f"source {source} and group {group} differ in address family")
    return source, group, originator


@dataclass(frozen=True, slots=True)
class SelectiveMulticast:
    """Type 6 SMET (RFC 9251 §9.1): RD | Tag | Src len | Src | Grp len | Grp | Orig len | Orig | Flags.

    ``source`` None is ``*``. The route key is everything but Flags."""

    CODE: ClassVar[int] = 6
    NAME: ClassVar[str] = "selective-multicast"
    rd: RouteDistinguisher
    etag: int
    source: IPAddress | None
    group: IPAddress
    originator: IPAddress
    flags: SmetFlags

    @classmethod
    def decode(cls, body: bytes) -> SelectiveMulticast:
        r = _Reader(body, "type-6 route")
        rd, etag = RouteDistinguisher(r.take(8)), r.u32()
        source, group, originator = _decode_sg(r)
        flags = SmetFlags(r.byte())
        r.done()
        return cls(rd, etag, source, group, originator, flags)

    def pack(self) -> bytes:
        body = self.rd.raw + struct.pack("!I", self.etag)
        body += _ip_field(self.source) + _ip_field(self.group) + _ip_field(self.originator)
        return _header(self.CODE, body + bytes([self.flags.raw]))

    def key(self) -> bytes:
        return self.pack()[:-1]


@dataclass(frozen=True, slots=True)
class JoinSynch:
    """Type 7 (RFC 9251 §9.2): RD | ESI | Tag | Src | Grp | Orig | Flags. Decoded only."""

    CODE: ClassVar[int] = 7
    NAME: ClassVar[str] = "join-synch"
    rd: RouteDistinguisher
    esi: EthernetSegmentId
    etag: int
    source: IPAddress | None
    group: IPAddress
    originator: IPAddress
    flags: SmetFlags

    @classmethod
    def decode(cls, body: bytes) -> JoinSynch:
        r = _Reader(body, "type-7 route")
        rd, esi, etag = RouteDistinguisher(r.take(8)), EthernetSegmentId(r.take(10)), r.u32()
        source, group, originator = _decode_sg(r)
        flags = SmetFlags(r.byte())
        r.done()
        return cls(rd, esi, etag, source, group, originator, flags)

    def pack(self) -> bytes:
        body = self.rd.raw + self.esi.raw + struct.pack("!I", self.etag)
        body += _ip_field(self.source) + _ip_field(self.group) + _ip_field(self.originator)
        return _header(self.CODE, body + bytes([self.flags.raw]))


@dataclass(frozen=True, slots=True)
class LeaveSynch:
    """Type 8 (RFC 9251 §9.3): as type 7, then Leave Group Synchronization sequence number (4)
    and Maximum Response Time (1) before Flags. Decoded only."""

    CODE: ClassVar[int] = 8
    NAME: ClassVar[str] = "leave-synch"
    rd: RouteDistinguisher
    esi: EthernetSegmentId
    etag: int
    source: IPAddress | None
    group: IPAddress
    originator: IPAddress
    sequence: int
    max_response_time: int
    flags: SmetFlags

    @classmethod
    def decode(cls, body: bytes) -> LeaveSynch:
        r = _Reader(body, "type-8 route")
        rd, esi, etag = RouteDistinguisher(r.take(8)), EthernetSegmentId(r.take(10)), r.u32()
        source, group, originator = _decode_sg(r)
        sequence, mrt, flags = r.u32(), r.byte(), SmetFlags(r.byte())
        r.done()
        return cls(rd, esi, etag, source, group, originator, sequence, mrt, flags)

    def pack(self) -> bytes:
        body = self.rd.raw + self.esi.raw + struct.pack("!I", self.etag)
        body += _ip_field(self.source) + _ip_field(self.group) + _ip_field(self.originator)
        body += struct.pack("!IBB", self.sequence, self.max_response_time, self.flags.raw)
        return _header(self.CODE, body)


EvpnRoute: TypeAlias = (
    EthernetAutoDiscovery
    | MacIpAdvertisement
    | InclusiveMulticast
    | EthernetSegment
    | IpPrefix
    | SelectiveMulticast
    | JoinSynch
    | LeaveSynch
)

_DECODERS = {
    cls.CODE: cls.decode
    for cls in (
        EthernetAutoDiscovery,
        MacIpAdvertisement,
        InclusiveMulticast,
        EthernetSegment,
        IpPrefix,
        SelectiveMulticast,
        JoinSynch,
        LeaveSynch,
    )
}


def decode_nlri(data: bytes) -> EvpnRoute:
    """Decode one NLRI, type and length octets first, with nothing after it."""
    if len(data) < 2:
        raise CodecError(f"EVPN NLRI of {len(data)} octets: no type and length")
    code, length = data[0], data[1]
    if len(data) != length + 2:
        raise CodecError(f"EVPN NLRI length octet says {length}, {len(data) - 2} octets follow")
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise CodecError(f"EVPN route type {code} is not known")
    return decoder(data[2:])


def decode_hex(text: str) -> EvpnRoute:
    """Decode ExaBGP's ``raw`` hex (type and length octets first)."""
    cleaned = text.strip()
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        data = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise CodecError(f"not hexadecimal: {text[:40]!r}") from exc
    return decode_nlri(data)
