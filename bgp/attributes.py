"""Path attributes the agent reads and writes: PMSI Tunnel and extended communities.

ExaBGP hands these over as strings and integers; the agent needs the exact octets (the PMSI
label is the VNI, RFC 8365 §5.1.3; Multicast Flags are not named by ExaBGP), so they are
decoded here from those forms, and encoded for the launcher.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address
from typing import ClassVar, TypeAlias

from bgp.evpn import CodecError, IPAddress, ip_from_bytes, parse_ip

PMSI_INGRESS_REPLICATION = 6


@dataclass(frozen=True, slots=True)
class PmsiTunnel:
    """RFC 6514 §5: Flags (1) | Tunnel Type (1) | MPLS Label (3) | Tunnel Identifier.

    ``label`` is the raw 24-bit field: for VXLAN it carries the VNI (RFC 8365 §5.1.3)."""

    tunnel_type: int
    label: int
    endpoint: IPAddress | None
    flags: int = 0

    @property
    def vni(self) -> int:
        return self.label

    def pack(self) -> bytes:
        tunnel = self.endpoint.packed if self.endpoint is not None else b""
        return struct.pack("!BB", self.flags, self.tunnel_type) + self.label.to_bytes(3, "big") + tunnel

    @classmethod
    def decode(cls, data: bytes) -> PmsiTunnel:
        if len(data) < 5:
            raise CodecError(f"PMSI tunnel attribute of {len(data)} octets (need 5)")
        flags, kind = data[0], data[1]
        label = int.from_bytes(data[2:5], "big")
        tunnel = data[5:]
        endpoint = ip_from_bytes(tunnel) if tunnel else None
        return cls(kind, label, endpoint, flags)


_PMSI_RE = re.compile(r"^pmsi:([a-z0-9]+):(\d{1,10}):(\d{1,10})(?:\((\d{1,10})\))?:(.*)$", re.ASCII)
_PMSI_NAMES = {"ingressreplication": 6, "notunnel": 0}


@lru_cache(maxsize=65536)
def parse_exabgp_pmsi(text: str) -> PmsiTunnel:
    """Parse ExaBGP's rendering, e.g. ``pmsi:ingressreplication:0:631(10100):10.99.0.1``.

    The bracket holds the raw 24-bit label; without it (ExaBGP omits it for a label whose raw
    value is 0, and for tunnel endpoints it cannot print as IPv4) the printed number is the
    label shifted right by 4, so the VNI cannot be recovered and this raises CodecError."""
    match = _PMSI_RE.match(text.strip())
    if match is None:
        raise CodecError(f"PMSI attribute {text!r} not understood")
    name, flags, shifted, raw, tunnel = match.groups()
    kind = _PMSI_NAMES.get(name)
    if kind is None:
        raise CodecError(f"PMSI tunnel type {name!r} not supported")
    if raw is not None:
        label = int(raw)
    elif int(shifted) == 0 and not tunnel.startswith("0x"):
        label = 0  # a hex endpoint drops the bracket whatever the label: 0 there means 0..15
    else:
        raise CodecError(f"PMSI attribute {text!r}: raw label (VNI) missing")
    if label > 0xFFFFFF:
        raise CodecError(f"PMSI label {label} over 24 bits")
    endpoint: IPAddress | None
    if tunnel.startswith("0x"):
        try:
            endpoint = ip_from_bytes(bytes.fromhex(tunnel[2:]))
        except ValueError as exc:
            raise CodecError(f"PMSI tunnel endpoint {tunnel!r} not understood") from exc
    elif tunnel:
        endpoint = parse_ip(tunnel)
    else:
        endpoint = None
    return PmsiTunnel(kind, label, endpoint, int(flags) & 0xFF)


# --------------------------------------------------------------------------- extended communities


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """RFC 4360 §4 (2-octet AS, type 0x00), IPv4 (0x01), RFC 5668 (4-octet AS, 0x02); sub-type 0x02."""

    admin: str  # "65000" or "10.0.0.1"
    assigned: int

    def __str__(self) -> str:
        return f"{self.admin}:{self.assigned}"

    @classmethod
    def from_str(cls, text: str) -> RouteTarget:
        admin, sep, number = text.strip().rpartition(":")
        if not sep or not (number.isascii() and number.isdigit()) or not admin:
            raise CodecError(f"route target {text!r}: expected ADMIN:NUMBER")
        rt = cls(admin, int(number))
        rt.pack()  # validates ranges
        return rt

    def pack(self) -> bytes:
        if "." in self.admin:
            try:
                ip = IPv4Address(self.admin)
            except ValueError as exc:
                raise CodecError(f"route target {self}: bad IPv4 administrator") from exc
            if self.assigned > 0xFFFF:
                raise CodecError(f"route target {self}: number over 65535")
            return struct.pack("!BB4sH", 0x01, 0x02, ip.packed, self.assigned)
        if not (self.admin.isascii() and self.admin.isdigit()):
            raise CodecError(f"route target {self}: bad administrator")
        asn = int(self.admin)
        if asn <= 0xFFFF and self.assigned <= 0xFFFFFFFF:
            return struct.pack("!BBHI", 0x00, 0x02, asn, self.assigned)
        if asn <= 0xFFFFFFFF and self.assigned <= 0xFFFF:
            return struct.pack("!BBIH", 0x02, 0x02, asn, self.assigned)
        raise CodecError(f"route target {self}: out of range")


@dataclass(frozen=True, slots=True)
class Encapsulation:
    """RFC 9012 §4.1 Encapsulation extended community (0x03, 0x0c); tunnel type 8 is VXLAN."""

    tunnel_type: int
    VXLAN: ClassVar[int] = 8

    def pack(self) -> bytes:
        return struct.pack("!BB4xH", 0x03, 0x0C, self.tunnel_type)


@dataclass(frozen=True, slots=True)
class MulticastFlags:
    """RFC 9251 §9.5 Multicast Flags extended community (0x06, 0x09): Flags (2) | Reserved (4).

    RFC bit 15 (the least significant) is IGMP Proxy Support, bit 14 MLD Proxy Support."""

    flags: int
    IGMP_PROXY: ClassVar[int] = 0x0001
    MLD_PROXY: ClassVar[int] = 0x0002

    @property
    def igmp_proxy(self) -> bool:
        return bool(self.flags & self.IGMP_PROXY)

    @property
    def mld_proxy(self) -> bool:
        return bool(self.flags & self.MLD_PROXY)

    def pack(self) -> bytes:
        return struct.pack("!BBH4x", 0x06, 0x09, self.flags)


@dataclass(frozen=True, slots=True)
class OtherCommunity:
    """Any extended community the agent does not interpret, kept as its 8 octets."""

    raw: bytes

    def pack(self) -> bytes:
        return self.raw


ExtCommunity: TypeAlias = RouteTarget | Encapsulation | MulticastFlags | OtherCommunity


def decode_ext_community(raw: bytes) -> ExtCommunity:
    if len(raw) != 8:
        raise CodecError(f"extended community of {len(raw)} octets (want 8)")
    kind, sub = raw[0] & 0x3F, raw[1]  # ignore IANA-authority and transitive bits
    if sub == 0x02 and kind == 0x00:
        _, _, asn, value = struct.unpack("!BBHI", raw)
        return RouteTarget(str(asn), value)
    if sub == 0x02 and kind == 0x01:
        _, _, ip, value16 = struct.unpack("!BB4sH", raw)
        return RouteTarget(str(IPv4Address(ip)), value16)
    if sub == 0x02 and kind == 0x02:
        _, _, asn, value16 = struct.unpack("!BBIH", raw)
        return RouteTarget(str(asn), value16)
    if kind == 0x03 and sub == 0x0C:
        return Encapsulation(struct.unpack_from("!H", raw, 6)[0])
    if kind == 0x06 and sub == 0x09:
        return MulticastFlags(struct.unpack_from("!H", raw, 2)[0])
    return OtherCommunity(raw)


@lru_cache(maxsize=4096)
def decode_ext_community_int(value: int) -> ExtCommunity:
    """ExaBGP's ``{"value": <int>}`` form: the 8 octets as one big-endian integer."""
    if not 0 <= value < 1 << 64:
        raise CodecError(f"extended community value {value} is not 64 bits")
    return decode_ext_community(value.to_bytes(8, "big"))


@dataclass(frozen=True, slots=True)
class PathAttributes:
    """The attributes of one UPDATE that the agent uses; shared by all its routes."""

    route_targets: frozenset[RouteTarget] = frozenset()
    pmsi: PmsiTunnel | None = None
    mcast_flags: MulticastFlags | None = None
    vxlan_encap: bool = False


NO_ATTRIBUTES = PathAttributes()
