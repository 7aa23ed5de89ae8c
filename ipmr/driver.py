"""The IPMR driver: VIFs for edge interfaces and VNI SVIs, MFC routes from the membership store
and IGMP/MLD, upcalls, querier, counters.

One ``MrtSocket`` per (family, table) is held for the driver's life. The driver is
level-triggered like the replication reconciler: ``refresh`` plans VIFs from the interfaces
as they are now (interfaces that appear later or go away are handled on the next refresh),
``reconcile`` computes every route's outputs from memberships, the store and static routes
and writes only the routes that differ. Packets arrive through ``handle`` (called when a
socket is readable): NOCACHE upcalls create flows, WRONGVIF upcalls are counted, IGMP/MLD
reports and leaves update the edge memberships and the store.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Final, Protocol, TypeVar

from bgp.evpn import IPAddress
from ipmr import igmp, structs
from ipmr.mfc import (
    EDGE_PORT_PREFIX,
    Flow,
    Memberships,
    StaticRoute,
    StoreWants,
    desired_routes,
    route_diff,
    static_outputs,
    svi_wants,
)
from ipmr.mrt import MrtError, MrtSocket
from ipmr.reader import Mroute, VifStats, dump_mroutes, mroute_lines, read_vifs
from ipmr.vifs import Budget, Candidate, Slot, plan_vifs
from replication.kernel import NetlinkSocket

__all__ = ["IpmrDriver", "IpmrSettings", "interface_problem"]

log = logging.getLogger("evpn.ipmr")
T = TypeVar("T")

RT_TABLE_DEFAULT: Final = structs.RT_TABLE_DEFAULT
SIOCGIFFLAGS: Final = 0x8913
IFF_UP: Final = 0x1
IFF_MULTICAST: Final = 0x1000


class MembershipStore(StoreWants, Protocol):
    """What the driver needs of ``agent.store.Store``: SVI views and local joins for SMET."""

    def local_join(self, vni: int, source: IPAddress | None, group: IPAddress, port: str) -> object: ...
    def local_leave(self, vni: int, source: IPAddress | None, group: IPAddress, port: str) -> object: ...


@dataclass(frozen=True, slots=True)
class IpmrSettings:
    edge: tuple[str, ...] = ()
    svis: Mapping[str, int] = field(default_factory=dict)  # bridge name -> VNI
    tables: tuple[int, ...] = (RT_TABLE_DEFAULT,)
    families: tuple[int, ...] = (4,)
    routes: tuple[StaticRoute, ...] = ()
    querier: frozenset[str] = frozenset()
    query_interval: float = 125.0
    query_response: float = 10.0
    robustness: int = 2
    last_member_interval: float = 1.0

    @property
    def gmi(self) -> float:
        return self.robustness * self.query_interval + self.query_response

    @property
    def lmqt(self) -> float:
        return self.robustness * self.last_member_interval


def interface_problem(name: str) -> str | None:
    """Why ``name`` cannot be a VIF now (checked in the calling thread's network namespace)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return f"{name} does not exist"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", name.encode()[:15], 0))
        except OSError as exc:
            return f"{name}: cannot read its flags ({exc.strerror})"
    (flags,) = struct.unpack_from("H", raw, 16)
    if not flags & IFF_UP:
        return f"{name} is down"
    if not flags & IFF_MULTICAST:
        return f"{name} has multicast disabled (IFF_MULTICAST off)"
    return None


class IpmrDriver:
    """Drives IPMR (and IP6MR) tables for the edge; see the module docstring."""

    def __init__(
        self,
        settings: IpmrSettings,
        store: MembershipStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._on_event = on_event
        self._sockets: dict[tuple[int, int], MrtSocket] = {}
        self._slots: dict[int, dict[str, list[Slot]]] = {f: {} for f in settings.families}
        self._ifindex: dict[str, int] = {}
        self._budget: dict[int, Budget] = {}
        # Indexed by group: an upcall or a join touches one group, never a scan of all routes.
        self._flows: dict[int, dict[IPAddress, set[Flow]]] = {f: {} for f in settings.families}
        self._installed: dict[int, dict[IPAddress, dict[Flow, frozenset[int]]]] = {
            f: {} for f in settings.families
        }
        self._statics: dict[IPAddress, list[StaticRoute]] = {}
        for route in settings.routes:
            self._statics.setdefault(route.group, []).append(route)
        self._members = {f: Memberships(settings.gmi, settings.lmqt) for f in settings.families}
        self._mrules: set[tuple[int, str, int]] = set()
        self.wrong_vif: dict[tuple[int, str, str, int], int] = {}
        self.counters: dict[str, int] = {"upcalls": 0, "reports": 0, "bad_packets": 0, "route_errors": 0}
        self.errors: list[str] = []
        self._next_query = 0.0
        # The serve loop and callers in other threads (the daemon's store task, the control
        # socket) share the tables: one re-entrant lock around every change.
        self._lock = threading.RLock()
        self._names_cache: dict[int, dict[tuple[int, int], str]] = {}
        self._last_budget: dict[int, dict[str, object]] = {}

    # ----------------------------------------------------------------- life cycle

    def start(self) -> list[str]:
        """Take the tables (MrtError if another router owns one), set up VIFs and routes."""
        try:
            for family in self.settings.families:
                for table in self.settings.tables:
                    chosen = None if table == RT_TABLE_DEFAULT else table
                    self._sockets[(family, table)] = MrtSocket(family, chosen)
        except MrtError:
            self.close()
            raise
        for sock in self._sockets.values():
            sock.setblocking(False)
        return self.refresh()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        if self._mrules:
            self._apply_mrules(set())

    def sockets(self) -> list[MrtSocket]:
        return list(self._sockets.values())

    # ----------------------------------------------------------------- VIFs

    def candidates(self) -> list[Candidate]:
        out = [Candidate(name, True, None, interface_problem(name)) for name in self.settings.edge]
        for name, vni in self.settings.svis.items():
            out.append(Candidate(name, False, vni, interface_problem(name)))
        return out

    def refresh(self) -> list[str]:
        with self._lock:
            return self._refresh()

    def _refresh(self) -> list[str]:
        """Re-check interfaces, add/remove VIFs to match, then reconcile routes."""
        messages: list[str] = []
        candidates = self.candidates()
        for family in self.settings.families:
            current = self._slots[family]
            # An interface re-created under the same name has a new ifindex: re-add its VIFs.
            for name in list(current):
                try:
                    index = socket.if_nametoindex(name)
                except OSError:
                    index = 0
                if index != self._ifindex.get(name):
                    self._remove_vifs(family, name, current.pop(name), messages)
            budget = plan_vifs(candidates, self.settings.tables, current)
            self._budget[family] = budget
            for name in [n for n in current if n not in budget.slots]:
                self._remove_vifs(family, name, current.pop(name), messages)
            for name, slots in budget.slots.items():
                have = set(current.get(name, []))
                for slot in slots:
                    if slot in have:
                        continue
                    if self._add_vif(family, name, slot, messages):
                        current.setdefault(name, []).append(slot)
            messages.extend(f"IPv{family}: {why}" for why in budget.refused.values())
            report = budget.report()
            if report != self._last_budget.get(family):  # an event per change, not per refresh
                self._last_budget[family] = report
                self._event("vif-budget", {"family": family, **report})
        self._sync_mrules(messages)
        messages.extend(self.reconcile())
        for line in messages:
            if line not in self.errors:  # a standing problem is logged once, not every refresh
                log.warning("%s", line)
        self.errors = messages
        return messages

    def _add_vif(self, family: int, name: str, slot: Slot, messages: list[str]) -> bool:
        sock = self._sockets.get((family, slot.table))
        if sock is None:
            return False
        try:
            index = socket.if_nametoindex(name)
            sock.add_vif(slot.vif, index, name)
        except MrtError as exc:
            messages.append(str(exc))
            return False
        except OSError as exc:
            messages.append(f"cannot add VIF for {name}: {exc.strerror}")
            return False
        self._ifindex[name] = index
        self._names_cache.pop(family, None)
        if name in self.settings.edge:
            try:
                sock.listen_reports(index)
            except MrtError as exc:
                messages.append(str(exc))
        log.info("IPv%d table %d: VIF %d = %s", family, slot.table, slot.vif, name)
        return True

    def _remove_vifs(self, family: int, name: str, slots: list[Slot], messages: list[str]) -> None:
        self._names_cache.pop(family, None)
        for slot in slots:
            sock = self._sockets.get((family, slot.table))
            if sock is not None:
                with contextlib.suppress(MrtError):  # gone with its interface already
                    sock.del_vif(slot.vif, name)
            for group, flows in self._flows[family].items():
                for flow in [f for f in flows if f.table == slot.table and f.iif == slot.vif]:
                    flows.discard(flow)
                    self._installed[family].get(group, {}).pop(flow, None)
        for key in self._members[family].drop_interface(name):
            self._store_leave(family, key[1], key[2], name)
        messages.append(
            f"IPv{family}: {name} lost its VIF ({'gone' if name not in self._ifindex else 'changed'})"
        )
        self._ifindex.pop(name, None)

    def _sync_mrules(self, messages: list[str]) -> None:
        """``ip mrule iif X lookup T`` for every interface whose VIF is not in the default table."""
        wanted: set[tuple[int, str, int]] = set()
        for family in self.settings.families:
            for name, slots in self._slots[family].items():
                tables = sorted({s.table for s in slots}, key=self.settings.tables.index)
                if tables and tables[0] != RT_TABLE_DEFAULT:
                    wanted.add((family, name, tables[0]))
        if wanted != self._mrules:
            self._apply_mrules(wanted, messages)

    def _apply_mrules(self, wanted: set[tuple[int, str, int]], messages: list[str] | None = None) -> None:
        _off_loop(self._write_mrules, wanted, messages)
        self._mrules = wanted

    def _write_mrules(self, wanted: set[tuple[int, str, int]], messages: list[str] | None) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        families = {4: 128, 6: 129}  # RTNL_FAMILY_IPMR / RTNL_FAMILY_IP6MR
        with IPRoute() as ipr:
            for family, name, table in self._mrules - wanted:
                with contextlib.suppress(NetlinkError):
                    ipr.rule("del", family=families[family], iifname=name, table=table, priority=1000)
            for family, name, table in wanted - self._mrules:
                try:
                    ipr.rule("add", family=families[family], iifname=name, table=table, priority=1000)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST and messages is not None:
                        messages.append(f"cannot steer {name} to multicast table {table}: {exc}")

    def interface_names(self) -> dict[int, str]:
        """ifindex -> name of the interfaces with VIFs."""
        return {index: name for name, index in self._ifindex.items()}

    def budget(self) -> dict[str, Any]:
        return {f"ipv{f}": b.report() for f, b in self._budget.items()}

    def vifs(self, family: int = 4) -> dict[str, list[Slot]]:
        return {name: list(slots) for name, slots in self._slots[family].items()}

    # ----------------------------------------------------------------- routes

    def _names(self, family: int) -> dict[tuple[int, int], str]:
        """(table, VIF) -> interface, cached until a VIF is added or removed."""
        names = self._names_cache.get(family)
        if names is None:
            names = {(s.table, s.vif): name for name, slots in self._slots[family].items() for s in slots}
            self._names_cache[family] = names
        return names

    def _static_flows(self, family: int, group: IPAddress) -> set[Flow]:
        out = set()
        for route in self._statics.get(group, ()):
            if route.source is None:
                continue
            for slot in self._slots[family].get(route.iif, [])[:1]:
                out.add(Flow(slot.table, route.source, route.group, slot.vif))
        return out

    def reconcile(self, groups: Iterable[IPAddress] | None = None) -> list[str]:
        with self._lock:
            return self._reconcile(groups)

    def _reconcile(self, groups: Iterable[IPAddress] | None = None) -> list[str]:
        """Write the routes whose outputs differ from what is installed; errors as lines."""
        messages: list[str] = []
        for family in self.settings.families:
            names = self._names(family)
            flows_by_group = self._flows[family]
            installed_by_group = self._installed[family]
            if groups is None:
                todo = set(flows_by_group) | set(installed_by_group)
                todo |= {g for g in self._statics if g.version == family}
            else:
                todo = {g for g in groups if g.version == family}
            for group in todo:
                flows = flows_by_group.get(group, set()) | self._static_flows(family, group)
                wanted = {flow: self._wanted(family, flow, names) for flow in flows}
                desired = desired_routes(flows, names, self._slots[family], wanted)
                installed = installed_by_group.setdefault(group, {})
                put, delete = route_diff(desired, installed)
                for flow, oifs in put.items():
                    sock = self._sockets[(family, flow.table)]
                    try:
                        sock.add_mfc(flow.source, flow.group, flow.iif, sorted(oifs))
                        installed[flow] = oifs
                    except MrtError as exc:
                        self.counters["route_errors"] += 1
                        messages.append(str(exc))
                for flow in delete:
                    sock = self._sockets[(family, flow.table)]
                    with contextlib.suppress(MrtError):
                        sock.del_mfc(flow.source, flow.group, flow.iif)
                    installed.pop(flow, None)
                if not installed:
                    del installed_by_group[group]
        return messages

    def _install(self, family: int, flow: Flow) -> list[str]:
        """Route one new flow (an upcall): the rest of its group is already right."""
        names = self._names(family)
        desired = desired_routes(
            [flow], names, self._slots[family], {flow: self._wanted(family, flow, names)}
        )
        oifs = desired.get(flow)
        if oifs is None:
            return []
        installed = self._installed[family].setdefault(flow.group, {})
        if installed.get(flow) == oifs:
            return []
        try:
            self._sockets[(family, flow.table)].add_mfc(flow.source, flow.group, flow.iif, sorted(oifs))
        except MrtError as exc:
            self.counters["route_errors"] += 1
            return [str(exc)]
        installed[flow] = oifs
        return []

    def _wanted(self, family: int, flow: Flow, names: Mapping[tuple[int, int], str]) -> set[str]:
        iif = names.get((flow.table, flow.iif), "")
        out = self._members[family].interfaces(flow.source, flow.group)
        if self._store is not None:
            out |= svi_wants(self._store, self.settings.svis, flow.source, flow.group)
        out |= static_outputs(self._statics.get(flow.group, ()), flow.source, flow.group, iif)
        return out

    def routes(self, family: int = 4) -> dict[Flow, frozenset[int]]:
        return {f: o for per_group in self._installed[family].values() for f, o in per_group.items()}

    def memberships(self, family: int = 4) -> Memberships:
        return self._members[family]

    # ----------------------------------------------------------------- packets

    def handle(self, sock: MrtSocket) -> None:
        with self._lock:
            self._handle(sock)

    def _handle(self, sock: MrtSocket) -> None:
        """Read everything pending on one socket (non-blocking)."""
        while True:
            try:
                data, sender, ifindex = sock.recv()
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("reading %s: %s", sock.name, exc)
                return
            self._packet(sock, data, sender, ifindex)

    def _packet(self, sock: MrtSocket, data: bytes, sender: IPAddress | None, ifindex: int) -> None:
        family = sock.family
        table = sock.table if sock.table is not None else RT_TABLE_DEFAULT
        upcall = (
            (structs.parse_igmpmsg(data) if structs.is_upcall4(data) else None)
            if family == 4
            else (structs.parse_mrt6msg(data) if data[:1] == b"\0" else None)
        )
        if upcall is not None:
            self._upcall(family, table, upcall)
            return
        if family == 4:
            message = igmp.parse_igmp(data)
        else:
            message = igmp.parse_mld(data, sender if isinstance(sender, IPv6Address) else None)
        if isinstance(message, igmp.ParseError):
            self.counters["bad_packets"] += 1
            log.debug("ignored a bad IGMP/MLD packet from %s: %s", sender, message.reason)
            return
        if not isinstance(message, igmp.Report):
            return
        name = self._edge_by_index(ifindex)
        if name is None:
            return
        self.counters["reports"] += 1
        now = self._clock()
        touched: set[IPAddress] = set()
        members = self._members[family]
        for change in message.changes:
            if igmp.is_link_local_group(change.group):
                continue
            if change.join:
                if members.join(name, change.source, change.group, now):
                    self._store_join(family, change.source, change.group, name)
                    touched.add(change.group)
            else:
                members.leave(name, change.source, change.group, now)
                if name in self.settings.querier:
                    self._query(sock, name, change.group)
        if touched:
            self._report_errors(self.reconcile(touched))

    def _edge_by_index(self, ifindex: int) -> str | None:
        for name in self.settings.edge:
            if self._ifindex.get(name) == ifindex:
                return name
        return None

    def _upcall(self, family: int, table: int, upcall: structs.Upcall) -> None:
        self.counters["upcalls"] += 1
        if upcall.kind == structs.IGMPMSG_NOCACHE:
            flow = Flow(table, upcall.source, upcall.group, upcall.vif)
            self._flows[family].setdefault(upcall.group, set()).add(flow)
            self._report_errors(self._install(family, flow))
        elif upcall.kind == structs.IGMPMSG_WRONGVIF:
            key = (table, str(upcall.source), str(upcall.group), upcall.vif)
            self.wrong_vif[key] = self.wrong_vif.get(key, 0) + 1

    def _store_join(self, family: int, source: IPAddress | None, group: IPAddress, ifname: str) -> None:
        if self._store is None:
            return
        for vni in self._svi_vnis(family, ifname):
            self._store.local_join(vni, source, group, EDGE_PORT_PREFIX + ifname)

    def _store_leave(self, family: int, source: IPAddress | None, group: IPAddress, ifname: str) -> None:
        if self._store is None:
            return
        for vni in self._svi_vnis(family, ifname):
            self._store.local_leave(vni, source, group, EDGE_PORT_PREFIX + ifname)

    def _svi_vnis(self, family: int, ifname: str) -> list[int]:
        """VNIs whose SVI shares a table with the edge interface: SMET pulls their sources in."""
        tables = {s.table for s in self._slots[family].get(ifname, [])}
        return [
            vni
            for name, vni in self.settings.svis.items()
            if tables & {s.table for s in self._slots[family].get(name, [])}
        ]

    def _report_errors(self, lines: list[str]) -> None:
        for line in lines:
            log.warning("%s", line)
            self._event("error", {"message": line})

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(kind, data)

    # ----------------------------------------------------------------- timers

    def tick(self) -> None:
        with self._lock:
            self._tick()

    def _tick(self) -> None:
        """Expire memberships and send due general queries."""
        now = self._clock()
        for family in self.settings.families:
            gone = self._members[family].expire(now)
            for name, source, group in gone:
                self._store_leave(family, source, group, name)
            if gone:
                self._report_errors(self.reconcile({g for _n, _s, g in gone}))
        if self.settings.querier and now >= self._next_query:
            self._next_query = now + self.settings.query_interval
            for (_family, table), sock in self._sockets.items():
                if table != self.settings.tables[0]:
                    continue
                for name in self.settings.querier:
                    self._query(sock, name, None)

    def _query(self, sock: MrtSocket, name: str, group: IPAddress | None) -> None:
        index = self._ifindex.get(name)
        if index is None:
            return
        try:
            if sock.family == 4:
                g4 = group if isinstance(group, IPv4Address) else None
                payload = igmp.igmp_query(g4, 3, self.settings.query_response if g4 is None else 1.0)
                sock.send_query(payload, g4 or IPv4Address("224.0.0.1"), index)
            else:
                g6 = group if isinstance(group, IPv6Address) else None
                payload = igmp.mld_query(g6, 2, self.settings.query_response if g6 is None else 1.0)
                sock.send_query(payload, g6 or IPv6Address("ff02::1"), index)
        except OSError as exc:
            log.warning("cannot send a query on %s: %s", name, exc)

    def next_deadline(self) -> float | None:
        deadlines = [d for m in self._members.values() if (d := m.next_deadline()) is not None]
        if self.settings.querier:
            deadlines.append(self._next_query)
        return min(deadlines, default=None)

    # ----------------------------------------------------------------- read path

    def _kernel_table(self, family: int, table: int) -> int:
        """IPv6's default multicast table is 254 (RT6_TABLE_DFLT), IPv4's 253."""
        if table == RT_TABLE_DEFAULT and family == 6:
            return 254
        return table

    def kernel_routes(self, family: int = 4) -> list[Mroute]:
        """The MFC entries of the driver's tables as the kernel reports them (rtnetlink dump)."""
        tables = {self._kernel_table(family, t) for t in self.settings.tables}
        with NetlinkSocket() as nl:
            return [r for r in dump_mroutes(nl, family) if r.table in tables]

    def verify(self) -> list[str]:
        """Differences between what the kernel holds and what the driver wants (empty: equal)."""
        problems: list[str] = []
        for family in self.settings.families:
            names = self._names(family)
            by_index = {self._ifindex[n]: n for n in self._slots[family] if n in self._ifindex}
            want: dict[tuple[int, str, str, str], frozenset[str]] = {}
            for flow, oifs in self.routes(family).items():
                table = self._kernel_table(family, flow.table)
                iif = names.get((flow.table, flow.iif), "?")
                want[(table, str(flow.source), str(flow.group), iif)] = frozenset(
                    names.get((flow.table, v), "?") for v in oifs
                )
            have: dict[tuple[int, str, str, str], frozenset[str]] = {}
            for r in self.kernel_routes(family):
                if r.unresolved or r.iif is None:
                    continue
                key = (r.table, str(r.source), str(r.group), by_index.get(r.iif, f"if{r.iif}"))
                have[key] = frozenset(by_index.get(i, f"if{i}") for i, _ttl in r.oifs)
            for key in sorted(want.keys() | have.keys()):
                if want.get(key) != have.get(key):
                    table, source, group, iif = key
                    problems.append(
                        f"IPv{family} table {table} ({source}, {group}) iif {iif}: kernel has "
                        f"{sorted(have[key]) if key in have else 'no route'}, wanted "
                        f"{sorted(want[key]) if key in want else 'no route'}"
                    )
        return problems

    def show_mroutes(self, family: int = 4) -> list[str]:
        names = {index: name for name, index in self._ifindex.items()}
        return mroute_lines(self.kernel_routes(family), names)

    def show_vifs(self, family: int = 4) -> list[dict[str, Any]]:
        """Per VIF: table, index, interface and, for the default table, the kernel's counters."""
        counters: dict[int, VifStats] = {}
        with contextlib.suppress(OSError):
            counters = {v.index: v for v in read_vifs(family)}
        out = []
        for name, slots in sorted(self._slots[family].items()):
            for slot in slots:
                row: dict[str, Any] = {"interface": name, "table": slot.table, "vif": slot.vif}
                stats = counters.get(slot.vif) if slot.table == RT_TABLE_DEFAULT else None
                if stats is not None and stats.name == name:
                    row.update(
                        packets_in=stats.packets_in,
                        packets_out=stats.packets_out,
                        bytes_in=stats.bytes_in,
                        bytes_out=stats.bytes_out,
                    )
                out.append(row)
        return out

    def rpf_problems(self) -> list[str]:
        """Routes the kernel's reverse-path filter will starve: strict ``rp_filter`` on the input
        interface while the unicast route back to the source leaves by another interface."""
        checks: set[tuple[IPAddress, str]] = set()
        for family in self.settings.families:
            names = self._names(family)
            for flow in self.routes(family):
                checks.add((flow.source, names.get((flow.table, flow.iif), "")))
        for route in self.settings.routes:
            if route.source is not None:
                checks.add((route.source, route.iif))
        return [
            p for source, iif in sorted(checks, key=str) if iif and (p := _off_loop(rpf_problem, source, iif))
        ]

    # ----------------------------------------------------------------- a simple loop

    def serve(self, stop: threading.Event, refresh_every: float = 1.0) -> None:
        """Blocking loop for a thread or a standalone process: packets, timers, refreshes."""
        next_refresh = self._clock() + refresh_every
        by_fd = {sock.fileno(): sock for sock in self._sockets.values()}
        while not stop.is_set():
            now = self._clock()
            deadline = min(d for d in (self.next_deadline(), next_refresh, now + 0.2) if d is not None)
            ready, _w, _x = select.select(list(by_fd), [], [], max(0.0, deadline - now))
            for fd in ready:
                self.handle(by_fd[fd])
            self.tick()
            if self._clock() >= next_refresh:
                next_refresh = self._clock() + refresh_every
                self.refresh()


def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a short-lived thread and wait: pyroute2's blocking API refuses to run in
    a thread with a running asyncio loop (the daemon's), and a new thread inherits the
    caller's network namespace."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def _rp_filter(ifname: str) -> int:
    """Effective IPv4 rp_filter of an interface: the kernel uses max(all, interface)."""
    values = []
    for scope in ("all", ifname):
        try:
            with open(f"/proc/sys/net/ipv4/conf/{scope}/rp_filter") as f:
                values.append(int(f.read().strip()))
        except (OSError, ValueError):
            values.append(0)
    return max(values)


def rpf_problem(source: IPAddress, iif: str) -> str | None:
    """One line when strict rp_filter on ``iif`` will drop ``source``'s traffic, else None."""
    if source.version != 4 or _rp_filter(iif) != 1:
        return None  # IPv6 has no rp_filter sysctl; loose mode (2) accepts any route back
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            reply = ipr.route("get", dst=str(source))
        except NetlinkError as exc:
            return (
                f"source {source} arriving on {iif}: no unicast route back ({exc}); strict rp_filter drops it"
            )
        oif = reply[0].get_attr("RTA_OIF") if reply else None
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out = names.get(oif, f"if{oif}")
    if out == iif:
        return None
    return (
        f"source {source} arrives on {iif} but the route back leaves by {out}; rp_filter is strict (1) on "
        f"{iif}, so the kernel drops it before multicast routing: set rp_filter to 2 (loose) or fix the route"
    )


def parse_static_route(source: str | None, group: str, iif: str, oifs: Iterable[str]) -> StaticRoute:
    return StaticRoute(
        None if source in (None, "*") else ip_address(source), ip_address(group), iif, tuple(oifs)
    )
