"""What `evpnctl show ...` prints: JSON views of the agent's state and their human tables.

Pure: a ``Snapshot`` of plain data in, JSON-ready dicts out, and text tables from those dicts.
The JSON shapes are the stable interface documented in docs/evpnctl.md; the tables are for
people and may change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bgp.evpn import IPAddress

__all__ = ["VIEWS", "GroupStore", "Snapshot", "render", "view"]


class GroupStore(Protocol):
    """The parts of agent.store.Store the views read."""

    def vnis(self) -> frozenset[int]: ...
    def flood_list(self, vni: int) -> frozenset[IPAddress]: ...
    def all_multicast(self, vni: int, version: int) -> frozenset[IPAddress]: ...
    def remote_groups(self, vni: int) -> frozenset[tuple[IPAddress | None, IPAddress]]: ...
    def local_groups(self, vni: int) -> frozenset[tuple[IPAddress | None, IPAddress]]: ...
    def local_ports(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[str]: ...
    def reasons(
        self, vni: int, source: IPAddress | None, group: IPAddress
    ) -> dict[IPAddress, frozenset[str]]: ...
    def peers(self) -> dict[str, int]: ...
    def path_count(self) -> int: ...
    @property
    def counters(self) -> Mapping[str, int]: ...


@dataclass
class Snapshot:
    """Everything a view may show, gathered by the daemon in its own thread of control."""

    router_id: str
    local_vtep: str
    asn: int
    uptime: float
    store: GroupStore
    vnis: Sequence[Mapping[str, Any]]  # vni, bridge, device, rd, rt
    peers: Mapping[str, Mapping[str, Any]]  # address -> state, reason, ...
    replication: Mapping[str, Any] = field(default_factory=dict)
    ipmr: Mapping[str, Any] = field(default_factory=dict)  # enabled, budget, routes, vifs
    mqtt: Mapping[str, Any] | None = None
    errors: Sequence[str] = ()


def _sg(source: IPAddress | None) -> str:
    return "*" if source is None else str(source)


def summary(s: Snapshot) -> dict[str, Any]:
    store = s.store
    vnis = sorted(store.vnis() | {int(v["vni"]) for v in s.vnis})
    return {
        "router_id": s.router_id,
        "local_vtep": s.local_vtep,
        "asn": s.asn,
        "uptime": round(s.uptime, 1),
        "peers": {"up": sum(1 for p in s.peers.values() if p.get("state") == "up"), "total": len(s.peers)},
        "paths": store.path_count(),
        "vnis": len(s.vnis),  # configured VNIs
        "flood_entries": sum(len(store.flood_list(v)) for v in vnis),
        "remote_groups": sum(len(store.remote_groups(v)) for v in vnis),
        "local_groups": sum(len(store.local_groups(v)) for v in vnis),
        "rejected": dict(store.counters),
        "replication": dict(s.replication),
        "ipmr": {k: v for k, v in s.ipmr.items() if k in ("enabled", "budget", "errors")},
        "mqtt": None if s.mqtt is None else dict(s.mqtt),
        "errors": list(s.errors),
    }


def vnis_view(s: Snapshot) -> list[dict[str, Any]]:
    store = s.store
    out = []
    for v in s.vnis:
        vni = int(v["vni"])
        out.append(
            {
                **v,
                "flood": len(store.flood_list(vni)),
                "remote_groups": len(store.remote_groups(vni)),
                "local_groups": len(store.local_groups(vni)),
            }
        )
    return out


def flood(s: Snapshot) -> list[dict[str, Any]]:
    """Per VNI the flood list, each VTEP with its proxy flags (no flag: gets all multicast)."""
    store = s.store
    out = []
    for vni in sorted(store.vnis() | {int(v["vni"]) for v in s.vnis}):
        no_igmp, no_mld = store.all_multicast(vni, 4), store.all_multicast(vni, 6)
        vteps = [
            {"vtep": str(t), "igmp_proxy": t not in no_igmp, "mld_proxy": t not in no_mld}
            for t in sorted(store.flood_list(vni), key=lambda a: (a.version, int(a)))
        ]
        out.append({"vni": vni, "vteps": vteps})
    return out


def groups(s: Snapshot) -> list[dict[str, Any]]:
    """Who gets a copy of G: per VNI and (S,G), the remote receivers and why, the local
    ports, and the fan-out against the full flood list."""
    store = s.store
    out = []
    for vni in sorted(store.vnis()):
        flood_size = len(store.flood_list(vni))
        keys = store.remote_groups(vni) | store.local_groups(vni)
        for source, group in sorted(
            keys, key=lambda k: (k[1].version, int(k[1]), -1 if k[0] is None else int(k[0]))
        ):
            reasons = store.reasons(vni, source, group)
            receivers = [
                {"vtep": str(t), "why": sorted(why)}
                for t, why in sorted(reasons.items(), key=lambda kv: (kv[0].version, int(kv[0])))
            ]
            out.append(
                {
                    "vni": vni,
                    "source": _sg(source),
                    "group": str(group),
                    "receivers": receivers,
                    "local_ports": sorted(store.local_ports(vni, source, group)),
                    "fanout": len(receivers),
                    "flood": flood_size,
                }
            )
    return out


def peers(s: Snapshot) -> list[dict[str, Any]]:
    paths = s.store.peers()
    return [{"peer": peer, **info, "paths": paths.get(peer, 0)} for peer, info in sorted(s.peers.items())]


def mroutes(s: Snapshot) -> list[dict[str, Any]]:
    return list(s.ipmr.get("routes", []))


def vifs(s: Snapshot) -> dict[str, Any]:
    return {"budget": s.ipmr.get("budget", {}), "vifs": list(s.ipmr.get("vifs", []))}


VIEWS: dict[str, Callable[[Snapshot], Any]] = {
    "summary": summary,
    "vnis": vnis_view,
    "flood": flood,
    "groups": groups,
    "peers": peers,
    "mroutes": mroutes,
    "vifs": vifs,
}


def view(name: str, snapshot: Snapshot) -> Any:
    return VIEWS[name](snapshot)


# --------------------------------------------------------------------------- human tables


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def render(name: str, data: Any) -> str:
    """The human form of a view's JSON."""
    if name == "summary":
        d = data
        lines = [
            f"router id {d['router_id']}  VTEP {d['local_vtep']}  AS {d['asn']}  up {d['uptime']:.0f}s",
            f"peers {d['peers']['up']}/{d['peers']['total']} up, {d['paths']} paths",
            f"VNIs {d['vnis']}, flood entries {d['flood_entries']}, remote groups {d['remote_groups']}, "
            f"local groups {d['local_groups']}",
        ]
        rep = d.get("replication") or {}
        if rep:
            lines.append(
                f"replication mode {rep.get('mode')}: last pass added {rep.get('added', 0)}, removed "
                f"{rep.get('removed', 0)}, failed {rep.get('failed', 0)}, deferred {rep.get('deferred', 0)}"
            )
        ipmr = d.get("ipmr") or {}
        if ipmr.get("enabled"):
            for fam, b in (ipmr.get("budget") or {}).items():
                used = ", ".join(f"table {t}: {u['used']}/{u['max']}" for t, u in b.get("tables", {}).items())
                lines.append(
                    f"IPMR {fam}: VIFs {used}"
                    + (f"; refused {sorted(b['refused'])}" if b.get("refused") else "")
                )
        if d.get("mqtt") is not None:
            m = d["mqtt"]
            state = "connected" if m.get("connected") else "not connected"
            lines.append(f"MQTT {state}, published {m.get('published', 0)}, dropped {m.get('dropped', 0)}")
        if d.get("rejected"):
            lines.append("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(d["rejected"].items())))
        lines += [f"error: {e}" for e in d.get("errors", [])]
        return "\n".join(lines)
    if name == "vnis":
        return _table(
            ["VNI", "BRIDGE", "DEVICE", "FLOOD", "REMOTE GROUPS", "LOCAL GROUPS"],
            [
                (
                    v["vni"],
                    v.get("bridge", ""),
                    v.get("device", ""),
                    v["flood"],
                    v["remote_groups"],
                    v["local_groups"],
                )
                for v in data
            ],
        )
    if name == "flood":
        rows: list[tuple[object, ...]] = []
        for v in data:
            for t in v["vteps"]:
                flags = "+".join(f for f, on in (("igmp", t["igmp_proxy"]), ("mld", t["mld_proxy"])) if on)
                rows.append((v["vni"], t["vtep"], flags or "none (gets all multicast)"))
        return _table(["VNI", "VTEP", "PROXY"], rows)
    if name == "groups":
        rows = []
        for g in data:
            who = ", ".join(f"{r['vtep']} ({'+'.join(r['why'])})" for r in g["receivers"]) or "-"
            rows.append(
                (
                    g["vni"],
                    f"({g['source']}, {g['group']})",
                    f"{g['fanout']}/{g['flood']}",
                    who,
                    ", ".join(g["local_ports"]) or "-",
                )
            )
        return _table(["VNI", "GROUP", "FAN-OUT", "RECEIVERS (WHY)", "LOCAL PORTS"], rows)
    if name == "peers":
        return _table(
            ["PEER", "STATE", "PATHS", "REASON"],
            [(p["peer"], p.get("state", ""), p["paths"], p.get("reason", "")) for p in data],
        )
    if name == "mroutes":
        return _table(
            ["FAMILY", "TABLE", "SOURCE", "GROUP", "IIF", "OIFS", "PACKETS", "WRONG-IF"],
            [
                (
                    r["family"],
                    r["table"],
                    r["source"],
                    r["group"],
                    r["iif"] if r["iif"] is not None else "-",
                    ", ".join(map(str, r["oifs"])) or "-",
                    r["packets"],
                    r["wrong_if"],
                )
                for r in data
            ],
        )
    if name == "vifs":
        rows = [
            (
                v.get("family", 4),
                v["table"],
                v["vif"],
                v["interface"],
                v.get("packets_in", "-"),
                v.get("packets_out", "-"),
            )
            for v in data["vifs"]
        ]
        return _table(["FAMILY", "TABLE", "VIF", "INTERFACE", "PKTS IN", "PKTS OUT"], rows)
    raise KeyError(name)
