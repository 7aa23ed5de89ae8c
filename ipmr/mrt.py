"""The multicast routing socket: the one handle on a kernel IPMR (or IP6MR) table.

Thin by design: each method is one ``setsockopt`` with a packed struct from ``ipmr.structs``,
and every errno the kernel gives becomes a one-line ``MrtError`` that says what it means for
an operator (another router owns the table, MAXVIFS, missing capability). All VIFs and MFC
entries of a table belong to the socket that ran MRT_INIT and vanish when it closes, so the
daemon keeps this socket open for its whole life (DESIGN §6).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from bgp.evpn import IPAddress
from ipmr import structs
from replication.kernel import force_buffer

__all__ = ["MrtError", "MrtSocket"]

IPPROTO_IGMP: Final = 2
IP_PKTINFO: Final = 8
IPV6_RECVPKTINFO: Final = 49
IPV6_PKTINFO: Final = 50
_MREQN: Final = struct.Struct("=4s4si")  # group, local address, ifindex
_ALL_V3_ROUTERS: Final = socket.inet_aton("224.0.0.22")
_MLDV2_ROUTERS: Final = socket.inet_pton(socket.AF_INET6, "ff02::16")
ICMP6_FILTER: Final = 1
# Let through only what the driver reads: MLD queries, reports and dones (upcalls bypass it).
_MLD_TYPES: Final = (130, 131, 132, 143)


class MrtError(Exception):
    """A refusal from the kernel, as one line that names the table, VIF or route at fault."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.errno = code


def _reason(code: int) -> str:
    return f"{errno.errorcode.get(code, str(code))}: {os.strerror(code)}"


