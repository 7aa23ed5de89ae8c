"""The read path of the kernel's multicast routing tables: MFC entries over rtnetlink, VIF
counters from procfs, and a human view of both for ``evpnctl show mroutes``.

Pure codec functions plus two thin readers, in the style of replication.netlink: the MFC
comes from an RTM_GETROUTE dump of family RTNL_FAMILY_IPMR (128) / RTNL_FAMILY_IP6MR (129),
reusing the replication netlink layer (``NetlinkSocket.dump``, ``iter_attrs``). Layouts
follow include/uapi/linux/rtnetlink.h; what the kernel puts in a reply follows
net/ipv4/ipmr.c, net/ipv6/ip6mr.c and net/ipv4/ipmr_base.c (``mr_fill_mroute``), checked on
Linux 6.18 by tests/netns/test_ipmr_reader.py:

* A resolved entry carries RTA_TABLE, RTA_SRC, RTA_DST, RTA_IIF (only while the parent VIF
  exists), RTA_MULTIPATH (one ``struct rtnexthop`` per outgoing VIF, ``rtnh_hops`` = TTL
  threshold; the nest is empty when there are none), RTA_MFC_STATS and RTA_EXPIRES.
  RTA_EXPIRES is *not* an expiry: it is the time since the entry last forwarded a packet,
  in clock_t (USER_HZ = 100, so centiseconds). It is exposed as ``Mroute.idle``.
* An unresolved entry (the queue of packets waiting for the daemon to answer an
  IGMPMSG_NOCACHE / MRT6MSG_NOCACHE upcall) is dumped too, after the resolved ones. It has
  RTNH_F_UNRESOLVED (0x20) in ``rtm_flags`` and only RTA_TABLE, RTA_SRC and RTA_DST: no
  RTA_IIF, no RTA_MULTIPATH, no RTA_MFC_STATS and no RTA_EXPIRES. ``unresolved`` is taken
  from the flag alone, because a resolved entry whose parent VIF was deleted also lacks
  RTA_IIF.
* (*,G) and (*,*) entries carry RTA_SRC / RTA_DST of 0.0.0.0 / ``::`` rather than leaving
  them out; both forms map to None here.
* ``rtm_table`` is the table id truncated to 8 bits (table 1000 reads as 232); RTA_TABLE has
  the real one. The default table is 253 (RT_TABLE_DEFAULT) for IPv4 but 254 (RT6_TABLE_DFLT
  = RT_TABLE_MAIN) for IPv6. A dump filtered on a table that does not exist is empty (the
  kernel's ENOENT rides in NLMSG_DONE, which ends the dump).

The VIF counters exist only in procfs (/proc/net/ip_mr_vif, /proc/net/ip6_mr_vif), and
those files show the default table only: VIFs of a table made with MRT_TABLE / MRT6_TABLE
never appear there (per-table counters need SIOCGETVIFCNT / SIOCGETMIFCNT_IN6 on that table's
mroute socket). procfs follows the network namespace of the *thread group leader* through
/proc/net and /proc/self/net, so a worker thread that entered a namespace with setns reads
the wrong one there; /proc/thread-self/net follows the calling thread, which is why it is the
default here (for the main thread the two are the same).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bgp.evpn import IPAddress
from replication.kernel import NetlinkSocket
from replication.netlink import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    Message,
    iter_attrs,
    pack_attr,
    pack_header,
    parse_addr,
)

__all__ = [
    "RTNH_F_UNRESOLVED",
    "RTNL_FAMILY_IP6MR",
    "RTNL_FAMILY_IPMR",
    "Mroute",
    "VifStats",
    "dump_mroutes",
    "mroute_dump_request",
    "mroute_lines",
    "parse_mroute",
    "parse_vif_table",
    "read_vifs",
]

# rtnetlink.h
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_GETROUTE: Final = 26
RTNL_FAMILY_IPMR: Final = 128
RTNL_FAMILY_IP6MR: Final = 129
RTA_DST: Final = 1
RTA_SRC: Final = 2
RTA_IIF: Final = 3
RTA_MULTIPATH: Final = 9
RTA_TABLE: Final = 15
RTA_MFC_STATS: Final = 17
RTA_EXPIRES: Final = 23
RTNH_F_UNRESOLVED: Final = 0x20
RT_TABLE_COMPAT: Final = 252
USER_HZ: Final = 100  # clock_t ticks per second as reported to user space

_RTMSG: Final = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTNEXTHOP: Final = struct.Struct("=HBBi")  # len, flags, hops (TTL threshold), ifindex
_MFC_STATS: Final = struct.Struct("=QQQ")  # packets, bytes, wrong_if
_U32: Final = struct.Struct("=I")
_U64: Final = struct.Struct("=Q")

_RTNL_FAMILY: Final = {
    4: RTNL_FAMILY_IPMR,
    6: RTNL_FAMILY_IP6MR,
    128: RTNL_FAMILY_IPMR,
    129: RTNL_FAMILY_IP6MR,
}
_VERSION: Final = {RTNL_FAMILY_IPMR: 4, RTNL_FAMILY_IP6MR: 6}
_ADDR_LEN: Final = {RTNL_FAMILY_IPMR: 4, RTNL_FAMILY_IP6MR: 16}
_DEFAULT_TABLE: Final = {4: 253, 6: 254}
_PROC_FILE: Final = {4: "ip_mr_vif", 6: "ip6_mr_vif"}


def _rtnl_family(family: int) -> int:
    """4/6 or the RTNL family itself -> RTNL_FAMILY_IPMR/IP6MR; anything else is a caller bug."""
    try:
        return _RTNL_FAMILY[family]
    except KeyError:
        raise ValueError(f"not a multicast routing family: {family!r} (use 4 or 6)") from None


# --------------------------------------------------------------------------- MFC over rtnetlink


def mroute_dump_request(seq: int, family: int, table: int = 0) -> bytes:
    """RTM_GETROUTE dump of the MFC of one family (4/6 or 128/129); ``table`` 0 means all tables.

    The table filter goes in RTA_TABLE because ``rtm_table`` is only 8 bits; it needs
    strict dump checking (which NetlinkSocket turns on). Every other rtmsg field stays zero:
    strict checking refuses a dump request with lengths, tos or scope set.
    """
    rtnl = _rtnl_family(family)
    body = _RTMSG.pack(rtnl, 0, 0, 0, table if table < 256 else RT_TABLE_COMPAT, 0, 0, 0, 0)
    if table:
        body += pack_attr(RTA_TABLE, _U32.pack(table))
    return pack_header(len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq) + body


@dataclass(frozen=True, slots=True)
class Mroute:
    """One MFC entry. ``source``/``group`` None are the wildcards of (*,G) and (*,*).

    ``iif`` is None for unresolved entries and for resolved ones whose parent VIF is gone.
    ``oifs`` holds (ifindex, TTL threshold) sorted. The counters are zero for unresolved
    entries, which the kernel reports without them. ``idle`` is seconds since the entry last
    forwarded (RTA_EXPIRES), None when absent; it is left out of equality and hashing so
    that two reads of the same entry compare equal.
    """

    family: int
    table: int
    source: IPAddress | None
    group: IPAddress | None
    iif: int | None
    oifs: tuple[tuple[int, int], ...]
    packets: int
    bytes: int
    wrong_if: int
    unresolved: bool
    idle: float | None = field(default=None, compare=False)


def _mr_addr(payload: bytes, size: int) -> tuple[bool, IPAddress | None]:
    """(well formed, address or None for the wildcard) of an RTA_SRC/RTA_DST payload."""
    if len(payload) != size:
        return False, None
    addr = parse_addr(payload)
    return True, addr if addr is not None and int(addr) else None


def _oifs(nest: bytes) -> tuple[tuple[int, int], ...] | None:
    """RTA_MULTIPATH -> sorted (ifindex, ttl); None when a rtnexthop overruns the nest."""
    out: list[tuple[int, int]] = []
    offset = 0
    end = len(nest)
    while offset + _RTNEXTHOP.size <= end:
        length, _flags, hops, ifindex = _RTNEXTHOP.unpack_from(nest, offset)
        if length < _RTNEXTHOP.size or offset + length > end:
            return None
        out.append((ifindex, hops))
        offset += (length + 3) & ~3
    return tuple(sorted(out))


def parse_mroute(msg: Message) -> Mroute | None:
    """RTM_NEWROUTE (dump reply or notification) or RTM_DELROUTE of IPMR/IP6MR -> Mroute.

    None for other messages and for malformed ones (short header, addresses of the wrong
    size, a torn RTA_MULTIPATH); it never raises. Callers tell add from delete by msg.kind.
    Ordinary routes are refused by family: a kernel without multicast routing answers an
    IPMR dump with the PF_UNSPEC handler, which dumps the unicast tables.
    """
    payload = msg.payload
    if msg.kind not in (RTM_NEWROUTE, RTM_DELROUTE) or len(payload) < _RTMSG.size:
        return None
    rtnl, _dlen, _slen, _tos, table, _proto, _scope, _type, flags = _RTMSG.unpack_from(payload, 0)
    size = _ADDR_LEN.get(rtnl)
    if size is None:
        return None
    source: IPAddress | None = None
    group: IPAddress | None = None
    iif: int | None = None
    oifs: tuple[tuple[int, int], ...] = ()
    packets = octets = wrong_if = 0
    idle: float | None = None
    for kind, data in iter_attrs(payload, _RTMSG.size):
        if kind == RTA_TABLE and len(data) >= 4:
            (table,) = _U32.unpack_from(data)
        elif kind in (RTA_SRC, RTA_DST):
            ok, addr = _mr_addr(data, size)
            if not ok:
                return None
            if kind == RTA_SRC:
                source = addr
            else:
                group = addr
        elif kind == RTA_IIF and len(data) >= 4:
            (iif,) = _U32.unpack_from(data)
        elif kind == RTA_MULTIPATH:
            parsed = _oifs(data)
            if parsed is None:
                return None
            oifs = parsed
        elif kind == RTA_MFC_STATS and len(data) >= _MFC_STATS.size:
            packets, octets, wrong_if = _MFC_STATS.unpack_from(data)
        elif kind == RTA_EXPIRES and len(data) >= 8:
            idle = _U64.unpack_from(data)[0] / USER_HZ
    return Mroute(
        family=_VERSION[rtnl],
        table=table,
        source=source,
        group=group,
        iif=iif,
        oifs=oifs,
        packets=packets,
        bytes=octets,
        wrong_if=wrong_if,
        unresolved=bool(flags & RTNH_F_UNRESOLVED),
        idle=idle,
    )


def dump_mroutes(nl: NetlinkSocket, family: int = 4, table: int = 0) -> list[Mroute]:
    """Every MFC entry (resolved and unresolved) of one family, of all tables or of ``table``."""
    version = _VERSION[_rtnl_family(family)]
    out: list[Mroute] = []
    for msg in nl.dump(lambda seq: mroute_dump_request(seq, version, table)):
        route = parse_mroute(msg)
        # Filter here too: without strict checking the kernel ignores the table filter.
        if route is not None and route.family == version and (not table or route.table == table):
            out.append(route)
    return out


# --------------------------------------------------------------------------- VIF counters (procfs)


@dataclass(frozen=True, slots=True)
class VifStats:
    """One row of /proc/net/ip_mr_vif or ip6_mr_vif: a VIF/MIF of the default table.

    ``name`` is "none" when the VIF's device is gone; ``flags`` are VIFF_* / MIFF_* bits.
    """

    index: int
    name: str
    bytes_in: int
    packets_in: int
    bytes_out: int
    packets_out: int
    flags: int


def parse_vif_table(text: str) -> list[VifStats]:
    """The text of ip_mr_vif or ip6_mr_vif -> rows; the header and malformed lines are skipped.

    Both files start each row with ``index name bytes_in pkts_in bytes_out pkts_out flags``
    (flags in hex); IPv4 rows add the local and remote addresses, which are not kept.
    """
    out: list[VifStats] = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 7:
            continue
        try:
            index = int(cols[0])
            bytes_in, packets_in, bytes_out, packets_out = (int(col) for col in cols[2:6])
            flags = int(cols[6], 16)
        except ValueError:
            continue
        if min(index, bytes_in, packets_in, bytes_out, packets_out, flags) < 0:
            continue
        out.append(VifStats(index, cols[1], bytes_in, packets_in, bytes_out, packets_out, flags))
    return out


def read_vifs(family: int = 4, proc: Path = Path("/proc/thread-self/net")) -> list[VifStats]:
    """The default table's VIFs of the calling thread's network namespace.

    Raises OSError when the file is missing (a kernel without CONFIG_IP_MROUTE /
    CONFIG_IPV6_MROUTE), so that is not mistaken for "no VIFs".
    """
    version = _VERSION[_rtnl_family(family)]
    return parse_vif_table((proc / _PROC_FILE[version]).read_text())


# --------------------------------------------------------------------------- human view


def _name(names: Mapping[int, str], ifindex: int) -> str:
    return names.get(ifindex) or f"if{ifindex}"


def _sort_key(route: Mroute) -> tuple[int, int, int, int]:
    return (route.family, route.table, int(route.group or 0), int(route.source or 0))


def mroute_lines(routes: list[Mroute], names: Mapping[int, str]) -> list[str]:
    """One line per entry, sorted by family, table, group, source, for ``evpnctl show mroutes``.

    ``(10.0.0.1, 239.1.1.1) iif eth0 oifs eth1 eth2(ttl 3) packets 10 bytes 1000 wrong 0``;
    wildcards print as ``*``, a TTL threshold other than 1 is shown like ``ip mroute`` does,
    a table other than the family's default is appended, and unresolved entries (which have
    neither interfaces nor counters) print as ``(S, G) unresolved``.
    """
    lines: list[str] = []
    for route in sorted(routes, key=_sort_key):
        head = f"({route.source or '*'}, {route.group or '*'})"
        if route.unresolved:
            line = f"{head} unresolved"
        else:
            iif = "none" if route.iif is None else _name(names, route.iif)
            oifs = " ".join(
                _name(names, ifindex) + ("" if ttl == 1 else f"(ttl {ttl})") for ifindex, ttl in route.oifs
            )
            line = (
                f"{head} iif {iif} oifs {oifs or 'none'} packets {route.packets} bytes {route.bytes}"
                f" wrong {route.wrong_if}"
            )
        if route.table != _DEFAULT_TABLE.get(route.family):
            line += f" table {route.table}"
        lines.append(line)
    return lines
