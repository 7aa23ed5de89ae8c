"""Local joins from the bridge MDB (DESIGN §3): what hosts behind ``brN`` joined by IGMP/MLD.

A snooping bridge records every group a host port reported in its MDB and tells rtnetlink
group RTNLGRP_MDB about each change. This module turns those entries into ``LocalJoin``s for
the watched bridges: entries on host ports only (never on the bridge's VXLAN port, never the
bridge's own "host joined" entries, never VXLAN MDB remotes) and never link-local control
groups, which a snooping bridge records by itself (every IPv6 host reports its solicited-node
groups ``ff02::1:ffxx:xxxx``; the bridge joins ``ff02::6a`` and its own solicited-node group).

How entries map to joins (checked on kernel 6.18; details in ``port_group_joins``):

- IGMPv2/MLDv1 snooping (the bridge default, ``mcast_igmp_version 2``/``mcast_mld_version 1``):
  one ``(*,G)`` entry per port and no filter mode; an IGMPv3 source-specific join is learned
  as ``(*,G)``. Joins come out as ``(*,G)`` with ``exclude`` False.
- IGMPv3/MLDv2 snooping: an any-source join is ``(*,G)`` in EXCLUDE mode (``exclude`` True);
  a source-specific join is an ``(S,G)`` entry (reported, INCLUDE) plus a ``(*,G)`` entry in
  INCLUDE mode holding the source list (not a join of its own). The ``(S,G)`` entries of a
  port in ``(*,G)`` EXCLUDE mode are covered by that join; its blocked sources come out as
  ``(S,G)`` with ``exclude`` True only when asked for (``excluded_sources``), since they say
  "not from S", not "from S".

The pure half (decoding, the mapping, ``diff``) has no sockets; ``MdbWatcher`` adds the two
netlink sockets and ``bridge_problems``/``setup_bridge`` read and set the bridge's multicast
options through rtnetlink, so they act in the calling thread's network namespace (sysfs
would show the namespace the process mounted it in, not the thread's).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Final, NamedTuple, Protocol, TypeAlias

from bgp.evpn import IPAddress
from replication.kernel import SOL_NETLINK, NetlinkSocket, force_buffer
from replication.netlink import (
    MDB_PERMANENT,
    MDBA_MDB_EATTR_DST,
    MDBA_MDB_EATTR_SOURCE,
    RTM_DELMDB,
    RTM_GETMDB,
    RTM_NEWMDB,
    Message,
    dump_request,
    iter_attrs,
    iter_mdb_infos,
    iter_messages,
    parse_addr,
)

__all__ = [
    "MCAST_EXCLUDE",
    "MCAST_INCLUDE",
    "MDB_FLAGS_BLOCKED",
    "MDB_FLAGS_STAR_EXCL",
    "RTNLGRP_MDB",
    "BridgeMdbEntry",
    "Dumper",
    "Event",
    "LocalJoin",
    "MdbOverrunError",
    "MdbWatcher",
    "Receiver",
    "bridge_problems",
    "diff",
    "host_port",
    "is_link_local_group",
    "joins_from_entries",
    "parse_bridge_mdb",
    "port_group_joins",
    "setup_bridge",
]

# if_bridge.h / in.h
MDBA_MDB_EATTR_GROUP_MODE: Final = 3
MCAST_EXCLUDE: Final = 0
MCAST_INCLUDE: Final = 1
MDB_FLAGS_STAR_EXCL: Final = 1 << 2
MDB_FLAGS_BLOCKED: Final = 1 << 3
# rtnetlink.h / netlink.h
RTNLGRP_MDB: Final = 26
NETLINK_ADD_MEMBERSHIP: Final = 1
# if_link.h: IFLA_BR_MCAST_QUERIER_STATE and its nest (BRIDGE_QUERIER_*); pyroute2 0.9.7 does
# not decode them.
IFLA_BR_MCAST_QUERIER_STATE: Final = 47
BRIDGE_QUERIER_IP_OTHER_TIMER: Final = 3
BRIDGE_QUERIER_IPV6_OTHER_TIMER: Final = 7

_BR_MDB_ENTRY: Final = struct.Struct("=iBBH16s2s2x")  # ifindex, state, flags, vid, addr, proto (BE)
_ETH_P_IP: Final = b"\x08\x00"
_ETH_P_IPV6: Final = b"\x86\xdd"
_NLA_HEADER: Final = struct.Struct("=HH")
# The bridge answers an MDB dump with RTM_GETMDB messages (VXLAN devices with RTM_NEWMDB);
# notifications are RTM_NEWMDB/RTM_DELMDB.
_MDB_KINDS: Final = frozenset((RTM_NEWMDB, RTM_DELMDB, RTM_GETMDB))
_DEFAULT_RCVBUF: Final = 8 << 20
_MAX_DATAGRAMS_PER_READ: Final = 1024  # then back to the event loop (level-triggered: called again)
_MAX_DATAGRAMS_PER_DRAIN: Final = 1 << 16
_MAX_CACHED_NAMES: Final = 4096


# --------------------------------------------------------------------------- pure: values


@dataclass(frozen=True, slots=True)
class LocalJoin:
    """Host port ``port`` of bridge ``bridge`` wants ``(source, group)``; ``source`` None is ``*``.

    ``exclude`` is the IGMPv3/MLDv2 filter mode (the SMET IE flag): True for an EXCLUDE-mode
    ``(*,G)`` (any source) and for a blocked source; False for INCLUDE-mode ``(S,G)`` and for
    bridges that snoop IGMPv2/MLDv1 only, which report no mode.
    """

    bridge: str
    port: str
    source: IPAddress | None
    group: IPAddress
    exclude: bool = False


Event: TypeAlias = tuple[bool, LocalJoin]
"""(joined?, join): True is a join, False a leave."""


class BridgeMdbEntry(NamedTuple):
    """One port entry of a bridge MDB dump or notification, with what ``parse_mdb`` leaves out.

    ``device`` is the ifindex the message is about (the bridge, or a VXLAN device for VXLAN
    MDB entries), ``port`` the member port (== ``device`` for the bridge's own host-joined
    entries). ``state`` is MDB_TEMPORARY (0, learned) or MDB_PERMANENT (1, static); ``mode``
    MCAST_INCLUDE/MCAST_EXCLUDE, or None when the bridge snoops IGMPv2/MLDv1 and reports no
    mode. ``remote`` is True for a VXLAN MDB remote (has a ``dst``).
    """

    device: int
    port: int
    state: int
    flags: int
    source: IPAddress | None
    group: IPAddress
    mode: int | None
    remote: bool


class MdbOverrunError(Exception):
    """The notification socket overflowed (ENOBUFS): events were lost; call ``resync()``."""


_V4_LINK_LOCAL: Final = 0xE00000  # 224.0.0.0/24, as the address shifted right by 8 bits


def is_link_local_group(group: IPAddress) -> bool:
    """224.0.0.0/24, or an IPv6 multicast group of scope 0-2 (reserved, interface, link).

    The scope is the low nibble of the second byte whatever the flags nibble, so ff02::/16,
    ff12::/16 (transient link-local) and ff32::/16 are all link-local.
    """
    if isinstance(group, IPv4Address):
        return int(group) >> 8 == _V4_LINK_LOCAL
    packed = group.packed
    return packed[0] == 0xFF and packed[1] & 0x0F <= 2


def _ip_multicast(group: IPAddress) -> bool:
    if isinstance(group, IPv4Address):
        return int(group) >> 28 == 0xE
    return group.packed[0] == 0xFF


# --------------------------------------------------------------------------- pure: decoding


def _parse_entry_info(device: int, info: bytes) -> BridgeMdbEntry | None:
    if len(info) < _BR_MDB_ENTRY.size:
        return None
    port, state, flags, _vid, addr, proto = _BR_MDB_ENTRY.unpack_from(info, 0)
    if proto == _ETH_P_IP:
        group = parse_addr(addr[:4])
    elif proto == _ETH_P_IPV6:
        group = parse_addr(addr)
    else:
        return None  # L2 (MAC) entries carry no IP group
    assert group is not None
    source: IPAddress | None = None
    mode: int | None = None
    remote = False
    for kind, payload in iter_attrs(info, _BR_MDB_ENTRY.size):
        if kind == MDBA_MDB_EATTR_SOURCE:
            source = parse_addr(payload)
            if source is not None and source.version != group.version:
                return None
        elif kind == MDBA_MDB_EATTR_GROUP_MODE and payload:
            mode = payload[0]
        elif kind == MDBA_MDB_EATTR_DST:
            remote = True
    return BridgeMdbEntry(device, port, state, flags, source, group, mode, remote)


def parse_bridge_mdb(msg: Message) -> list[BridgeMdbEntry]:
    """An MDB dump reply or notification -> one entry per MDBA_MDB_ENTRY_INFO.

    The nest walk is ``replication.netlink.iter_mdb_infos``, shared with ``parse_mdb``; this
    parser of each struct br_mdb_entry + MDBA_MDB_EATTR_* also keeps the entry's state, flags
    and filter mode. Router-port messages
    (MDBA_ROUTER) and malformed input give no entries; nothing here raises on bad bytes.
    """
    return [
        r
        for device, info in iter_mdb_infos(msg, _MDB_KINDS)
        if (r := _parse_entry_info(device, info)) is not None
    ]


# --------------------------------------------------------------------------- pure: mapping

Names: TypeAlias = Callable[[int], str | None]
"""ifindex -> device name, None when there is no such device."""

PortGroup: TypeAlias = tuple[int, int, IPAddress]
"""(bridge ifindex, port ifindex, group): the entries of one group on one port."""


def host_port(
    entry: BridgeMdbEntry,
    names: Names,
    bridges: Mapping[str, object],
    exclude_ports: Mapping[str, str],
) -> tuple[str, str] | None:
    """(bridge, port) names when ``entry`` sits on a host port of a watched bridge and names a
    group a join may name; None for anything that is none of our business: VXLAN MDB remotes,
    the bridge's own (host joined) entries, the VXLAN port ``exclude_ports[bridge]``, other
    devices, and link-local or non-multicast groups."""
    if entry.remote or entry.port == entry.device:
        return None
    if not _ip_multicast(entry.group) or is_link_local_group(entry.group):
        return None
    bridge = names(entry.device)
    if bridge is None or bridge not in bridges:
        return None
    port = names(entry.port)
    if port is None or port == bridge or port == exclude_ports.get(bridge):
        return None
    return bridge, port


def port_group_joins(
    bridge: str, port: str, entries: Iterable[BridgeMdbEntry], excluded_sources: bool = False
) -> set[LocalJoin]:
    """The joins that the entries of one group on one host port stand for.

    - ``(*,G)`` in EXCLUDE mode, or without a mode (IGMPv2/MLDv1 snooping): a ``(*,G)`` join.
      It covers the port's ``(S,G)`` entries of sources it still forwards.
    - ``(*,G)`` in INCLUDE mode: the holder of the source list of source-specific joins; the
      joins are the port's ``(S,G)`` entries.
    - ``(S,G)`` marked STAR_EXCL: the bridge copying a ``(*,G)`` EXCLUDE join onto a source
      another port asked for; covered by that ``(*,G)`` join. The flag is set *after* the
      kernel announced the entry, which is why joins are worked out per port and group
      rather than per entry.
    - ``(S,G)`` marked BLOCKED: a source the port excludes; an ``(S,G)`` join with
      ``exclude`` True when ``excluded_sources`` is asked for, else nothing.
    """
    entries = list(entries)
    if not entries:
        return set()
    group = entries[0].group
    star = next((e for e in entries if e.source is None), None)
    any_source = star is not None and star.mode != MCAST_INCLUDE
    out: set[LocalJoin] = set()
    if star is not None and any_source:
        out.add(LocalJoin(bridge, port, None, group, star.mode == MCAST_EXCLUDE))
    for entry in entries:
        if entry.source is None:
            continue
        if entry.flags & MDB_FLAGS_BLOCKED:
            if excluded_sources:
                out.add(LocalJoin(bridge, port, entry.source, group, True))
        elif not any_source and not entry.flags & MDB_FLAGS_STAR_EXCL:
            out.add(LocalJoin(bridge, port, entry.source, group, False))
    return out


def joins_from_entries(
    entries: Iterable[BridgeMdbEntry],
    names: Names,
    bridges: Mapping[str, object],
    exclude_ports: Mapping[str, str],
    *,
    excluded_sources: bool = False,
    learned_only: bool = False,
) -> set[LocalJoin]:
    """The joins on host ports of the watched ``bridges`` (names; the values are not used).

    See ``host_port`` for what is skipped and ``port_group_joins`` for the mapping; with
    ``learned_only`` the static (permanent) entries an operator added count for nothing.
    """
    grouped: dict[PortGroup, list[BridgeMdbEntry]] = {}
    where: dict[PortGroup, tuple[str, str]] = {}
    for entry in entries:
        if learned_only and entry.state == MDB_PERMANENT:
            continue
        key = (entry.device, entry.port, entry.group)
        if key not in where:
            found = host_port(entry, names, bridges, exclude_ports)
            if found is None:
                continue
            where[key] = found
        grouped.setdefault(key, []).append(entry)
    out: set[LocalJoin] = set()
    for key, group_entries in grouped.items():
        out |= port_group_joins(*where[key], group_entries, excluded_sources)
    return out


def diff(old: AbstractSet[LocalJoin], new: AbstractSet[LocalJoin]) -> list[Event]:
    """Events taking ``old`` to ``new``: leaves first, then joins, each sorted for stable logs.

    A join whose mode changed is a leave of the old one and a join of the new one.
    """
    leaves = sorted(old - new, key=_order)
    joins = sorted(new - old, key=_order)
    return [(False, join) for join in leaves] + [(True, join) for join in joins]


def _order(join: LocalJoin) -> tuple[str, str, int, int, int, int]:
    source = -1 if join.source is None else int(join.source)
    return (join.bridge, join.port, join.group.version, int(join.group), source, int(join.exclude))


# --------------------------------------------------------------------------- the watcher


class Receiver(Protocol):
    """Where notifications come from: a non-blocking netlink socket, or a fake in tests."""

    def recv_into(self, buffer: bytearray) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


class Dumper(Protocol):
    """Who runs the MDB dump: ``replication.kernel.NetlinkSocket``, or a fake in tests."""

    def dump(self, build: Callable[[int], bytes]) -> list[Message]: ...
    def close(self) -> None: ...


def _subscribe(rcvbuf: int) -> socket.socket:
    """A non-blocking rtnetlink socket in the calling thread's namespace, in group RTNLGRP_MDB."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, 0)
    try:
        force_buffer(sock, rcvbuf)
        sock.bind((0, 0))
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_MDB)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _PortGroupState:
    bridge: str
    port: str
    entries: dict[IPAddress | None, BridgeMdbEntry]  # by source
    joins: frozenset[LocalJoin]  # as last reported to the caller


