"""The agent's own EVPN routes: desired IMET per VNI and SMET per locally joined group, and the
command diff that moves ExaBGP from what was announced to what is wanted.

Pure and level-triggered: callers keep the dict of what ExaBGP acknowledged and ask for the
commands that close the gap; nothing here remembers anything between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bgp.attributes import PMSI_INGRESS_REPLICATION, MulticastFlags, PmsiTunnel, RouteTarget
from bgp.commands import EvpnCommand, RouteAttributes, format_command
from bgp.evpn import (
    InclusiveMulticast,
    IPAddress,
    RouteDistinguisher,
    SelectiveMulticast,
    SmetFlags,
)


@dataclass(frozen=True, slots=True)
class VniOrigin:
    vni: int
    rd: RouteDistinguisher
    export_rts: tuple[RouteTarget, ...]


@dataclass(frozen=True, slots=True)
class OriginSettings:
    vtep: IPAddress
    vnis: Mapping[int, VniOrigin]
    # Claim IGMP/MLD proxy (RFC 9251) only when every session can carry SMET: a peer that never
    # sees our SMETs must flood all multicast to us.
    proxy: bool = True
    # Neighbors that may receive SMET; None = all of them.
    smet_neighbors: tuple[IPAddress, ...] | None = None


def auto_rd(router_id: IPAddress, vni: int, index: int) -> RouteDistinguisher:
    """FRR-style ``router-id:N``; N is the VNI when it fits 16 bits, else the VNI's index."""
    return RouteDistinguisher.from_str(f"{router_id}:{vni if vni <= 0xFFFF else index}")


def auto_rt(asn: int, vni: int) -> RouteTarget:
    """RFC 8365 §5.1.2.1 style ``ASN:VNI``; a 4-octet ASN keeps its low 16 bits (as FRR does)."""
    return RouteTarget(str(asn & 0xFFFF if asn > 0xFFFF else asn), vni)


RouteKey = tuple[int, bytes]  # (vni, NLRI key)


def desired_routes(
    settings: OriginSettings, local_groups: Mapping[int, Iterable[tuple[IPAddress | None, IPAddress]]]
) -> dict[RouteKey, EvpnCommand]:
    out: dict[RouteKey, EvpnCommand] = {}
    flags = MulticastFlags(MulticastFlags.IGMP_PROXY | MulticastFlags.MLD_PROXY if settings.proxy else 0)
    for vni, origin in settings.vnis.items():
        imet = InclusiveMulticast(origin.rd, 0, settings.vtep)
        attrs = RouteAttributes(
            next_hop=settings.vtep,
            route_targets=origin.export_rts,
            pmsi=PmsiTunnel(PMSI_INGRESS_REPLICATION, vni, settings.vtep),
            vxlan_encap=True,
            mcast_flags=flags,
        )
        out[(vni, imet.key())] = EvpnCommand("announce", imet, attrs)
        if not settings.proxy:
            continue
        smet_attrs = RouteAttributes(next_hop=settings.vtep, route_targets=origin.export_rts)
        neighbors = settings.smet_neighbors or ()
        if settings.smet_neighbors is not None and not neighbors:
            continue
        for source, group in local_groups.get(vni, ()):
            # The bridge MDB does not say which IGMP/MLD version joined: claim v2 for (*,G)
            # and v3 (include mode) for (S,G), which is what such joins require.
            version = SmetFlags.IGMP_V2 if source is None else SmetFlags.IGMP_V3
            smet = SelectiveMulticast(origin.rd, 0, source, group, settings.vtep, SmetFlags(version))
            out[(vni, smet.key())] = EvpnCommand("announce", smet, smet_attrs, tuple(neighbors))
    return out


def route_commands(
    announced: Mapping[RouteKey, EvpnCommand], desired: Mapping[RouteKey, EvpnCommand]
) -> list[tuple[RouteKey, EvpnCommand | None, str]]:
    """Steps from announced to desired: (key, new state or None, command line). Withdrawals
    first, so that a changed route never exists twice."""
    steps: list[tuple[RouteKey, EvpnCommand | None, str]] = []
    for key, cmd in announced.items():
        wanted = desired.get(key)
        if wanted is None or wanted != cmd:
            withdraw = EvpnCommand("withdraw", cmd.route, cmd.attributes, cmd.neighbors)
            steps.append((key, None, format_command(withdraw)))
    for key, cmd in desired.items():
        if announced.get(key) != cmd:
            steps.append((key, cmd, format_command(cmd)))
    return steps
