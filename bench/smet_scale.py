"""SMET scale: 2,000 groups x 50 VTEPs joining and leaving in bursts, through the real store and
the real reconciler into a real VXLAN MDB.

Runs as root. One namespace holds br100 with vxlan100 (VNI 100, local 10.0.0.1, nolearning) as
its port, both up. The store (default limits: 8,192 groups per VNI) first learns the IMETs of 50
remote VTEPs (IGMP/MLD proxy flag set, so no VTEP wants all multicast) and a set-up pass puts
their flood entries and the two catch-alls in; that pass is kept out of the figures. Then come
SMET bursts, each a list of (*,G) paths from one route reflector as ``agent.intake`` hands them
to the store (``Store.announce``/``withdraw`` with the route's real NLRI key):

- ``join``: every VTEP joins every group (100,000 paths, 100,000 MDB remotes);
- ``half-leave``: VTEPs 1-25 leave groups 1-1,000 (25,000 withdraws);
- ``re-join``: they join them again (25,000 announces);
- ``leave``: every path is withdrawn (100,000).

Per burst: ``store_s`` (the store calls alone, nothing else in the loop) and events/s; then
``mdb_s``, the time to a correct MDB: the store snapshot the daemon takes
(``StoreSnapshot.of``) plus the reconcile pass(es), repeated until a dump of the kernel's VXLAN
MDB equals, remote for remote, the store's ``receivers`` of every group plus the catch-alls
(the check itself is not timed). The pass is split into dump, write and the reconciler's own
Python work by timing the kernel adapter's calls. ``total_s`` = store_s + mdb_s, the burst
served one after the other (the daemon overlaps them: it reconciles while lines still arrive).
The group cap is checked not to interfere: nothing refused, 2,000 groups in the VNI at peak.

Baseline in the same run: iproute2 6.1's ``bridge mdb`` ignores ``dst`` (DESIGN.md §6; ``bridge
mdb add dev vxlan100 port vxlan100 grp G dst V permanent`` is refused with "Missing
MDBA_SET_ENTRY_ATTRS attribute"), so ``bridge -batch`` cannot write a VXLAN MDB here. The floor
instead is the kernel's own cost: the same RTM_NEWMDB/RTM_DELMDB messages packed beforehand and
sent in the reconciler's batches through its netlink socket, into a second namespace with the
same devices. ``ratio`` = mdb_s / floor_s. Median of 3 rounds (each round: a fresh store, the
four bursts). Namespaces are removed in a ``finally`` even on failure. Last line: JSON result.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.store import DEFAULT_LIMITS, RemoteImet, RemoteSmet, Store
from bench.common import PREFIX, Lab, build_vnis, inside, med, print_profile, runs, setup_run
from bench.restart import TimedKernel
from bgp.evpn import IPAddress, RouteDistinguisher, SelectiveMulticast, SmetFlags
from replication.kernel import NetlinkSocket, RouteKernel
from replication.model import StoreSnapshot
from replication.netlink import RTM_DELMDB, RTM_NEWMDB, mdb_message
from replication.reconciler import DEFAULT_PROTOCOL, PassReport, Reconciler, Settings, VniPorts

VNI, GROUPS, VTEPS, ROUNDS = 100, 2000, 50, 3
LOCAL, PEER = "10.0.0.1", "10.255.0.1"
BRIDGE, VXLAN = f"br{VNI}", f"vxlan{VNI}"
# Both catch-alls (0.0.0.0 and ::) list the underlay's unspecified address: nobody wants all
# multicast, and the VXLAN driver drops a copy to 0.0.0.0 (replication.model).
CATCH_ALLS: frozenset[tuple[IPAddress | None, IPAddress, IPAddress]] = frozenset(
    {(None, IPv4Address(0), IPv4Address(0)), (None, IPv6Address(0), IPv4Address(0))}
)
DEADLINE_S = 30.0  # passes until the MDB is right; one is expected

Pair = tuple[int, int]  # (VTEP index, group index)


# --------------------------------------------------------------------------- inputs


def vtep(t: int) -> IPv4Address:
    return IPv4Address(f"10.1.0.{1 + t}")


def group(g: int) -> IPv4Address:
    return IPv4Address(0xEF010001 + g)  # 239.1.0.1 onwards: never 224.0.0.x


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst of SMET paths: all announced (``join``) or all withdrawn."""

    name: str
    join: bool
    pairs: list[Pair]


