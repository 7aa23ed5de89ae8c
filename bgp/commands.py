"""The text grammar of the launcher's ``announce evpn`` / ``withdraw evpn`` API commands.

The agent formats commands from route values and the launcher, inside ExaBGP, parses them
back: both sides use this one module, so the grammar cannot drift. Grammar (docs/exabgp-api.md):

    [neighbor IP ...] (announce|withdraw) evpn imet
        rd RD etag N originator IP next-hop IP
        [pmsi ingress-replication LABEL ENDPOINT] [rt RT ...] [encap vxlan] [mcast-flags FLAG[+FLAG]]
    [neighbor ...] (announce|withdraw) evpn smet
        rd RD etag N source (IP|*) group IP originator IP next-hop IP [flags FLAG[+FLAG]] [rt RT ...]

Each ``neighbor IP`` adds a peer the route goes to (any of them; none means every peer).
FLAG for ``mcast-flags`` is igmp-proxy or mld-proxy; for ``flags`` v1, v2, v3, exclude; several
are joined with ``+`` (ExaBGP's API reader mangles commands that contain a comma).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgp.attributes import (
    PMSI_INGRESS_REPLICATION,
    Encapsulation,
    MulticastFlags,
    PmsiTunnel,
    RouteTarget,
)
from bgp.evpn import (
    CodecError,
    InclusiveMulticast,
    IPAddress,
    RouteDistinguisher,
    SelectiveMulticast,
    SmetFlags,
    parse_ip,
)

_MCAST_FLAG_NAMES = {"igmp-proxy": MulticastFlags.IGMP_PROXY, "mld-proxy": MulticastFlags.MLD_PROXY}
_SMET_FLAG_NAMES = {
    "v1": SmetFlags.IGMP_V1,
    "v2": SmetFlags.IGMP_V2,
    "v3": SmetFlags.IGMP_V3,
    "exclude": SmetFlags.EXCLUDE,
}


@dataclass(frozen=True, slots=True)
class RouteAttributes:
    """What the agent attaches to a route it originates."""

    next_hop: IPAddress
    route_targets: tuple[RouteTarget, ...] = ()
    pmsi: PmsiTunnel | None = None
    vxlan_encap: bool = True
    mcast_flags: MulticastFlags | None = None

    def communities(self) -> list[bytes]:
        packed = [rt.pack() for rt in self.route_targets]
        if self.vxlan_encap:
            packed.append(Encapsulation(Encapsulation.VXLAN).pack())
        if self.mcast_flags is not None:
            packed.append(self.mcast_flags.pack())
        return packed


@dataclass(frozen=True, slots=True)
class EvpnCommand:
    action: str  # "announce" | "withdraw"
    route: InclusiveMulticast | SelectiveMulticast
    attributes: RouteAttributes
    neighbors: tuple[IPAddress, ...] = field(default=())


def _flag_names(value: int, table: dict[str, int]) -> str:
    return "+".join(name for name, bit in table.items() if value & bit)


def format_command(cmd: EvpnCommand) -> str:
    route, attrs = cmd.route, cmd.attributes
    words: list[str] = []
    if cmd.neighbors:
        words.append(" ".join(f"neighbor {n}" for n in cmd.neighbors))
    words += [cmd.action, "evpn"]
    if isinstance(route, InclusiveMulticast):
        words += ["imet", "rd", str(route.rd), "etag", str(route.etag), "originator", str(route.originator)]
    else:
        source = "*" if route.source is None else str(route.source)
        words += ["smet", "rd", str(route.rd), "etag", str(route.etag), "source", source]
        words += ["group", str(route.group), "originator", str(route.originator)]
        if route.flags.raw:
            words += ["flags", _flag_names(route.flags.raw, _SMET_FLAG_NAMES)]
    words += ["next-hop", str(attrs.next_hop)]
    if attrs.pmsi is not None:
        words += ["pmsi", "ingress-replication", str(attrs.pmsi.label), str(attrs.pmsi.endpoint)]
    for rt in attrs.route_targets:
        words += ["rt", str(rt)]
    if attrs.vxlan_encap:
        words += ["encap", "vxlan"]
    if attrs.mcast_flags is not None:
        words += ["mcast-flags", _flag_names(attrs.mcast_flags.flags, _MCAST_FLAG_NAMES) or "none"]
    return " ".join(words)


def _parse_flags(text: str, table: dict[str, int], what: str) -> int:
    value = 0
    for name in text.split("+"):
        if name in ("", "none"):
            continue
        if name not in table:
            raise CodecError(f"unknown {what} {name!r} (known: {', '.join(table)})")
        value |= table[name]
    return value


def _int(text: str, what: str, bits: int) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) >= 1 << bits:
        raise CodecError(f"{what} {text!r} is not a {bits}-bit number")
    return int(text)


def parse_command(line: str) -> EvpnCommand:
    """Parse one command line; raises CodecError naming the word at fault."""
    words = line.split()
    neighbors: list[IPAddress] = []
    while words and words[0] == "neighbor":
        if len(words) < 2:
            raise CodecError("'neighbor' needs an address")
        neighbors.append(parse_ip(words[1]))
        words = words[2:]
    if len(words) < 3 or words[0] not in ("announce", "withdraw") or words[1] != "evpn":
        raise CodecError("expected '[neighbor IP] announce|withdraw evpn imet|smet ...'")
    action, kind = words[0], words[2]
    if kind not in ("imet", "smet"):
        raise CodecError(f"route kind {kind!r} not supported (imet, smet)")
    values: dict[str, str] = {}
    rts: list[RouteTarget] = []
    pmsi: PmsiTunnel | None = None
    encap = False
    rest = words[3:]
    i = 0
    while i < len(rest):
        key = rest[i]
        if key == "pmsi":
            if i + 3 >= len(rest) or rest[i + 1] != "ingress-replication":
                raise CodecError("expected 'pmsi ingress-replication LABEL ENDPOINT'")
            label = _int(rest[i + 2], "PMSI label", 24)
            pmsi = PmsiTunnel(PMSI_INGRESS_REPLICATION, label, parse_ip(rest[i + 3]))
            i += 4
            continue
        if i + 1 >= len(rest):
            raise CodecError(f"{key!r} needs a value")
        value = rest[i + 1]
        if key == "rt":
            rts.append(RouteTarget.from_str(value))
        elif key == "encap":
            if value != "vxlan":
                raise CodecError(f"encapsulation {value!r} not supported (vxlan)")
            encap = True
        elif key in ("rd", "etag", "originator", "next-hop", "source", "group", "flags", "mcast-flags"):
            if key in values:
                raise CodecError(f"{key!r} given twice")
            values[key] = value
        else:
            raise CodecError(f"unknown word {key!r}")
        i += 2
    for required in ("rd", "etag", "originator", "next-hop"):
        if required not in values:
            raise CodecError(f"{kind} needs {required!r}")
    rd = RouteDistinguisher.from_str(values["rd"])
    etag = _int(values["etag"], "ethernet tag", 32)
    originator = parse_ip(values["originator"])
    mcast = values.get("mcast-flags")
    attrs = RouteAttributes(
        next_hop=parse_ip(values["next-hop"]),
        route_targets=tuple(rts),
        pmsi=pmsi,
        vxlan_encap=encap,
        mcast_flags=None if mcast is None else MulticastFlags(_parse_flags(mcast, _MCAST_FLAG_NAMES, "flag")),
    )
    route: InclusiveMulticast | SelectiveMulticast
    if kind == "imet":
        route = InclusiveMulticast(rd, etag, originator)
    else:
        if "group" not in values:
            raise CodecError("smet needs 'group'")
        group = parse_ip(values["group"])
        source = None if values.get("source", "*") == "*" else parse_ip(values["source"])
        if not group.is_multicast:
            raise CodecError(f"group {group} is not a multicast address")
        if source is not None and source.version != group.version:
            raise CodecError(f"source {source} and group {group} differ in address family")
        flags = SmetFlags(_parse_flags(values.get("flags", ""), _SMET_FLAG_NAMES, "SMET flag"))
        route = SelectiveMulticast(rd, etag, source, group, originator, flags)
    return EvpnCommand(action, route, attrs, tuple(neighbors))