class MdbWatcher:
    """Local joins of the watched bridges, from a dump and then from RTNLGRP_MDB notifications.

    ``bridges`` maps bridge name -> VNI (only the names matter here), ``exclude_ports`` bridge
    name -> its VXLAN port. Both sockets belong to the network namespace of the thread that
    creates the watcher; ifindexes are turned into names in the calling thread's namespace.

    Use: ``snapshot()`` (sets the baseline), then ``loop.add_reader(w.fileno(), ...)`` and
    ``read()`` for the changes since. When the kernel dropped notifications (ENOBUFS),
    ``read()`` raises ``MdbOverrunError``, and keeps raising it until ``resync()``, which
    returns the events from the joins last reported to the kernel's. The watcher subscribes
    before it dumps, so no change falls between the two.
    """

    def __init__(
        self,
        bridges: Mapping[str, int],
        exclude_ports: Mapping[str, str],
        *,
        excluded_sources: bool = False,
        learned_only: bool = False,
        rcvbuf: int = _DEFAULT_RCVBUF,
        names: Names | None = None,
        notifications: Receiver | None = None,
        dumper: Dumper | None = None,
    ) -> None:
        """``names``, ``notifications`` and ``dumper`` replace the kernel in unit tests; by
        default names come from ``socket.if_indextoname``, notifications from a non-blocking
        RTNLGRP_MDB socket with a ``rcvbuf`` receive buffer, dumps from a ``NetlinkSocket``."""
        self.bridges = dict(bridges)
        self.exclude_ports = dict(exclude_ports)
        self.excluded_sources = excluded_sources
        self.learned_only = learned_only
        self._names: dict[int, str] = {}
        self._lookup: Names = names if names is not None else self._cached_name
        self._state: dict[PortGroup, _PortGroupState] = {}
        self._vxlan_devices: set[int] = set()  # ifindexes whose MDB messages carry remotes
        self._overrun = False
        self._buf = bytearray(1 << 16)
        self._sock: Receiver = notifications if notifications is not None else _subscribe(rcvbuf)
        try:
            self._dumper: Dumper = dumper if dumper is not None else NetlinkSocket()
        except BaseException:
            self._sock.close()
            raise

    # ----------------------------------------------------------------- plumbing

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()
        self._dumper.close()

    def __enter__(self) -> MdbWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cached_name(self, ifindex: int) -> str | None:
        """if_indextoname in the calling thread's namespace, cached. A miss asks the kernel;
        the cache is emptied by every ``snapshot`` (a renamed port shows its new name from
        the next dump on) and when it holds ``_MAX_CACHED_NAMES`` names."""
        name = self._names.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:
                return None
            if len(self._names) >= _MAX_CACHED_NAMES:
                self._names.clear()
            self._names[ifindex] = name
        return name

    # ----------------------------------------------------------------- state

    @property
    def joins(self) -> frozenset[LocalJoin]:
        """The joins as last reported (by ``snapshot``, ``read`` or ``resync``)."""
        out: set[LocalJoin] = set()
        for state in self._state.values():
            out |= state.joins
        return frozenset(out)

    @property
    def needs_resync(self) -> bool:
        """Notifications were lost; ``read()`` raises until ``resync()``."""
        return self._overrun

    def _admit(self, entry: BridgeMdbEntry) -> _PortGroupState | None:
        """The state of the entry's port group, created on first sight; None when not ours."""
        key = (entry.device, entry.port, entry.group)
        state = self._state.get(key)
        if state is None:
            if self.learned_only and entry.state == MDB_PERMANENT:
                return None
            where = host_port(entry, self._lookup, self.bridges, self.exclude_ports)
            if where is None:
                return None
            state = self._state[key] = _PortGroupState(*where, {}, frozenset())
        return state

    def _store(self, state: _PortGroupState, entry: BridgeMdbEntry, present: bool) -> None:
        if present and not (self.learned_only and entry.state == MDB_PERMANENT):
            state.entries[entry.source] = entry
        else:
            state.entries.pop(entry.source, None)

    def _recompute(self, key: PortGroup) -> tuple[frozenset[LocalJoin], frozenset[LocalJoin]]:
        """(joins last reported, joins now) of one port group; forgets an empty one."""
        state = self._state[key]
        old = state.joins
        new = frozenset(
            port_group_joins(state.bridge, state.port, state.entries.values(), self.excluded_sources)
        )
        state.joins = new
        if not state.entries:
            del self._state[key]
        return old, new

    def snapshot(self) -> set[LocalJoin]:
        """Dump the MDB: the joins there are now. They become the baseline of ``read()``.

        Raises ``replication.kernel.KernelError`` when the dump fails.
        """
        self._names.clear()  # renamed or recreated devices: names are read afresh per dump
        self._state = {}
        for msg in self._dumper.dump(lambda seq: dump_request(RTM_GETMDB, seq)):
            for entry in parse_bridge_mdb(msg):
                state = self._admit(entry)
                if state is not None:
                    self._store(state, entry, True)
        out: set[LocalJoin] = set()
        for key in list(self._state):
            out |= self._recompute(key)[1]
        return out

    def resync(self) -> list[Event]:
        """Drop the queued notifications (older than the dump), dump, and return the events
        from the joins last reported to the kernel's. Clears ``needs_resync``."""
        self._drain()
        self._vxlan_devices.clear()
        old = self.joins
        new = self.snapshot()
        self._overrun = False
        return diff(old, new)

    def _drain(self) -> None:
        for _ in range(_MAX_DATAGRAMS_PER_DRAIN):
            try:
                self._sock.recv_into(self._buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise

    # ----------------------------------------------------------------- notifications

    def read(self) -> list[Event]:
        """Decode the queued notifications into events (non-blocking; [] when none).

        Events are the net change of each touched port group over the whole batch, so an
        entry the bridge re-announces (refresh, flag or source-list change) gives an event
        only when the joins it stands for changed, and a short-lived intermediate state
        inside one batch gives none.

        Raises ``MdbOverrunError`` when the kernel dropped notifications (ENOBUFS), and again
        on every call until ``resync()``. Each such call first empties the socket (what is
        queued is older than the dump ``resync`` will make), so a level-triggered reader that
        does not resync at once does not spin on a readable socket.
        """
        if self._overrun:
            self._drain()
            raise MdbOverrunError("bridge MDB notifications were lost (ENOBUFS): resync needed")
        touched: set[PortGroup] = set()
        for _ in range(_MAX_DATAGRAMS_PER_READ):
            try:
                n = self._sock.recv_into(self._buf)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._overrun = True
                self._drain()
                raise MdbOverrunError("bridge MDB notifications were lost (ENOBUFS): resync needed") from exc
            for msg in iter_messages(bytes(self._buf[:n])):
                self._apply(msg, touched)
        old: set[LocalJoin] = set()
        new: set[LocalJoin] = set()
        for key in touched:
            before, after = self._recompute(key)
            old |= before
            new |= after
        return diff(old, new)

    def _apply(self, msg: Message, touched: set[PortGroup]) -> None:
        present = msg.kind != RTM_DELMDB
        device = int.from_bytes(msg.payload[4:8], sys.byteorder) if len(msg.payload) >= 8 else 0
        if device in self._vxlan_devices:
            return  # the agent's own VXLAN MDB writes, thousands in a burst: not worth parsing
        entries = parse_bridge_mdb(msg)
        if entries and all(e.remote for e in entries):
            self._vxlan_devices.add(device)  # only a VXLAN MDB has remotes
        for entry in entries:
            key = (entry.device, entry.port, entry.group)
            state = self._admit(entry) if present else self._state.get(key)
            if state is None:
                continue
            self._store(state, entry, present)
            touched.add(key)


# --------------------------------------------------------------------------- bridge options


@dataclass(frozen=True, slots=True)
class _BridgeInfo:
    kind: str
    snooping: int
    querier: int
    use_ifaddr: int
    igmp_version: int
    mld_version: int
    other_querier: tuple[bool, bool]  # another IGMP / MLD querier heard on the segment
    ipv4: bool  # the bridge has an IPv4 address (the query source with use_ifaddr)


def _raw_attrs(nla_container: Any) -> Iterable[tuple[int, bytes]]:
    """(type, payload) of every attribute of a pyroute2 nla, from its buffer: pyroute2 0.9.7
    does not decode IFLA_BR_MCAST_QUERIER_STATE and shows it as an undecoded 'UNKNOWN'."""
    for _name, nla in nla_container["attrs"]:
        data, offset = getattr(nla, "data", None), getattr(nla, "offset", None)
        length = getattr(nla, "length", None)
        if not isinstance(data, bytes | bytearray | memoryview) or not isinstance(offset, int):
            continue  # a decoded value (int, str...): not one we look for
        if not isinstance(length, int):
            continue
        raw = bytes(data[offset : offset + length])
        if len(raw) >= 4:
            _size, kind = _NLA_HEADER.unpack_from(raw, 0)
            yield kind & 0x3FFF, raw[4:]


def _bridge_info(bridge: str) -> _BridgeInfo | None:
    from pyroute2 import IPRoute  # lazily, as replication.kernel does
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            msg = ipr.link("get", ifname=bridge)[0]
        except NetlinkError:
            return None
        addresses = ipr.get_addr(family=socket.AF_INET, index=msg["index"])
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    if kind != "bridge" or data is None:
        return _BridgeInfo(str(kind or "plain"), 0, 0, 0, 0, 0, (False, False), False)
    other4 = other6 = False
    for kind_, payload in _raw_attrs(data):
        if kind_ == IFLA_BR_MCAST_QUERIER_STATE:
            for kind2, _value in iter_attrs(payload):
                other4 = other4 or kind2 == BRIDGE_QUERIER_IP_OTHER_TIMER
                other6 = other6 or kind2 == BRIDGE_QUERIER_IPV6_OTHER_TIMER
    return _BridgeInfo(
        "bridge",
        int(data.get_attr("IFLA_BR_MCAST_SNOOPING") or 0),
        int(data.get_attr("IFLA_BR_MCAST_QUERIER") or 0),
        int(data.get_attr("IFLA_BR_MCAST_QUERY_USE_IFADDR") or 0),
        int(data.get_attr("IFLA_BR_MCAST_IGMP_VERSION") or 2),
        int(data.get_attr("IFLA_BR_MCAST_MLD_VERSION") or 1),
        (other4, other6),
        bool(addresses),
    )


def bridge_problems(bridge: str) -> list[str]:
    """What keeps ``bridge`` from learning (all) local joins, one sentence each; [] when none.

    Read through rtnetlink in the calling thread's network namespace.
    """
    info = _bridge_info(bridge)
    if info is None:
        return [f"{bridge}: no such device, so no local joins are learned on it"]
    if info.kind != "bridge":
        return [f"{bridge} is a {info.kind} device, not a bridge: no IGMP/MLD snooping, no local joins"]
    if not info.snooping:
        return [
            f"{bridge}: multicast snooping is off (mcast_snooping 0): the bridge learns no IGMP/MLD "
            f"joins, so no local join is seen and it floods all multicast to every port; turn it on "
            f"(ip link set {bridge} type bridge mcast_snooping 1)"
        ]
    problems: list[str] = []
    if not info.querier:
        missing = [name for name, other in zip(("IGMP", "MLD"), info.other_querier, strict=True) if not other]
        if missing:
            problems.append(
                f"{bridge}: no {'/'.join(missing)} querier on the segment and the bridge is not one "
                f"(mcast_querier 0): hosts only send unsolicited reports when they join, nothing asks "
                f"them to refresh, so joins are missed when a report is lost and expire after "
                f"mcast_membership_interval (260 s by default) while hosts still want the group; "
                f"make the bridge a querier from an address of its own"
            )
    elif not (info.use_ifaddr and info.ipv4):
        problems.append(
            f"{bridge}: the bridge queries from 0.0.0.0 ("
            + ("mcast_query_use_ifaddr 0" if not info.use_ifaddr else "no IPv4 address on it")
            + "): bridges querying from 0.0.0.0 defer to each other and re-elect every ~262 s, "
            "flooding every group for ~10 s (DESIGN §6); give it a querier address"
        )
    if info.igmp_version < 3:
        problems.append(
            f"{bridge}: IGMPv{info.igmp_version} snooping (mcast_igmp_version {info.igmp_version}): "
            f"IGMPv3 source-specific joins are learned as (*,G) with no include/exclude mode, and "
            f"their leaves are not seen, so they stay until the membership interval; "
            f"set mcast_igmp_version 3"
        )
    if info.mld_version < 2:
        problems.append(
            f"{bridge}: MLDv{info.mld_version} snooping (mcast_mld_version {info.mld_version}): "
            f"MLDv2 source-specific joins are learned as (*,G) with no include/exclude mode, and "
            f"their leaves are not seen, so they stay until the membership interval; "
            f"set mcast_mld_version 2"
        )
    return problems


def setup_bridge(
    bridge: str,
    querier_address: IPAddress | None,
    *,
    igmp_version: int | None = 3,
    mld_version: int | None = 2,
) -> None:
    """Make ``bridge`` learn local joins: snooping on, IGMPv3/MLDv2 snooping (None leaves the
    version alone) and, with an address, a querier that queries from it.

    The address goes on the bridge as a /32 (/128) unless the bridge has it already; IGMP
    queries then come from it (mcast_query_use_ifaddr 1). MLD queries always come from the
    bridge's IPv6 link-local address. Raises OSError when the bridge does not exist.
    Acts in the calling thread's network namespace.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            raise OSError(errno.ENODEV, f"{bridge}: no such device")
        index = found[0]
        settings: dict[str, int] = {"br_mcast_snooping": 1}
        if igmp_version is not None:
            settings["br_mcast_igmp_version"] = igmp_version
        if mld_version is not None:
            settings["br_mcast_mld_version"] = mld_version
        if querier_address is not None:
            family = socket.AF_INET if querier_address.version == 4 else socket.AF_INET6
            present = {str(addr.get_attr("IFA_ADDRESS")) for addr in ipr.get_addr(family=family, index=index)}
            if str(querier_address) not in present:
                prefix = 32 if querier_address.version == 4 else 128
                with contextlib.suppress(NetlinkError):  # EEXIST: added meanwhile
                    ipr.addr("add", index=index, address=str(querier_address), prefixlen=prefix)
            settings["br_mcast_querier"] = 1
            settings["br_mcast_query_use_ifaddr"] = 1
        ipr.link("set", index=index, kind="bridge", **settings)
