"""Which multicast routes (MFC entries) the kernel should hold, and who wants a group.

Pure: memberships, store views, static routes and the VIF plan in; routes out. A route is a
*flow* (table, S, G, input VIF) and its output VIFs. Flows come from static (S,G) routes and
from the kernel's NOCACHE upcalls (the first packet of an (S,G) on a VIF without a route),
which is also how (*,G) interest becomes per-source routes, as smcroute does: the kernel's own
(*,G) entries follow PIM-SM shared-tree rules that do not fit an edge router.

Output interfaces of a flow (minus its input): edge interfaces with a local IGMP/MLD member,
the SVI of each VNI where a remote VTEP or a local bridge port wants the group, and the
outputs of matching static routes; only interfaces with a VIF in the flow's table count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeAlias

from bgp.evpn import IPAddress
from ipmr.vifs import Slot

__all__ = [
    "EDGE_PORT_PREFIX",
    "Flow",
    "Memberships",
    "StaticRoute",
    "StoreWants",
    "desired_routes",
    "route_diff",
    "svi_wants",
]

EDGE_PORT_PREFIX = "ipmr:"
"""Port names under which edge joins are recorded in the store (for SMET origination); they
are not bridge ports, so they never make the SVI an output."""


Key: TypeAlias = tuple[str, "IPAddress | None", "IPAddress"]


class Flow(NamedTuple):
    table: int
    source: IPAddress
    group: IPAddress
    iif: int  # VIF index


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """smcroute-like ``mroute from IIF [source S] group G to OIF...``; source None is (*,G)."""

    source: IPAddress | None
    group: IPAddress
    iif: str
    oifs: tuple[str, ...]


class StoreWants(Protocol):
    def receivers(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[IPAddress]: ...
    def local_ports(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[str]: ...


class Memberships:
    """Edge-interface members per (S,G) with their timers (IGMP/MLD), time passed in.

    A join sets the timer to the group membership interval; a leave lowers it to the last
    member query time, so another host on the segment can still answer a query and keep it.
    Indexed by group, since routes ask per group.
    """

    def __init__(self, gmi: float = 260.0, lmqt: float = 2.0) -> None:
        self.gmi = gmi
        self.lmqt = lmqt
        self._by_group: dict[IPAddress, dict[tuple[str, IPAddress | None], float]] = {}

    def join(self, ifname: str, source: IPAddress | None, group: IPAddress, now: float) -> bool:
        members = self._by_group.setdefault(group, {})
        new = (ifname, source) not in members
        members[(ifname, source)] = now + self.gmi
        return new

    def leave(self, ifname: str, source: IPAddress | None, group: IPAddress, now: float) -> None:
        members = self._by_group.get(group)
        if members is not None and (ifname, source) in members:
            members[(ifname, source)] = min(members[(ifname, source)], now + self.lmqt)

    def _remove(self, pick: Callable[[str, IPAddress | None, float], bool]) -> list[Key]:
        gone: list[Key] = []
        for group, members in list(self._by_group.items()):
            for (ifname, source), expiry in list(members.items()):
                if pick(ifname, source, expiry):
                    del members[(ifname, source)]
                    gone.append((ifname, source, group))
            if not members:
                del self._by_group[group]
        return gone

    def drop_interface(self, ifname: str) -> list[Key]:
        return self._remove(lambda i, _s, _t: i == ifname)

    def expire(self, now: float) -> list[Key]:
        return self._remove(lambda _i, _s, t: t <= now)

    def next_deadline(self) -> float | None:
        return min((t for m in self._by_group.values() for t in m.values()), default=None)

    def interfaces(self, source: IPAddress, group: IPAddress) -> set[str]:
        """Edge interfaces with a member for this source: (S,G) or (*,G) members."""
        members = self._by_group.get(group)
        if not members:
            return set()
        return {ifname for (ifname, s) in members if s is None or s == source}

    def entries(self) -> list[tuple[str, IPAddress | None, IPAddress, float]]:
        rows = [(i, s, g, t) for g, m in self._by_group.items() for (i, s), t in m.items()]
        return sorted(rows, key=str)

    def groups(self) -> set[IPAddress]:
        return set(self._by_group)


def svi_wants(store: StoreWants, svis: Mapping[str, int], source: IPAddress, group: IPAddress) -> set[str]:
    """SVIs (name -> VNI) whose VNI has a remote receiver or a local bridge-port member."""
    out = set()
    for name, vni in svis.items():
        if store.receivers(vni, source, group):
            out.add(name)
            continue
        for s in (source, None):
            if any(not p.startswith(EDGE_PORT_PREFIX) for p in store.local_ports(vni, s, group)):
                out.add(name)
                break
    return out


def static_outputs(routes: Iterable[StaticRoute], source: IPAddress, group: IPAddress, iif: str) -> set[str]:
    out: set[str] = set()
    for r in routes:
        if r.group == group and r.iif == iif and (r.source is None or r.source == source):
            out.update(r.oifs)
    return out


def desired_routes(
    flows: Iterable[Flow],
    names: Mapping[tuple[int, int], str],
    slots: Mapping[str, Sequence[Slot]],
    wanted: Mapping[Flow, set[str]],
) -> dict[Flow, frozenset[int]]:
    """Output VIFs per flow, from the interface names that want it (``wanted``)."""
    out: dict[Flow, frozenset[int]] = {}
    for flow in flows:
        vifs = set()
        for name in wanted.get(flow, ()):
            for slot in slots.get(name, ()):
                if slot.table == flow.table:
                    vifs.add(slot.vif)
        vifs.discard(flow.iif)
        if (flow.table, flow.iif) in names:
            out[flow] = frozenset(vifs)
    return out


def route_diff(
    desired: Mapping[Flow, frozenset[int]], installed: Mapping[Flow, frozenset[int]]
) -> tuple[dict[Flow, frozenset[int]], list[Flow]]:
    """(routes to add or update, flows to delete). MRT_ADD_MFC replaces an existing route."""
    put = {f: oifs for f, oifs in desired.items() if installed.get(f) != oifs}
    delete = [f for f in installed if f not in desired]
    return put, delete
