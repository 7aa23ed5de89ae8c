"""From BGP events to store facts: route-target import, VNI mapping and peer lifecycle.

Pure: the caller passes the clock reading. IMET maps to its VNI by the PMSI label (RFC 8365
§5.1.3) and must also match the VNI's import route targets; SMET carries no label and maps by
route target alone (Ethernet Tag 0 for a VLAN-based service, or a tag naming a configured VNI).
Auto route targets match ``*:VNI`` whatever the AS part, as FRR does for eBGP fabrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.store import EMPTY, ChangeSet, RemoteImet, RemoteSmet, Store
from bgp.attributes import PMSI_INGRESS_REPLICATION, RouteTarget
from bgp.evpn import InclusiveMulticast, SelectiveMulticast
from bgp.exabgp_json import (
    EVPN_FAMILY,
    EndOfRib,
    Event,
    ParseError,
    PeerOpen,
    PeerState,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
)

AUTO = None  # import route targets of a VNI: AUTO means "*:VNI"


class ImportPolicy:
    """VNI -> explicit import route targets, or AUTO. Indexed by route target once, since every
    SMET is matched against all configured VNIs."""

    def __init__(self, vnis: Mapping[int, frozenset[RouteTarget] | None]) -> None:
        self.vnis: Mapping[int, frozenset[RouteTarget] | None] = dict(vnis)
        self._auto = frozenset(vni for vni, rts in self.vnis.items() if rts is AUTO)
        self._explicit: dict[RouteTarget, set[int]] = {}
        for vni, rts in self.vnis.items():
            for rt in rts or ():
                self._explicit.setdefault(rt, set()).add(vni)

    def _candidates(self, rts: Iterable[RouteTarget]) -> set[int]:
        found: set[int] = set()
        for rt in rts:
            if rt.assigned in self._auto:
                found.add(rt.assigned)
            explicit = self._explicit.get(rt)
            if explicit:
                found |= explicit
        return found

    def matches(self, vni: int, rts: Iterable[RouteTarget]) -> bool:
        return vni in self._candidates(rts)

    def vni_for_smet(self, etag: int, rts: frozenset[RouteTarget]) -> int | None:
        found = self._candidates(rts)
        if etag and etag in self.vnis:
            return etag if etag in found else None
        return next(iter(found)) if len(found) == 1 else None


@dataclass
class Intake:
    """Applies parsed ExaBGP events to the store; counts what it ignores and why."""

    store: Store
    policy: ImportPolicy
    graceful_restart: Mapping[str, float] = field(default_factory=dict)  # peer -> restart time
    # What each peer's last OPEN offered for EVPN: its restart time, or None for no graceful
    # restart. A peer not in here (no OPEN seen: ExaBGP's ``parsed`` form) gets the configured time.
    offered: dict[str, float | None] = field(default_factory=dict)
    refresh_stale_time: float = 300.0
    counters: Counter[str] = field(default_factory=Counter)
    errors: list[ParseError] = field(default_factory=list)
    max_errors_kept: int = 100

    def apply(self, event: Event, now: float) -> ChangeSet:
        if isinstance(event, RouteAnnounce):
            return self._announce(event)
        if isinstance(event, RouteWithdraw):
            route = event.route
            if isinstance(route, InclusiveMulticast | SelectiveMulticast):
                self.counters["withdraw"] += 1
                return self.store.withdraw(event.peer, route.key())
            return EMPTY
        if isinstance(event, PeerState):
            if event.state == "down":
                self.counters["peer-down"] += 1
                return self.store.peer_down(event.peer, now, self.restart_time(event))
            return EMPTY
        if isinstance(event, PeerOpen):
            offered = event.restart_time is not None and EVPN_FAMILY in event.families
            self.offered[event.peer] = float(event.restart_time or 0) if offered else None
            return EMPTY
        if isinstance(event, EndOfRib):
            return self.store.end_of_rib(event.peer)
        if isinstance(event, RouteRefresh):
            if event.subtype == "begin":
                self.store.mark_stale(event.peer, now + self.refresh_stale_time)
            elif event.subtype == "end":
                return self.store.end_of_rib(event.peer)
            return EMPTY
        if isinstance(event, ParseError):
            self.counters["parse-error"] += 1
            self.errors.append(event)
            del self.errors[: -self.max_errors_kept]
        return EMPTY

    def restart_time(self, down: PeerState) -> float | None:
        """How long a lost peer's paths are kept (RFC 4724 section 4.2), None for not at all:
        only with graceful restart configured for the peer, only if its OPEN offered it for
        EVPN (then for at most the time it offered), and never after a NOTIFICATION, which
        ends a session on purpose rather than in a restart."""
        configured = self.graceful_restart.get(down.peer)
        if configured is None or "notification" in down.reason.lower():
            return None
        if down.peer not in self.offered:
            return configured
        offered = self.offered[down.peer]
        return None if offered is None else min(configured, offered)

    def _announce(self, event: RouteAnnounce) -> ChangeSet:
        route, attrs = event.route, event.attributes
        if isinstance(route, InclusiveMulticast):
            pmsi = attrs.pmsi
            if pmsi is None or pmsi.tunnel_type != PMSI_INGRESS_REPLICATION:
                return self._ignore(event, "imet-not-ingress-replication")
            vni = pmsi.label
            if vni not in self.policy.vnis:
                return self._ignore(event, "vni-not-configured")
            if not self.policy.matches(vni, attrs.route_targets):
                return self._ignore(event, "route-target-mismatch")
            flags = attrs.mcast_flags
            fact: RemoteImet | RemoteSmet = RemoteImet(
                vni,
                route.originator,
                igmp_proxy=flags is not None and flags.igmp_proxy,
                mld_proxy=flags is not None and flags.mld_proxy,
            )
        elif isinstance(route, SelectiveMulticast):
            found = self.policy.vni_for_smet(route.etag, attrs.route_targets)
            if found is None:
                return self._ignore(event, "route-target-mismatch")
            fact = RemoteSmet(found, route.originator, route.source, route.group, route.flags.exclude)
        else:
            self.counters[f"type-{route.CODE}-ignored"] += 1
            return EMPTY
        self.counters["announce"] += 1
        return self.store.announce(event.peer, route.key(), fact)

    def _ignore(self, event: RouteAnnounce, reason: str) -> ChangeSet:
        self.counters[reason] += 1
        # A path that changed attributes so that it no longer imports must stop counting.
        key = event.route.key() if isinstance(event.route, InclusiveMulticast | SelectiveMulticast) else b""
        return self.store.withdraw(event.peer, key) if key else EMPTY