class MrtSocket:
    """An MRT_INIT'ed raw socket for one family (4: IGMP socket, 6: ICMPv6 socket) and table."""

    def __init__(self, family: int = 4, table: int | None = None) -> None:
        self.family = family
        self.table = table
        self._level = socket.IPPROTO_IP if family == 4 else socket.IPPROTO_IPV6
        name = f"IPv{family} multicast routing table {table if table is not None else 'default'}"
        self.name = name
        try:
            if family == 4:
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IGMP)
            else:
                self._sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        except OSError as exc:
            raise MrtError(
                self._message(exc.errno or 0, f"open a raw socket for {name}"), exc.errno or 0
            ) from None
        # Memberships (224.0.0.22 / ff02::16 per edge interface) are held by plain UDP sockets:
        # a socket may join only net.ipv4.igmp_max_memberships (20) groups, and the MRT socket
        # still hears the reports since IP_MULTICAST_ALL is on.
        self._joiners: list[socket.socket] = []
        try:
            # Room for a burst of upcalls (~830 bytes each): the default 208 KiB holds ~250,
            # and an upcall dropped here drops its packet and delays the route.
            force_buffer(self._sock, 8 << 20)
            if family == 6:
                self._sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter(_MLD_TYPES))
                self._sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                self._sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            if table is not None:
                self._set(structs.MRT_TABLE, struct.pack("I", table), f"select {name}")
            self._set(structs.MRT_INIT, struct.pack("i", 1), f"take {name}")
            # WRONGVIF upcalls are only sent with asserts on; the driver counts them.
            self._set(structs.MRT_ASSERT, struct.pack("i", 1), f"enable asserts on {name}")
        except BaseException:
            self._sock.close()
            raise

    def _set(self, option: int, value: bytes, what: str) -> None:
        try:
            self._sock.setsockopt(self._level, option, value)
        except OSError as exc:
            raise MrtError(self._message(exc.errno or 0, what), exc.errno or 0) from None

    def _message(self, code: int, what: str) -> str:
        why = _reason(code)
        if code == errno.EADDRINUSE and "take" in what:
            return (
                f"cannot {what}: {why}: another multicast router (smcroute, pimd, FRR pimd, mrouted) "
                "already owns it; stop it or give the agent another table (ipmr.table)"
            )
        if code in (errno.EPERM, errno.EACCES):
            return f"cannot {what}: {why}: the agent needs CAP_NET_RAW and CAP_NET_ADMIN (run it as root)"
        if code in (errno.ENOPROTOOPT, errno.EOPNOTSUPP) and "select" in what:
            return f"cannot {what}: {why}: the kernel lacks multiple multicast routing tables"
        if code in (errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            return f"cannot {what}: {why}: the kernel has no multicast routing (CONFIG_IP_MROUTE)"
        if code == errno.ENFILE:
            return f"cannot {what}: {why}: {self.name} is full (MAXVIFS = {structs.MAXVIFS})"
        if code == errno.EBUSY and "select" in what:
            return f"cannot {what}: {why}: the table must be chosen before MRT_INIT"
        return f"cannot {what}: {why}"

    # ----------------------------------------------------------------- VIFs

    def add_vif(self, vif: int, ifindex: int, name: str) -> None:
        if self.family == 4:
            self._set(
                structs.MRT_ADD_VIF, structs.vifctl(vif, ifindex), f"add VIF {vif} ({name}) to {self.name}"
            )
        else:
            self._set(
                structs.MRT6_ADD_MIF, structs.mif6ctl(vif, ifindex), f"add MIF {vif} ({name}) to {self.name}"
            )

    def del_vif(self, vif: int, name: str) -> None:
        if self.family == 4:
            self._set(
                structs.MRT_DEL_VIF, structs.vifctl_delete(vif), f"remove VIF {vif} ({name}) from {self.name}"
            )
        else:
            self._set(
                structs.MRT6_DEL_MIF,
                structs.mif6ctl_delete(vif),
                f"remove MIF {vif} ({name}) from {self.name}",
            )

    # ----------------------------------------------------------------- MFC

    def add_mfc(self, source: IPAddress, group: IPAddress, parent: int, oifs: Iterable[int]) -> None:
        try:
            if isinstance(group, IPv4Address):
                assert isinstance(source, IPv4Address)
                self._sock.setsockopt(
                    self._level, structs.MRT_ADD_MFC, structs.mfcctl(source, group, parent, oifs)
                )
            else:
                assert isinstance(source, IPv6Address)
                self._sock.setsockopt(
                    self._level, structs.MRT6_ADD_MFC, structs.mf6cctl(source, group, parent, oifs)
                )
        except OSError as exc:  # the message is built only here: this is the hot path
            what = f"add route ({source}, {group}) iif VIF {parent} to {self.name}"
            raise MrtError(self._message(exc.errno or 0, what), exc.errno or 0) from None

    def del_mfc(self, source: IPAddress, group: IPAddress, parent: int) -> None:
        try:
            if isinstance(group, IPv4Address):
                assert isinstance(source, IPv4Address)
                self._sock.setsockopt(
                    self._level, structs.MRT_DEL_MFC, structs.mfcctl(source, group, parent, ())
                )
            else:
                assert isinstance(source, IPv6Address)
                self._sock.setsockopt(
                    self._level, structs.MRT6_DEL_MFC, structs.mf6cctl(source, group, parent, ())
                )
        except OSError as exc:
            what = f"remove route ({source}, {group}) from {self.name}"
            raise MrtError(self._message(exc.errno or 0, what), exc.errno or 0) from None

    # ----------------------------------------------------------------- IGMP / MLD I/O

    def listen_reports(self, ifindex: int) -> None:
        """Join the all-IGMPv3/MLDv2-routers group on an edge interface to hear v3/v2 reports."""
        if self.family == 4:
            level, option = socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP
            mreq = _MREQN.pack(_ALL_V3_ROUTERS, b"\0\0\0\0", ifindex)
        else:
            level, option = socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP
            mreq = _MLDV2_ROUTERS + struct.pack("@I", ifindex)
        while True:
            for joiner in self._joiners:
                try:
                    joiner.setsockopt(level, option, mreq)
                    return
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:  # already joined
                        return
                    if exc.errno != errno.ENOBUFS:  # ENOBUFS: this socket's limit, try the next
                        why = _reason(exc.errno or 0)
                        raise MrtError(f"cannot listen for reports on ifindex {ifindex}: {why}") from None
            kind = socket.AF_INET if self.family == 4 else socket.AF_INET6
            self._joiners.append(socket.socket(kind, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
            if len(self._joiners) > 64:
                why = _reason(errno.ENOBUFS)
                raise MrtError(f"cannot listen for reports on ifindex {ifindex}: {why}") from None

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def recv(self) -> tuple[bytes, IPAddress | None, int]:
        """One datagram: (data, sender, ifindex it arrived on; 0 for upcalls and when unknown)."""
        data, ancillary, _flags, addr = self._sock.recvmsg(65535, 256)
        ifindex = 0
        for level, kind, payload in ancillary:
            if self.family == 4 and level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(payload) >= 4:
                ifindex = struct.unpack_from("=i", payload, 0)[0]
            elif (
                self.family == 6
                and level == socket.IPPROTO_IPV6
                and kind == IPV6_PKTINFO
                and len(payload) >= 20
            ):
                ifindex = struct.unpack_from("=I", payload, 16)[0]
        sender: IPAddress | None = None
        if addr and addr[0]:
            sender = IPv4Address(addr[0]) if self.family == 4 else IPv6Address(addr[0].split("%")[0])
        return data, sender, ifindex

    def send_query(self, payload: bytes, group: IPAddress, ifindex: int) -> None:
        """Send an IGMP/MLD query out of one interface (router alert, TTL/hop limit 1)."""
        if self.family == 4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IGMP)
            with sock:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x94\x04\x00\x00")
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, _MREQN.pack(b"\0" * 4, b"\0" * 4, ifindex)
                )
                sock.sendto(payload, (str(group), 0))
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            with sock:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                # Hop-by-hop router alert (MLD, RFC 2711 value 0).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes([58, 0, 5, 2, 0, 0, 1, 0]))
                sock.sendto(payload, (str(group), 0, 0, ifindex))

    def close(self) -> None:
        """MRT_DONE then close: the kernel drops every VIF and route of the table."""
        with contextlib.suppress(OSError):
            self._sock.setsockopt(self._level, structs.MRT_DONE, struct.pack("i", 1))
        self._sock.close()


def _icmp6_filter(allowed: Iterable[int]) -> bytes:
    """struct icmp6_filter: 256 bits, a set bit *blocks* that ICMPv6 type."""
    words = [0xFFFFFFFF] * 8
    for kind in allowed:
        words[kind >> 5] &= ~(1 << (kind & 31))
    return struct.pack("=8I", *words)
