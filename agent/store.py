"""The group-membership store (DESIGN §3): who in the fabric wants what, per VNI.

Everything the reconcilers, the SMET originator and the event stream need is derived from
two inputs: BGP paths (IMET/SMET facts, already mapped to a VNI by route-target import) and
local joins. The store is pure and owned by one task: time arrives as arguments, so graceful
restart and route-refresh sweeps can be tested without clocks.

Paths are kept per (peer, NLRI key) because the same route reaches us from every route
reflector and must only go away with its last copy. The views never need to know *which*
fact a path carries beyond "is there a live path with property X", so the indexes hold path
counts per (VNI, VTEP) and per (VNI, S, G, VTEP); an announce or withdraw touches a couple of
dict entries and never scans other paths (the store sits on the BGP hot path).

Every mutation returns a ``ChangeSet`` naming exactly the views that changed, so consumers
recompute only those. A ``(*,G)`` change is reported as ``(vni, None, G)`` only: the consumer
recomputes the ``(S,G)`` entries of that group itself (the kernel's VXLAN MDB does not merge
them, see ``receivers``). A change to a VNI's all-multicast VTEPs is reported in
``ChangeSet.all_multicast`` and implies that every group of that VNI changed receivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import ClassVar, Final, TypeAlias

from bgp.evpn import IPAddress

__all__ = [
    "DEFAULT_LIMITS",
    "EMPTY",
    "ChangeSet",
    "Fact",
    "GroupKey",
    "Limits",
    "Rejected",
    "RemoteImet",
    "RemoteSmet",
    "Store",
]

GroupKey: TypeAlias = tuple[int, IPAddress | None, IPAddress]
"""(vni, source or None for ``*``, group)."""

SourceGroup: TypeAlias = tuple[IPAddress | None, IPAddress]


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class RemoteImet:
    """VTEP ``vtep`` is in ``flood_list(vni)``.

    The proxy flags come from the Multicast Flags extended community; a VTEP that lacks one
    does not take part in RFC 9251 for that family and must get all of its multicast.
    """

    vni: int
    vtep: IPAddress
    igmp_proxy: bool
    mld_proxy: bool


@dataclass(frozen=True, slots=True)
class RemoteSmet:
    """VTEP ``vtep`` wants ``(source, group)`` in ``vni``; ``source`` None means ``(*,G)``.

    ``exclude`` (the IE flag) is kept for display only: the kernel's VXLAN MDB replicates per
    group and cannot express exclude lists, so it does not change who receives.
    """

    vni: int
    vtep: IPAddress
    source: IPAddress | None
    group: IPAddress
    exclude: bool = False


Fact: TypeAlias = RemoteImet | RemoteSmet


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-VNI caps, so that one misbehaving or hostile peer cannot blow up the kernel tables.

    Only *new* entries are refused at the cap: VTEPs and groups already present keep being
    accepted, so a full VNI stays stable instead of flapping.
    """

    max_vteps_per_vni: int = 4096
    max_groups_per_vni: int = 8192

    def __post_init__(self) -> None:
        if self.max_vteps_per_vni < 0 or self.max_groups_per_vni < 0:
            raise ValueError("limits must not be negative")


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an input was refused, one line naming the VTEP/VNI/group, for logs and events."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Which views an operation changed; consumers recompute exactly these.

    - ``flood``: VNIs whose ``flood_list`` changed.
    - ``all_multicast``: VNIs whose ``all_multicast`` set changed (either family): every
      group of such a VNI has new receivers.
    - ``groups``: ``(vni, S, G)`` whose SMET receivers changed; a ``(*,G)`` change appears
      as ``(vni, None, G)`` only and the consumer recomputes that group's ``(S,G)`` entries.
    - ``local``: ``(vni, S, G)`` that appeared or disappeared locally (not a mere change of
      ports).
    - ``rejected``: set when the input was refused. A refusal is not a change by itself, so
      it does not make the ChangeSet true; a refused re-announce that withdrew the previous
      fact of its path does.
    """

    flood: frozenset[int] = frozenset()
    all_multicast: frozenset[int] = frozenset()
    groups: frozenset[GroupKey] = frozenset()
    local: frozenset[GroupKey] = frozenset()
    rejected: Rejected | None = None

    EMPTY: ClassVar[ChangeSet]

    def __bool__(self) -> bool:
        return bool(self.flood or self.all_multicast or self.groups or self.local)

    def merge(self, other: ChangeSet) -> ChangeSet:
        """Union of both; the first rejection wins since one operation refuses one input."""
        if other is EMPTY:
            return self
        if self is EMPTY:
            return other
        return ChangeSet(
            flood=self.flood | other.flood,
            all_multicast=self.all_multicast | other.all_multicast,
            groups=self.groups | other.groups,
            local=self.local | other.local,
            rejected=self.rejected if self.rejected is not None else other.rejected,
        )


EMPTY: Final = ChangeSet()
ChangeSet.EMPTY = EMPTY


class _Delta:
    """Mutable accumulator, so bulk sweeps do not build one frozen ChangeSet per path."""

    __slots__ = ("all_multicast", "flood", "groups", "local")

    def __init__(self) -> None:
        self.flood: set[int] = set()
        self.all_multicast: set[int] = set()
        self.groups: set[GroupKey] = set()
        self.local: set[GroupKey] = set()

    def freeze(self, rejected: Rejected | None = None) -> ChangeSet:
        if not (self.flood or self.all_multicast or self.groups or self.local):
            return EMPTY if rejected is None else ChangeSet(rejected=rejected)
        return ChangeSet(
            frozenset(self.flood),
            frozenset(self.all_multicast),
            frozenset(self.groups),
            frozenset(self.local),
            rejected,
        )


# --------------------------------------------------------------------------- address checks
# Integer arithmetic instead of ipaddress' is_* properties: those build networks on every call
# and would dominate the cost of an announce.

_V4_LINK_LOCAL_GROUPS: Final = 0xE00000  # 224.0.0.0/24, >> 8
_V6_LINK_LOCAL_GROUPS: Final = 0xFF02  # ff02::/16, >> 112


def _is_multicast(addr: IPAddress) -> bool:
    if isinstance(addr, IPv4Address):
        return int(addr) >> 28 == 0xE
    return int(addr) >> 120 == 0xFF


def _martian_vtep(addr: IPAddress) -> bool:
    """Addresses no VTEP can have: unspecified, loopback, 0/8, limited broadcast, link-local.

    Link-local is refused because a VXLAN remote needs a routable underlay address.
    """
    n = int(addr)
    if isinstance(addr, IPv4Address):
        top = n >> 24
        return top in (0, 127) or n == 0xFFFFFFFF or n >> 16 == 0xA9FE
    return n in (0, 1) or n >> 118 == 0x3FA


def _is_link_local_group(group: IPAddress) -> bool:
    if isinstance(group, IPv4Address):
        return int(group) >> 8 == _V4_LINK_LOCAL_GROUPS
    return int(group) >> 112 == _V6_LINK_LOCAL_GROUPS


def _sg_text(source: IPAddress | None, group: IPAddress) -> str:
    return f"({'*' if source is None else source}, {group})"


def _fact_text(fact: Fact) -> str:
    if isinstance(fact, RemoteImet):
        return f"IMET vni {fact.vni} from VTEP {fact.vtep}"
    return f"SMET vni {fact.vni} {_sg_text(fact.source, fact.group)} from VTEP {fact.vtep}"


def _group_problem(source: IPAddress | None, group: IPAddress) -> tuple[str, str] | None:
    if not _is_multicast(group):
        return "bad-group", "group is not a multicast address"
    if source is not None:
        if source.version != group.version:
            return "bad-source", "source and group are of different address families"
        if _is_multicast(source) or int(source) == 0:
            return "bad-source", "source is not a unicast address"
    return None


# --------------------------------------------------------------------------- the store


class Store:
    """Remote paths, local joins and the views derived from them (see module docstring)."""

    __slots__ = (
        "_by_deadline",
        "_counters",
        "_imet",
        "_limits",
        "_local",
        "_no_igmp",
        "_no_mld",
        "_npaths",
        "_own",
        "_paths",
        "_smet",
        "_stale",
    )

    def __init__(self, own_vteps: Iterable[IPAddress] = (), limits: Limits = DEFAULT_LIMITS) -> None:
        self._own: frozenset[IPAddress] = frozenset(own_vteps)
        self._limits = limits
        # peer -> NLRI key -> fact
        self._paths: dict[str, dict[bytes, Fact]] = {}
        self._npaths = 0
        # vni -> VTEP -> [IMET paths, of which without IGMP proxy, of which without MLD proxy]
        self._imet: dict[int, dict[IPAddress, list[int]]] = {}
        # vni -> VTEPs with at least one live IMET path lacking the flag (the all-multicast sets)
        self._no_igmp: dict[int, set[IPAddress]] = {}
        self._no_mld: dict[int, set[IPAddress]] = {}
        # vni -> (S, G) -> VTEP -> SMET paths
        self._smet: dict[int, dict[SourceGroup, dict[IPAddress, int]]] = {}
        # vni -> (S, G) -> ports
        self._local: dict[int, dict[SourceGroup, set[str]]] = {}
        # peer -> NLRI key -> deadline, and deadline -> paths, for cheap next_deadline/expire
        self._stale: dict[str, dict[bytes, float]] = {}
        self._by_deadline: dict[float, set[tuple[str, bytes]]] = {}
        self._counters: dict[str, int] = {}

    # ----------------------------------------------------------------- remote paths

    def announce(self, peer: str, nlri_key: bytes, fact: RemoteImet | RemoteSmet) -> ChangeSet:
        """Add or replace the path (peer, nlri_key); a re-announce also makes it fresh again.

        A new fact for an existing path is an implicit withdraw of the old one. The new fact
        is added before the old one is removed, so a VTEP or group carried by both never
        drops out in between and the ChangeSet names only real changes.
        """
        paths = self._paths.get(peer)
        old = None if paths is None else paths.get(nlri_key)
        if old is not None:
            if self._stale:
                self._unstale(peer, nlri_key)
            if old == fact:
                return EMPTY
        problem = self._problem(fact, old)
        if problem is not None:
            reason, detail = problem
            self._counters[reason] = self._counters.get(reason, 0) + 1
            rejected = Rejected(reason, f"{_fact_text(fact)} from peer {peer}: {detail}")
            delta = _Delta()
            if old is not None:
                self._remove_path(peer, nlri_key, delta)
            return delta.freeze(rejected)
        if paths is None:
            paths = self._paths[peer] = {}
        paths[nlri_key] = fact
        delta = _Delta()
        self._add_fact(fact, delta)
        if old is None:
            self._npaths += 1
        else:
            self._remove_fact(old, delta)
        return delta.freeze()

    def withdraw(self, peer: str, nlri_key: bytes) -> ChangeSet:
        """Remove one path; unknown paths are ignored since withdraws may repeat or cross."""
        paths = self._paths.get(peer)
        if paths is None or nlri_key not in paths:
            return EMPTY
        delta = _Delta()
        self._remove_path(peer, nlri_key, delta)
        return delta.freeze()

    def peer_down(self, peer: str, now: float, restart_time: float | None = None) -> ChangeSet:
        """ExaBGP sends no withdraws when a session drops, so the store forgets the peer here.

        With graceful restart the paths stay usable (forwarding must not stop while the peer
        restarts) but become stale until re-announced, swept at End-of-RIB or at the deadline.
        """
        if restart_time is not None:
            self.mark_stale(peer, now + restart_time)
            return EMPTY
        paths = self._paths.get(peer)
        if paths is None:
            return EMPTY
        delta = _Delta()
        for key in list(paths):
            self._remove_path(peer, key, delta)
        return delta.freeze()

    def mark_stale(self, peer: str, deadline: float) -> None:
        """Mark every path of ``peer`` stale, e.g. at route-refresh begin (RFC 7313).

        A path that is already stale keeps the earlier deadline: a peer that keeps flapping
        must not keep its stale paths alive forever (RFC 4724 §4.2 bounds them by the first
        restart time).
        """
        paths = self._paths.get(peer)
        if not paths:
            return
        stale = self._stale.setdefault(peer, {})
        bucket = self._by_deadline.get(deadline)
        for key in paths:
            current = stale.get(key)
            if current is not None:
                if current <= deadline:
                    continue
                self._drop_from_bucket(current, peer, key)
            stale[key] = deadline
            if bucket is None:
                bucket = self._by_deadline[deadline] = set()
            bucket.add((peer, key))

    def end_of_rib(self, peer: str) -> ChangeSet:
        """Paths the peer did not re-announce before End-of-RIB (or refresh end) are gone."""
        stale = self._stale.get(peer)
        if not stale:
            return EMPTY
        delta = _Delta()
        for key in list(stale):
            self._remove_path(peer, key, delta)
        return delta.freeze()

    def expire(self, now: float) -> ChangeSet:
        """Sweep stale paths whose deadline has passed, for any peer."""
        due = [deadline for deadline in self._by_deadline if deadline <= now]
        if not due:
            return EMPTY
        delta = _Delta()
        for deadline in due:
            for peer, key in list(self._by_deadline.get(deadline, ())):
                self._remove_path(peer, key, delta)
        return delta.freeze()

    def next_deadline(self) -> float | None:
        """When the caller's timer should call ``expire`` next; None when nothing is stale."""
        return min(self._by_deadline) if self._by_deadline else None

    def is_stale(self, peer: str, nlri_key: bytes) -> bool:
        """For display (``evpnctl show peers``) and tests."""
        stale = self._stale.get(peer)
        return stale is not None and nlri_key in stale

    # ----------------------------------------------------------------- local joins

    def local_join(self, vni: int, source: IPAddress | None, group: IPAddress, port: str) -> ChangeSet:
        """Record that ``port`` wants the group; idempotent per port.

        Snooping re-reports an existing MDB entry on every refresh, so a join is a set
        membership, not a counter: one leave per port ends that port's interest. Link-local
        control groups are refused because the agent must never originate SMET for them.
        """
        problem = _group_problem(source, group)
        if problem is None and _is_link_local_group(group):
            problem = ("link-local-group", "link-local control group is never joined by SMET")
        if problem is not None:
            reason, detail = problem
            self._counters[reason] = self._counters.get(reason, 0) + 1
            text = f"local join vni {vni} {_sg_text(source, group)} on port {port}: {detail}"
            return ChangeSet(rejected=Rejected(reason, text))
        groups = self._local.get(vni)
        if groups is None:
            groups = self._local[vni] = {}
        sg = (source, group)
        ports = groups.get(sg)
        if ports is None:
            groups[sg] = {port}
            return ChangeSet(local=frozenset(((vni, source, group),)))
        ports.add(port)
        return EMPTY

    def local_leave(self, vni: int, source: IPAddress | None, group: IPAddress, port: str) -> ChangeSet:
        """Drop one port's interest; the group goes away locally with its last port."""
        groups = self._local.get(vni)
        if groups is None:
            return EMPTY
        sg = (source, group)
        ports = groups.get(sg)
        if ports is None or port not in ports:
            return EMPTY
        ports.discard(port)
        if ports:
            return EMPTY
        del groups[sg]
        if not groups:
            del self._local[vni]
        return ChangeSet(local=frozenset(((vni, source, group),)))

    # ----------------------------------------------------------------- views

    def flood_list(self, vni: int) -> frozenset[IPAddress]:
        """Remote VTEPs that get BUM traffic (and 224.0.0.x) of the VNI."""
        return frozenset(self._imet.get(vni, ()))

    def all_multicast(self, vni: int, version: int) -> frozenset[IPAddress]:
        """Flood-list VTEPs without the IGMP (4) / MLD (6) proxy flag (RFC 9251 §4).

        They announce no SMET for that family, so pruning them would black-hole receivers
        behind them: they get all IP multicast of that family.
        """
        return frozenset(self._proxyless(version).get(vni, ()))

    def receivers(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[IPAddress]:
        """Remote VTEPs that must get a copy of (source, group) traffic.

        An (S,G) query includes the (*,G) receivers and the all-multicast VTEPs because the
        kernel's VXLAN MDB merges neither for us.
        """
        out: set[IPAddress] = set()
        groups = self._smet.get(vni)
        if groups is not None:
            exact = groups.get((source, group))
            if exact is not None:
                out.update(exact)
            if source is not None:
                any_source = groups.get((None, group))
                if any_source is not None:
                    out.update(any_source)
        proxyless = self._proxyless(group.version).get(vni)
        if proxyless is not None:
            out.update(proxyless)
        return frozenset(out)

    def reasons(
        self, vni: int, source: IPAddress | None, group: IPAddress
    ) -> dict[IPAddress, frozenset[str]]:
        """Per receiver, why it gets the traffic: operators debugging "why does X get G?"."""
        out: dict[IPAddress, set[str]] = {}
        groups = self._smet.get(vni)
        if groups is not None:
            for vtep in groups.get((source, group), ()):
                out.setdefault(vtep, set()).add("smet")
            if source is not None:
                for vtep in groups.get((None, group), ()):
                    out.setdefault(vtep, set()).add("smet-any-source")
        label = "no-igmp-proxy" if group.version == 4 else "no-mld-proxy"
        for vtep in self._proxyless(group.version).get(vni, ()):
            out.setdefault(vtep, set()).add(label)
        return {vtep: frozenset(why) for vtep, why in out.items()}

    def remote_groups(self, vni: int) -> frozenset[SourceGroup]:
        """(S,G) and (*,G) with SMET interest from some VTEP; (*,G) has source None."""
        return frozenset(self._smet.get(vni, ()))

    def local_groups(self, vni: int) -> frozenset[SourceGroup]:
        """Groups joined on some local port: what the agent originates SMET for."""
        return frozenset(self._local.get(vni, ()))

    def local_ports(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[str]:
        groups = self._local.get(vni)
        if groups is None:
            return frozenset()
        return frozenset(groups.get((source, group), ()))

    def vnis(self) -> frozenset[int]:
        """VNIs with any remote or local state."""
        return frozenset(self._imet.keys() | self._smet.keys() | self._local.keys())

    def peers(self) -> dict[str, int]:
        """Peer -> paths held; peers without paths are not listed."""
        return {peer: len(paths) for peer, paths in self._paths.items()}

    def path_count(self) -> int:
        return self._npaths

    @property
    def counters(self) -> Mapping[str, int]:
        """Rejections by reason (a snapshot), for ``evpnctl show summary`` and metrics."""
        return dict(self._counters)

    def index_sizes(self) -> dict[str, int]:
        """Entries in every internal index, so tests can prove nothing leaks after withdraws."""
        return {
            "paths": len(self._paths),
            "imet": len(self._imet),
            "no_igmp": len(self._no_igmp),
            "no_mld": len(self._no_mld),
            "smet": len(self._smet),
            "local": len(self._local),
            "stale": len(self._stale),
            "deadlines": len(self._by_deadline),
        }

    # ----------------------------------------------------------------- internals

    def _proxyless(self, version: int) -> dict[int, set[IPAddress]]:
        if version == 4:
            return self._no_igmp
        if version == 6:
            return self._no_mld
        raise ValueError(f"IP version must be 4 or 6, not {version!r}")

    def _problem(self, fact: Fact, old: Fact | None) -> tuple[str, str] | None:
        """Guard rails: why ``fact`` may not be stored, or None.

        ``old`` is the fact this path carries now; it will be removed, so a slot it alone
        holds counts as free when checking the caps.
        """
        vtep = fact.vtep
        if vtep in self._own:
            return "own-vtep", "VTEP is this agent's own address"
        if _martian_vtep(vtep):
            return "martian-vtep", "VTEP is not a usable unicast address"
        if _is_multicast(vtep):
            return "multicast-vtep", "VTEP is a multicast address"
        vni = fact.vni
        if isinstance(fact, RemoteImet):
            vteps = self._imet.get(vni)
            if vteps is None or vtep not in vteps:
                used = 0 if vteps is None else len(vteps)
                cap = self._limits.max_vteps_per_vni
                if (
                    used >= cap
                    and vteps is not None
                    and isinstance(old, RemoteImet)
                    and old.vni == vni
                    and vteps[old.vtep][0] == 1
                ):
                    used -= 1
                if used >= cap:
                    return "vtep-cap", f"VNI already has {cap} VTEPs"
            return None
        problem = _group_problem(fact.source, fact.group)
        if problem is not None:
            return problem
        groups = self._smet.get(vni)
        sg = (fact.source, fact.group)
        if groups is None or sg not in groups:
            used = 0 if groups is None else len(groups)
            cap = self._limits.max_groups_per_vni
            if used >= cap and groups is not None and isinstance(old, RemoteSmet) and old.vni == vni:
                held = groups[(old.source, old.group)]
                if len(held) == 1 and held[old.vtep] == 1:
                    used -= 1
            if used >= cap:
                return "group-cap", f"VNI already has {cap} groups"
        return None

    def _add_fact(self, fact: Fact, delta: _Delta) -> None:
        vni = fact.vni
        vtep = fact.vtep
        if isinstance(fact, RemoteImet):
            vteps = self._imet.get(vni)
            if vteps is None:
                vteps = self._imet[vni] = {}
            counts = vteps.get(vtep)
            if counts is None:
                counts = vteps[vtep] = [0, 0, 0]
                delta.flood.add(vni)
            counts[0] += 1
            if not fact.igmp_proxy:
                counts[1] += 1
                if counts[1] == 1:
                    self._no_igmp.setdefault(vni, set()).add(vtep)
                    delta.all_multicast.add(vni)
            if not fact.mld_proxy:
                counts[2] += 1
                if counts[2] == 1:
                    self._no_mld.setdefault(vni, set()).add(vtep)
                    delta.all_multicast.add(vni)
            return
        groups = self._smet.get(vni)
        if groups is None:
            groups = self._smet[vni] = {}
        sg = (fact.source, fact.group)
        wanted = groups.get(sg)
        if wanted is None:
            wanted = groups[sg] = {}
        n = wanted.get(vtep, 0)
        wanted[vtep] = n + 1
        if n == 0:
            delta.groups.add((vni, fact.source, fact.group))

    def _remove_fact(self, fact: Fact, delta: _Delta) -> None:
        vni = fact.vni
        vtep = fact.vtep
        if isinstance(fact, RemoteImet):
            vteps = self._imet[vni]
            counts = vteps[vtep]
            counts[0] -= 1
            if not fact.igmp_proxy:
                counts[1] -= 1
                if counts[1] == 0:
                    _discard(self._no_igmp, vni, vtep)
                    delta.all_multicast.add(vni)
            if not fact.mld_proxy:
                counts[2] -= 1
                if counts[2] == 0:
                    _discard(self._no_mld, vni, vtep)
                    delta.all_multicast.add(vni)
            if counts[0] == 0:
                del vteps[vtep]
                delta.flood.add(vni)
                if not vteps:
                    del self._imet[vni]
            return
        groups = self._smet[vni]
        sg = (fact.source, fact.group)
        wanted = groups[sg]
        n = wanted[vtep] - 1
        if n:
            wanted[vtep] = n
            return
        del wanted[vtep]
        delta.groups.add((vni, fact.source, fact.group))
        if not wanted:
            del groups[sg]
            if not groups:
                del self._smet[vni]

    def _remove_path(self, peer: str, key: bytes, delta: _Delta) -> None:
        paths = self._paths[peer]
        fact = paths.pop(key)
        self._npaths -= 1
        if not paths:
            del self._paths[peer]
        if self._stale:
            self._unstale(peer, key)
        self._remove_fact(fact, delta)

    def _unstale(self, peer: str, key: bytes) -> None:
        stale = self._stale.get(peer)
        if stale is None:
            return
        deadline = stale.pop(key, None)
        if deadline is None:
            return
        if not stale:
            del self._stale[peer]
        self._drop_from_bucket(deadline, peer, key)

    def _drop_from_bucket(self, deadline: float, peer: str, key: bytes) -> None:
        bucket = self._by_deadline[deadline]
        bucket.discard((peer, key))
        if not bucket:
            del self._by_deadline[deadline]


def _discard(index: dict[int, set[IPAddress]], vni: int, vtep: IPAddress) -> None:
    members = index[vni]
    members.discard(vtep)
    if not members:
        del index[vni]