def bursts() -> list[Burst]:
    every = [(t, g) for t in range(VTEPS) for g in range(GROUPS)]
    half = [(t, g) for t in range(VTEPS // 2) for g in range(GROUPS // 2)]
    return [
        Burst("join", True, every),
        Burst("half-leave", False, half),
        Burst("re-join", True, half),
        Burst("leave", False, every),
    ]


@dataclass(frozen=True, slots=True)
class Paths:
    """NLRI keys and facts of every (VTEP, group), built once so that the timed loop holds
    nothing but store calls. The key is the SMET's own (``SelectiveMulticast.key``), as the
    intake passes it."""

    keys: dict[Pair, bytes]
    facts: dict[Pair, RemoteSmet]

    @classmethod
    def build(cls) -> Paths:
        keys, facts = {}, {}
        for t in range(VTEPS):
            rd = RouteDistinguisher.from_str(f"{vtep(t)}:{VNI}")
            for g in range(GROUPS):
                route = SelectiveMulticast(rd, 0, None, group(g), vtep(t), SmetFlags(SmetFlags.IGMP_V2))
                keys[(t, g)] = route.key()
                facts[(t, g)] = RemoteSmet(VNI, vtep(t), None, group(g))
        return cls(keys, facts)


def make_store() -> Store:
    """The store after the IMETs: 50 VTEPs in the flood list, none wanting all multicast."""
    store = Store(own_vteps=[IPv4Address(LOCAL)])
    for t in range(VTEPS):
        store.announce(PEER, f"imet {t}".encode(), RemoteImet(VNI, vtep(t), True, True))
    return store


def ingest(store: Store, paths: Paths, burst: Burst) -> tuple[float, int]:
    """Seconds the store calls of a burst take, and how many changed a view."""
    keys, facts = paths.keys, paths.facts
    changed = 0
    gc.collect()
    began = time.perf_counter()
    if burst.join:
        announce = store.announce
        for pair in burst.pairs:
            if announce(PEER, keys[pair], facts[pair]):
                changed += 1
    else:
        withdraw = store.withdraw
        for pair in burst.pairs:
            if withdraw(PEER, keys[pair]):
                changed += 1
    return time.perf_counter() - began, changed


# --------------------------------------------------------------------------- kernel side


def make_namespace(lab: Lab, suffix: str) -> str:
    name = lab.add(suffix)
    build_vnis(name, [VNI], LOCAL)
    return name


def kernel_mdb(kernel: RouteKernel, ifindex: int) -> set[tuple[IPAddress | None, IPAddress, IPAddress]]:
    """The VXLAN MDB remotes of the device, as (source, group, dst); raises on one not ours."""
    out = set()
    for r in kernel.dump_mdb():
        if r.device != ifindex or r.dst is None or r.port != r.device:
            continue
        if r.protocol != DEFAULT_PROTOCOL or not r.plain:
            raise RuntimeError(f"MDB remote not written by the reconciler: {r}")
        out.add((r.source, r.group, r.dst))
    return out


def store_mdb(store: Store) -> set[tuple[IPAddress | None, IPAddress, IPAddress]]:
    """What the kernel must hold, from the store's own views (not from replication.model)."""
    out = set(CATCH_ALLS)
    for source, grp in store.remote_groups(VNI):
        out.update((source, grp, dst) for dst in store.receivers(VNI, source, grp))
    return out


@dataclass
class Replicator:
    """The reconciler as the daemon builds it (one VNI, journal in a temp workdir), its timed
    kernel adapter, and a second socket that checks the kernel independently."""

    reconciler: Reconciler
    timed: TimedKernel
    checker: RouteKernel
    ifindex: int

    def converge(self, store: Store, prof: cProfile.Profile | None = None) -> dict[str, Any]:
        """Snapshot + pass until the kernel's MDB equals the store's; the timings and counts.
        ``prof``, if given, profiles the snapshots and passes (not the checks)."""
        want = store_mdb(store)
        out: dict[str, Any] = dict.fromkeys(("snapshot_s", "pass_s", "dump_s", "write_s"), 0.0)
        out.update(passes=0, added=0, removed=0)
        began = time.perf_counter()
        while True:
            gc.collect()
            if prof is not None:
                prof.enable()
            t0 = time.perf_counter()
            snapshot = StoreSnapshot.of(store, [VNI])
            t1 = time.perf_counter()
            report = self.reconciler.reconcile(snapshot)
            t2 = time.perf_counter()
            if prof is not None:
                prof.disable()
            split = self.timed.reset()
            check_report(report)
            out["snapshot_s"] += t1 - t0
            out["pass_s"] += t2 - t1
            out["dump_s"] += split["dump"]
            out["write_s"] += split["write"]
            out["passes"] += 1
            out["added"] += report.added
            out["removed"] += report.removed
            got = kernel_mdb(self.checker, self.ifindex)
            if got == want:
                break
            if not report.changed or time.perf_counter() - began > DEADLINE_S:
                raise RuntimeError(
                    f"MDB still wrong after {out['passes']} passes: {len(want - got)} missing, "
                    f"{len(got - want)} extra"
                )
        out["mdb_s"] = out["snapshot_s"] + out["pass_s"]
        out["python_s"] = out["pass_s"] - out["dump_s"] - out["write_s"]
        out["remotes"] = len(want)
        return out


def check_report(report: PassReport) -> None:
    if report.errors or report.failed or report.mode != "mdb":
        raise RuntimeError(f"unexpected pass report {report.event()}")


def floor_messages(burst: Burst, nl: NetlinkSocket, ifindex: int) -> list[tuple[int, bytes]]:
    kind = RTM_NEWMDB if burst.join else RTM_DELMDB
    out = []
    for t, g in burst.pairs:
        seq = nl.next_seq()
        out.append((seq, mdb_message(kind, seq, ifindex, None, group(g), vtep(t), DEFAULT_PROTOCOL)))
    return out


def floor(nl: NetlinkSocket, checker: RouteKernel, ifindex: int, burst: Burst, expect: int) -> float:
    """Seconds the kernel takes for the burst's MDB writes, packed beforehand."""
    batch = floor_messages(burst, nl, ifindex)
    gc.collect()
    began = time.perf_counter()
    acks = nl.transact(batch)
    elapsed = time.perf_counter() - began
    refused = [a for a in acks.values() if a.errno]
    present = sum(1 for r in checker.dump_mdb() if r.device == ifindex and r.dst is not None)
    if refused or len(acks) != len(batch) or present != expect:
        raise RuntimeError(
            f"floor {burst.name}: {len(refused)} refused, {present} remotes, expected {expect}"
        )
    return elapsed


# --------------------------------------------------------------------------- the run


def run(lab: Lab, tmp: Path, profile: bool) -> list[dict[str, Any]]:
    """ROUNDS rounds of the bursts; one row per (round, burst)."""
    paths = Paths.build()
    plan = bursts()
    main_ns, floor_ns = make_namespace(lab, "m"), make_namespace(lab, "f")
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        with inside(floor_ns):
            floor_nl = stack.enter_context(NetlinkSocket())
            floor_checker = RouteKernel()
            stack.callback(floor_checker.close)
        with inside(main_ns):
            timed = TimedKernel(RouteKernel())
            stack.callback(timed.kernel.close)
            checker = RouteKernel()
            stack.callback(checker.close)
            ifindex, floor_ifindex = checker.ifindex(VXLAN), floor_checker.ifindex(VXLAN)
            assert ifindex is not None and floor_ifindex is not None
            # Built as agent.daemon does (config.replication_settings: journal in the workdir).
            settings = Settings("auto", DEFAULT_PROTOCOL, tmp / "replication-journal.json")
            agent = Replicator(
                Reconciler(timed, [VniPorts(VNI, BRIDGE, VXLAN)], settings), timed, checker, ifindex
            )
            setup = agent.converge(make_store())  # devices, router port, flood list, catch-alls
        print(
            f"set-up pass (device look-up, router port, {VTEPS} flood entries, catch-alls): "
            f"{setup['mdb_s']:.3f} s, kept out of the figures"
        )
        lab.settle()
        for round_ in range(ROUNDS):
            store = make_store()
            floor_present = 0
            for burst in plan:
                store_s, changed = ingest(store, paths, burst)
                row: dict[str, Any] = {"round": round_, "burst": burst.name, "events": len(burst.pairs)}
                row.update(store_s=store_s, events_per_s=len(burst.pairs) / store_s, changed=changed)
                row.update(groups=len(store.remote_groups(VNI)), rejected=dict(store.counters))
                prof = cProfile.Profile() if profile and round_ == ROUNDS - 1 and burst.join else None
                with inside(main_ns):
                    row.update(agent.converge(store, prof))
                if prof is not None:
                    print_profile(prof, f"{burst.name} burst: snapshot + pass")
                floor_present += len(burst.pairs) if burst.join else -len(burst.pairs)
                with inside(floor_ns):
                    row["floor_s"] = floor(floor_nl, floor_checker, floor_ifindex, burst, floor_present)
                row["ratio"] = row["mdb_s"] / row["floor_s"]
                row["total_s"] = row["store_s"] + row["mdb_s"]
                rows.append(row)
    return rows


def check(rows: list[dict[str, Any]]) -> None:
    """Every burst changed exactly its own remotes, the cap never refused a path."""
    for row in rows:
        if row["rejected"]:
            raise RuntimeError(f"{row['burst']}: the store refused paths: {row['rejected']}")
        want_added = row["events"] if row["burst"] in ("join", "re-join") else 0
        want_removed = row["events"] if row["burst"] in ("half-leave", "leave") else 0
        if (row["added"], row["removed"], row["changed"]) != (want_added, want_removed, row["events"]):
            raise RuntimeError(f"{row['burst']}: unexpected counts {row}")


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per burst, the medians over the rounds."""
    out = []
    for name in [b.name for b in bursts()]:
        mine = [r for r in rows if r["burst"] == name]
        entry: dict[str, Any] = {"burst": name, "events": mine[0]["events"], "remotes": mine[0]["remotes"]}
        entry["changed"] = mine[0]["added"] + mine[0]["removed"]
        entry["passes"] = max(r["passes"] for r in mine)
        entry["groups_after"] = mine[0]["groups"]
        for key in ("store_s", "events_per_s", "mdb_s", "snapshot_s", "pass_s", "dump_s", "write_s"):
            entry[key] = med(mine, key)
        for key in ("python_s", "floor_s", "ratio", "total_s"):
            entry[key] = med(mine, key)
        out.append(entry)
    return out


def main() -> None:
    args = setup_run(__doc__, "also print a cProfile of the join and re-join passes (last round)")
    lab = Lab()
    wall = time.perf_counter()
    settled = {"before_s": 0.0, "after_s": 0.0}
    try:
        settled["before_s"] = lab.settle()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmpdir:
            rows = run(lab, Path(tmpdir), args.profile)
    finally:
        settled["after_s"] = lab.close()
    check(rows)
    table = summarise(rows)
    print(
        f"kernel {os.uname().release}, VNI {VNI}: {VTEPS} VTEPs x {GROUPS} groups, (*,G) SMETs from one peer;"
        f" store limit {DEFAULT_LIMITS.max_groups_per_vni} groups per VNI (peak {table[0]['groups_after']}"
        ", nothing refused)"
    )
    print("verified after every burst: kernel VXLAN MDB == store receivers + 2 catch-alls, remote for remote")
    print(
        f"{'burst':<11} {'events':>7} {'store ev/s':>11} {'changed':>8} {'MDB after':>9} {'to MDB s':>9}"
        f" {'(snap':>6} {'dump':>6} {'write':>6} {'python)':>7} {'floor s':>8} {'ratio':>6} {'total s':>8}"
    )
    for e in table:
        print(
            f"{e['burst']:<11} {e['events']:>7,} {e['events_per_s']:>11,.0f} {e['changed']:>8,}"
            f" {e['remotes']:>9,} {e['mdb_s']:>9.3f} {e['snapshot_s']:>6.3f} {e['dump_s']:>6.3f}"
            f" {e['write_s']:>6.3f} {e['python_s']:>7.3f} {e['floor_s']:>8.3f} {e['ratio']:>6.2f}"
            f" {e['total_s']:>8.3f}"
        )
    for name in ("join", "leave"):
        mine = [r for r in rows if r["burst"] == name]
        print(f"{name}: to MDB s runs {runs(mine, 'mdb_s')}; floor s runs {runs(mine, 'floor_s')}")
    print(
        f"median of {ROUNDS} rounds; passes per burst: {max(e['passes'] for e in table)};"
        " floor = the same MDB messages packed beforehand, sent in 512-message batches;"
        " total = store + to MDB (the daemon overlaps them: it reconciles while lines still arrive)"
    )
    print(
        f"whole run: {time.perf_counter() - wall:.1f} s, of which waiting for namespace tear-down"
        f" {settled['before_s']:.1f} s before and {settled['after_s']:.1f} s after"
    )
    out: dict[str, Any] = {
        "vni_groups": GROUPS,
        "vteps": VTEPS,
        "rounds": ROUNDS,
        "max_groups_per_vni": DEFAULT_LIMITS.max_groups_per_vni,
        "bursts": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items() if k != "groups_after"}
            for e in table
        ],
    }
    print(json.dumps(out))


def plot(result: dict[str, Any], out: Path) -> None:
    """Time to a correct MDB per burst (reconciler, split, vs the pre-packed floor) and the
    store's events/s: the two things the issue asks about, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["bursts"]
    names = [f"{e['burst']}\n{e['events']:,} paths" for e in table]
    xs = list(range(len(table)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.38
    bottom = [0.0] * len(table)
    for key, label, colour in (
        ("snapshot_s", "store snapshot", "#9ecae1"),
        ("dump_s", "kernel dump + parse", "#4292c6"),
        ("python_s", "reconciler Python (diff, encode)", "#fdae6b"),
        ("write_s", "kernel write (netlink)", "#08519c"),
    ):
        values = [e[key] for e in table]
        left.bar([x - width / 2 for x in xs], values, width, bottom=bottom, label=label, color=colour)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    left.bar(
        [x + width / 2 for x in xs],
        [e["floor_s"] for e in table],
        width,
        label="floor: pre-packed writes",
        color="#bdbdbd",
        hatch="//",
    )
    for x, e in zip(xs, table, strict=True):
        left.annotate(
            f"{e['ratio']:.2f}x\n{e['changed']:,} remotes",
            (x - width / 2, e["mdb_s"]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_xticks(xs, names)
    left.set_ylabel("seconds to a correct VXLAN MDB")
    left.set_ylim(0, max(bottom + [e["floor_s"] for e in table]) * 1.6)
    left.set_title("Time to a correct MDB (reconciler vs kernel floor)")
    left.legend(fontsize=8, loc="upper center", ncol=3)
    right.bar(xs, [e["events_per_s"] / 1000 for e in table], color="#31a354")
    right.set_xticks(xs, [e["burst"] for e in table])
    right.set_ylabel("store events/s (thousands)")
    right.set_title("Store ingestion alone")
    fig.suptitle(
        f"SMET scale: {result['vni_groups']:,} groups x {result['vteps']} VTEPs, one VNI "
        f"(median of {result['rounds']} rounds)"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
