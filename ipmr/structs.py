"""IPMR / IP6MR socket-option structs and kernel upcalls, packed and parsed with ``struct``.

Pure: bytes in, values out, no sockets. The multicast routing API of Linux is a handful of
``setsockopt`` calls on a raw IGMP (IPv4) or ICMPv6 (IPv6) socket whose arguments are fixed C
structs, and a few fixed C structs the kernel writes to that same socket ("upcalls") when a
packet arrives without a forwarding entry. Nothing in Python's standard library or pyroute2
packs them, and the layouts are small enough to keep exact here, testable without root.

Layouts follow include/uapi/linux/mroute.h, mroute6.h and in6.h. They were checked against
the headers installed on the development machine (linux-libc-dev for kernel 6.18) by compiling
a C program that printed ``sizeof`` and ``offsetof`` of every field used here, on x86-64:

* ``struct vifctl`` 16 bytes: vifi u16 @0, flags u8 @2, threshold u8 @3, rate_limit u32 @4,
  union {lcl_addr, lcl_ifindex} @8, rmt_addr @12.
* ``struct mfcctl`` 60 bytes: origin @0, mcastgrp @4, parent u16 @8, ttls[32] @10, two pad
  bytes, pkt_cnt @44, byte_cnt @48, wrong_if @52, expire @56.
* ``struct igmpmsg`` 20 bytes: unused1/2 @0, msgtype @8, mbz @9, vif @10, vif_hi @11,
  src @12, dst @16.
* ``struct mif6ctl`` 12 bytes: mifi u16 @0, flags u8 @2, threshold u8 @3, pifi **u16** @4,
  two pad bytes, rate_limit u32 @8.
* ``struct mf6cctl`` 92 bytes: sockaddr_in6 origin @0 (28 bytes), mcastgrp @28, parent u16
  @56, two pad bytes, ``struct if_set`` @60 (IF_SETSIZE 256 bits = 8 x u32; IF_SET puts
  mif n in word n/32, bit n%32).
* ``struct mrt6msg`` 40 bytes: mbz u8 @0, msgtype u8 @1, mif u16 @2, pad u32 @4, src @8,
  dst @24. ``struct sockaddr_in6``: family u16 @0 (AF_INET6 = 10), port @2, flowinfo @4,
  addr @8, scope_id @24.

Integers in these structs are host byte order (they are ioctl-style arguments, not wire
data); addresses are network order, as ``IPv4Address.packed`` gives them.

Encoders raise ``ValueError`` for arguments the kernel can never accept (a VIF/MIF index
outside 0..31, a field value that does not fit its C type); decoders never raise and return
``None`` for anything that is not a well-formed upcall.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from bgp.evpn import IPAddress

__all__ = [
    "IGMPMSG_NOCACHE",
    "IGMPMSG_WHOLEPKT",
    "IGMPMSG_WRONGVIF",
    "IGMPMSG_WRVIFWHOLE",
    "MAXMIFS",
    "MAXVIFS",
    "MRT6MSG_NOCACHE",
    "MRT6MSG_WHOLEPKT",
    "MRT6MSG_WRMIFWHOLE",
    "MRT6MSG_WRONGMIF",
    "MRT6_ADD_MFC",
    "MRT6_ADD_MIF",
    "MRT6_ASSERT",
    "MRT6_DEL_MFC",
    "MRT6_DEL_MIF",
    "MRT6_DONE",
    "MRT6_FLUSH",
    "MRT6_FLUSH_MFC",
    "MRT6_FLUSH_MFC_STATIC",
    "MRT6_FLUSH_MIFS",
    "MRT6_FLUSH_MIFS_STATIC",
    "MRT6_INIT",
    "MRT6_PIM",
    "MRT6_TABLE",
    "MRT6_VERSION",
    "MRT_ADD_MFC",
    "MRT_ADD_VIF",
    "MRT_ASSERT",
    "MRT_DEL_MFC",
    "MRT_DEL_VIF",
    "MRT_DONE",
    "MRT_FLUSH",
    "MRT_FLUSH_MFC",
    "MRT_FLUSH_MFC_STATIC",
    "MRT_FLUSH_VIFS",
    "MRT_FLUSH_VIFS_STATIC",
    "MRT_INIT",
    "MRT_PIM",
    "MRT_TABLE",
    "MRT_VERSION",
    "RT_TABLE_DEFAULT",
    "VIFF_REGISTER",
    "VIFF_TUNNEL",
    "VIFF_USE_IFINDEX",
    "Upcall",
    "is_upcall4",
    "mf6cctl",
    "mfcctl",
    "mif6ctl",
    "mif6ctl_delete",
    "parse_igmpmsg",
    "parse_mrt6msg",
    "vifctl",
    "vifctl_delete",
]

# mroute.h: setsockopt names at level IPPROTO_IP on the raw IGMP socket
MRT_INIT: Final = 200
MRT_DONE: Final = 201
MRT_ADD_VIF: Final = 202
MRT_DEL_VIF: Final = 203
MRT_ADD_MFC: Final = 204
MRT_DEL_MFC: Final = 205
MRT_VERSION: Final = 206
MRT_ASSERT: Final = 207
MRT_PIM: Final = 208
MRT_TABLE: Final = 209
MRT_FLUSH: Final = 212
# MRT_FLUSH flags (an int argument)
MRT_FLUSH_MFC: Final = 1
MRT_FLUSH_MFC_STATIC: Final = 2
MRT_FLUSH_VIFS: Final = 4
MRT_FLUSH_VIFS_STATIC: Final = 8

# mroute6.h: the same numbers at level IPPROTO_IPV6 on the raw ICMPv6 socket
MRT6_INIT: Final = 200
MRT6_DONE: Final = 201
MRT6_ADD_MIF: Final = 202
MRT6_DEL_MIF: Final = 203
MRT6_ADD_MFC: Final = 204
MRT6_DEL_MFC: Final = 205
MRT6_VERSION: Final = 206
MRT6_ASSERT: Final = 207
MRT6_PIM: Final = 208
MRT6_TABLE: Final = 209
MRT6_FLUSH: Final = 212
MRT6_FLUSH_MFC: Final = 1
MRT6_FLUSH_MFC_STATIC: Final = 2
MRT6_FLUSH_MIFS: Final = 4
MRT6_FLUSH_MIFS_STATIC: Final = 8

MAXVIFS: Final = 32
MAXMIFS: Final = 32

VIFF_TUNNEL: Final = 0x1
VIFF_REGISTER: Final = 0x4
VIFF_USE_IFINDEX: Final = 0x8  # vifc_lcl_ifindex instead of vifc_lcl_addr names the device

# igmpmsg.im_msgtype
IGMPMSG_NOCACHE: Final = 1  # a packet arrived on a VIF and no MFC entry matched
IGMPMSG_WRONGVIF: Final = 2  # an (S,G) packet arrived on a VIF other than the entry's parent
IGMPMSG_WHOLEPKT: Final = 3  # PIM register: the whole packet follows
IGMPMSG_WRVIFWHOLE: Final = 4  # WRONGVIF with the whole packet (MRT_PIM mode)

# mrt6msg.im6_msgtype
MRT6MSG_NOCACHE: Final = 1
MRT6MSG_WRONGMIF: Final = 2
MRT6MSG_WHOLEPKT: Final = 3
MRT6MSG_WRMIFWHOLE: Final = 4

RT_TABLE_DEFAULT: Final = 253  # the table IPMR uses unless MRT_TABLE says otherwise

AF_INET6: Final = 10  # Linux value, spelled out so the codec does not depend on the host

_VIFCTL: Final = struct.Struct("=HBBIi4s")  # 16
_MFCCTL: Final = struct.Struct("=4s4sH32s2xIIIi")  # 60
_MIF6CTL: Final = struct.Struct("=HBBH2xI")  # 12
_SOCKADDR_IN6: Final = struct.Struct("=HHI16sI")  # 28
_MF6CCTL_TAIL: Final = struct.Struct("=H2x8I")  # parent, pad, if_set: 2 + 2 + 32
_IGMPMSG: Final = struct.Struct("=IIBBBB4s4s")  # 20
_MRT6MSG: Final = struct.Struct("=BBHI16s16s")  # 40

_U8_MAX: Final = 0xFF
_U16_MAX: Final = 0xFFFF
_U32_MAX: Final = 0xFFFF_FFFF
_I32_MAX: Final = 0x7FFF_FFFF


def _check_index(what: str, index: int, limit: int) -> int:
    if not 0 <= index < limit:
        raise ValueError(f"{what} {index} outside 0..{limit - 1}")
    return index


def _check_range(what: str, value: int, high: int) -> int:
    if not 0 <= value <= high:
        raise ValueError(f"{what} {value} outside 0..{high}")
    return value


# --------------------------------------------------------------------------- IPv4


def vifctl(vifi: int, ifindex: int, threshold: int = 1, rate_limit: int = 0) -> bytes:
    """``struct vifctl`` for MRT_ADD_VIF: VIF ``vifi`` on the device with ``ifindex``.

    VIFF_USE_IFINDEX is always set, so the union holds the ifindex and the remote address
    (only for the obsolete IPIP tunnel VIFs) stays zero. ``threshold`` is the minimum TTL a
    packet needs to leave through this VIF (1: everything that may be forwarded at all).
    """
    _check_index("VIF index", vifi, MAXVIFS)
    _check_range("ifindex", ifindex, _I32_MAX)
    _check_range("threshold", threshold, _U8_MAX)
    _check_range("rate limit", rate_limit, _U32_MAX)
    return _VIFCTL.pack(vifi, VIFF_USE_IFINDEX, threshold, rate_limit, ifindex, bytes(4))


def vifctl_delete(vifi: int) -> bytes:
    """``struct vifctl`` for MRT_DEL_VIF: the kernel wants the whole struct, reads only vifi."""
    _check_index("VIF index", vifi, MAXVIFS)
    return _VIFCTL.pack(vifi, 0, 0, 0, 0, bytes(4))


def _ttls(oifs: Iterable[int], limit: int) -> bytearray:
    ttls = bytearray(limit)
    for oif in oifs:
        ttls[_check_index("outgoing VIF index", oif, limit)] = 1
    return ttls


def mfcctl(origin: IPv4Address, group: IPv4Address, parent: int, oifs: Iterable[int]) -> bytes:
    """``struct mfcctl`` for MRT_ADD_MFC / MRT_DEL_MFC.

    ``origin`` 0.0.0.0 is a (*,G) entry. ``parent`` is the VIF packets must arrive on; each
    VIF in ``oifs`` gets TTL threshold 1 (forward), every other VIF 0 (do not forward). The
    kernel skips the parent VIF when forwarding an (S,G) entry but not a (*,G) one, so the
    caller decides whether the parent belongs in ``oifs``. Counters are left zero (the
    kernel ignores them on input).
    """
    if not isinstance(origin, IPv4Address) or not isinstance(group, IPv4Address):
        raise ValueError("mfcctl needs IPv4 origin and group")
    _check_index("parent VIF index", parent, MAXVIFS)
    ttls = _ttls(oifs, MAXVIFS)
    return _MFCCTL.pack(origin.packed, group.packed, parent, bytes(ttls), 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Upcall:
    """A kernel message on the mroute socket about one data packet.

    ``kind`` is the IGMPMSG_* or MRT6MSG_* value, ``vif`` the VIF/MIF the packet arrived
    on, ``source``/``group`` its IP source and destination.
    """

    kind: int
    vif: int
    source: IPAddress
    group: IPAddress


def is_upcall4(data: bytes) -> bool:
    """True if a read from the raw IGMP socket is a kernel upcall, not an IGMP packet.

    ``struct igmpmsg`` is laid out like an IPv4 header, and its ``im_mbz`` byte sits at
    offset 9, where a real packet carries the IP protocol number. The raw IGMP socket only
    ever receives protocol 2 packets, and the kernel always writes 0 there in an upcall, so
    byte 9 tells the two apart (the convention mrouted, pimd and smcroute all rely on).
    """
    return len(data) >= _IGMPMSG.size and data[9] == 0


def parse_igmpmsg(data: bytes) -> Upcall | None:
    """``struct igmpmsg`` from the raw IGMP socket; None if ``data`` is not an upcall.

    Bytes after the 20-byte struct (IGMPMSG_WHOLEPKT carries the packet) are ignored.
    """
    if len(data) < _IGMPMSG.size:
        return None
    _u1, _u2, msgtype, mbz, vif, vif_hi, src, dst = _IGMPMSG.unpack_from(data)
    if mbz != 0 or msgtype == 0:
        return None
    return Upcall(msgtype, vif | vif_hi << 8, IPv4Address(src), IPv4Address(dst))


# --------------------------------------------------------------------------- IPv6


def mif6ctl(mifi: int, ifindex: int, threshold: int = 1, rate_limit: int = 0) -> bytes:
    """``struct mif6ctl`` for MRT6_ADD_MIF: MIF ``mifi`` on the device with ``ifindex``.

    The kernel's field for the ifindex (mif6c_pifi) is only 16 bits wide: devices with an
    ifindex above 65535 cannot be MIFs (ValueError). Flags are 0 (MIFF_REGISTER is PIM only).
    """
    _check_index("MIF index", mifi, MAXMIFS)
    _check_range("ifindex", ifindex, _U16_MAX)
    _check_range("threshold", threshold, _U8_MAX)
    _check_range("rate limit", rate_limit, _U32_MAX)
    return _MIF6CTL.pack(mifi, 0, threshold, ifindex, rate_limit)


def mif6ctl_delete(mifi: int) -> bytes:
    """Argument of MRT6_DEL_MIF: the kernel reads only a u16 mifi; the whole struct is fine."""
    _check_index("MIF index", mifi, MAXMIFS)
    return _MIF6CTL.pack(mifi, 0, 0, 0, 0)


def _sockaddr_in6(addr: IPv6Address) -> bytes:
    return _SOCKADDR_IN6.pack(AF_INET6, 0, 0, addr.packed, 0)


def mf6cctl(origin: IPv6Address, group: IPv6Address, parent: int, oifs: Iterable[int]) -> bytes:
    """``struct mf6cctl`` for MRT6_ADD_MFC / MRT6_DEL_MFC (``origin`` :: is a (*,G) entry).

    Each MIF in ``oifs`` gets its bit in the if_set; the parent is the MIF packets must arrive on.
    """
    if not isinstance(origin, IPv6Address) or not isinstance(group, IPv6Address):
        raise ValueError("mf6cctl needs IPv6 origin and group")
    _check_index("parent MIF index", parent, MAXMIFS)
    words = [0] * 8
    for oif in oifs:
        _check_index("outgoing MIF index", oif, MAXMIFS)
        words[oif // 32] |= 1 << (oif % 32)
    return _sockaddr_in6(origin) + _sockaddr_in6(group) + _MF6CCTL_TAIL.pack(parent, *words)


def parse_mrt6msg(data: bytes) -> Upcall | None:
    """``struct mrt6msg`` from the raw ICMPv6 socket; None if ``data`` is not an upcall.

    The socket returns ICMPv6 messages without the IPv6 header; an upcall overlays one with
    ``im6_mbz`` where the ICMPv6 type is, and no ICMPv6 message has type 0.
    """
    if len(data) < _MRT6MSG.size:
        return None
    mbz, msgtype, mif, _pad, src, dst = _MRT6MSG.unpack_from(data)
    if mbz != 0 or msgtype == 0:
        return None
    return Upcall(msgtype, mif, IPv6Address(src), IPv6Address(dst))
