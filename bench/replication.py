"""Replication reconciler vs ``bridge -batch``: programming 10,000 flood entries from an empty kernel.

Runs as root. Every measurement gets a fresh network namespace (named ``eiab<hex>...``) holding
50 VXLAN devices vxlan1..vxlan50 (VNI N, local 10.0.0.1, nolearning), each a port of its own
bridge brN, all up. The store holds, per VNI, 200 remote VTEPs (IMET, IGMP/MLD proxy set, so
no VTEP wants all multicast) and 200 groups each wanted by one VTEP (SMET): 10,000 flood
entries and 10,000 MDB group remotes, plus the two catch-alls (0.0.0.0 and ::) per VNI that
list the unspecified address.

Measured, median of 3 runs, each in its own namespace:

- ``setup_s``: the first pass over an empty store: device look-up and set-up (pyroute2, router
  port). Kept out of the figures below.
- ``reconcile_s``: then the pass programming 10,000 flood + 10,000 MDB group remotes.
- ``noop_s``: a pass after that with nothing to change (target < 0.2 s).
- ``reconcile_fdb_s``: same set-up, then a store with IMETs only: 10,000 flood entries.
- ``mdb_s``: after that, the SMETs added to the store: the pass adding the 10,000 MDB remotes.
- ``bridge_batch_s``: ``bridge -batch`` appending the same 10,000 flood entries (the C
  baseline; subprocess wall time).

``ratio`` = reconcile_fdb_s / bridge_batch_s (target <= 2.0); ``ratio_all`` = reconcile_s /
bridge_batch_s. ``--profile`` adds a cProfile of one flood-only pass and one no-op pass.
Namespaces are all kept until the end (the kernel tears a namespace down asynchronously under
the RTNL lock, which would stall the next measurement) and removed in a ``finally`` even on
failure. Last line: JSON result.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.store import RemoteImet, RemoteSmet, Store
from bench.common import PREFIX, Lab, build_vnis, inside, med, print_profile, runs, setup_run, sh
from replication.kernel import RouteKernel
from replication.reconciler import PassReport, Reconciler, Settings, VniPorts

VNIS, VTEPS, GROUPS = 50, 200, 200
RUNS = 3
LOCAL = "10.0.0.1"
PEER = "10.255.0.1"
FDB_WANTED = VNIS * VTEPS
MDB_WANTED = VNIS * GROUPS + 2 * VNIS  # groups + the 0.0.0.0 and :: catch-alls of each VNI


# --------------------------------------------------------------------------- namespaces


@dataclass
class VxlanLab(Lab):
    """A fresh namespace per measurement, so every one starts from an empty kernel."""

    count: int = 0

    def fresh(self) -> str:
        """A new namespace with the 50 bridges and VXLAN devices, all up."""
        self.count += 1
        name = self.add(f"n{self.count}")
        build_vnis(name, range(1, VNIS + 1), LOCAL)
        return name


# --------------------------------------------------------------------------- inputs


def vtep(t: int) -> IPv4Address:
    return IPv4Address(f"10.1.{t // 250}.{1 + t % 250}")


def group(vni: int, t: int) -> IPv4Address:
    return IPv4Address(f"239.1.{vni}.{1 + t}")


def make_store(imet: bool, smet: bool) -> Store:
    store = Store(own_vteps=[IPv4Address(LOCAL)])
    if imet:
        for vni in range(1, VNIS + 1):
            for t in range(VTEPS):
                store.announce(PEER, f"imet {vni} {t}".encode(), RemoteImet(vni, vtep(t), True, True))
    if smet:
        add_smets(store)
    return store


def add_smets(store: Store) -> None:
    """Per VNI, GROUPS groups, group t wanted by VTEP t (modulo VTEPS): one remote each."""
    for vni in range(1, VNIS + 1):
        for t in range(GROUPS):
            fact = RemoteSmet(vni, vtep(t % VTEPS), None, group(vni, t))
            store.announce(PEER, f"smet {vni} {t}".encode(), fact)


def ports() -> list[VniPorts]:
    return [VniPorts(n, f"br{n}", f"vxlan{n}") for n in range(1, VNIS + 1)]


def batch_file(path: Path) -> Path:
    lines = [
        f"fdb append 00:00:00:00:00:00 dev vxlan{vni} dst {vtep(t)} self permanent"
        for vni in range(1, VNIS + 1)
        for t in range(VTEPS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- checks


def kernel_counts(kernel: RouteKernel) -> dict[str, int]:
    """FDB remotes per ``bridge fdb show``; MDB remotes per ``bridge mdb show`` and our own dump."""
    fdb_lines = sh(["bridge", "fdb", "show"]).stdout.splitlines()
    mdb_lines = sh(["bridge", "mdb", "show"]).stdout.splitlines()
    dumped = [r for r in kernel.dump_mdb() if r.dst is not None and r.port == r.device]
    return {
        "fdb_show": sum(" dst " in line for line in fdb_lines),
        # iproute2 before 6.3 prints VXLAN MDB remotes without their dst: one line per remote.
        "mdb_show": sum(line.startswith("dev vxlan") for line in mdb_lines),
        "mdb_dump": len(dumped),
    }


def check(report: PassReport, what: str, added: int, removed: int = 0) -> None:
    if report.errors or report.failed or report.added != added or report.removed != removed:
        raise RuntimeError(f"{what}: unexpected pass report {report.event()}")
    if report.mode != "mdb":
        raise RuntimeError(f"{what}: reconciler chose mode {report.mode!r}, expected the VXLAN MDB")


def timed(fn: Callable[[], PassReport]) -> tuple[float, PassReport]:
    gc.collect()
    began = time.perf_counter()
    report = fn()
    return time.perf_counter() - began, report


# --------------------------------------------------------------------------- runs


@dataclass
class Stores:
    empty: Store
    full: Store
    flood: Store


@contextlib.contextmanager
def reconciling(lab: VxlanLab, stores: Stores, tmp: Path) -> Iterator[tuple[Reconciler, RouteKernel, float]]:
    """Inside a fresh namespace, a reconciler past its set-up pass (device look-up, router ports,
    which the measurements leave out: it, its kernel, the set-up pass's seconds. (The catch-alls
    come with the first VTEPs: an empty VNI needs none.)"""
    ns = lab.fresh()
    with inside(ns):
        kernel = RouteKernel()
        try:
            rec = Reconciler(kernel, ports(), Settings(journal=tmp / f"{ns}.json"))
            setup_s, report = timed(lambda: rec.reconcile(stores.empty))
            check(report, "set-up pass", 0)  # an empty VNI needs no catch-all
            yield rec, kernel, setup_s
        finally:
            kernel.close()


def run_full(lab: VxlanLab, stores: Stores, tmp: Path) -> dict[str, Any]:
    with reconciling(lab, stores, tmp) as (rec, kernel, setup_s):
        reconcile_s, r1 = timed(lambda: rec.reconcile(stores.full))
        check(r1, "full pass", FDB_WANTED + VNIS * GROUPS + 2 * VNIS)
        noop_s, r2 = timed(lambda: rec.reconcile(stores.full))
        check(r2, "no-op pass", 0)
        counts = kernel_counts(kernel)
    return {
        "setup_s": setup_s,
        "reconcile_s": reconcile_s,
        "noop_s": noop_s,
        "counts": counts,
        "desired": r1.desired,
        "noop_report": r2.event(),
    }


def run_fdb_then_mdb(lab: VxlanLab, stores: Stores, tmp: Path) -> dict[str, Any]:
    store = make_store(imet=True, smet=False)  # SMETs added below, so a private copy
    with reconciling(lab, stores, tmp) as (rec, kernel, setup_s):
        fdb_s, r1 = timed(lambda: rec.reconcile(store))
        check(r1, "flood-only pass", FDB_WANTED + 2 * VNIS)  # + the catch-all sinks
        fdb_count = kernel_counts(kernel)["fdb_show"]
        add_smets(store)
        mdb_s, r2 = timed(lambda: rec.reconcile(store))
        check(r2, "MDB pass", VNIS * GROUPS)
    return {"setup_s": setup_s, "reconcile_fdb_s": fdb_s, "mdb_s": mdb_s, "fdb_show": fdb_count}


def run_bridge(lab: VxlanLab, batch: Path) -> dict[str, Any]:
    ns = lab.fresh()
    with inside(ns):
        gc.collect()
        began = time.perf_counter()
        subprocess.run(["bridge", "-batch", str(batch)], check=True, capture_output=True)
        elapsed = time.perf_counter() - began
        fdb_count = sum(" dst " in line for line in sh(["bridge", "fdb", "show"]).stdout.splitlines())
    return {"bridge_batch_s": elapsed, "fdb_show": fdb_count}


def profile(lab: VxlanLab, stores: Stores, tmp: Path) -> None:
    """cProfile of one flood-only pass from empty and one no-op pass over the same store."""
    with reconciling(lab, stores, tmp) as (rec, _kernel, _setup_s):
        for what in ("flood-only pass from empty", "no-op pass over the flood entries"):
            prof = cProfile.Profile()
            prof.enable()
            rec.reconcile(stores.flood)
            prof.disable()
            print_profile(prof, what, lines=12)


def plot(result: dict[str, Any], out: Path) -> None:
    """Seconds from an empty kernel, reconciler vs ``bridge -batch`` with the ratio target; the
    no-op pass against its 0.2 s target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    max_ratio, noop_target = 2.0, 0.2
    fdb, mdb = result["entries_fdb"], result["entries_mdb"]
    bridge = result["bridge_batch_s"]
    fig, (ax, noop) = plt.subplots(
        1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [4, 1.3]}, sharey=True
    )
    bars = [
        (f"bridge -batch\n{fdb:,} flood\n(iproute2, C)", bridge, "tab:gray", ""),
        (
            f"reconciler\n{fdb:,} flood",
            result["reconcile_fdb_s"],
            "tab:blue",
            f"{result['ratio']:.2f} x bridge -batch",
        ),
        (f"reconciler\n{VNIS * GROUPS:,} MDB\n(flood present)", result["mdb_s"], "tab:orange", ""),
        (
            f"reconciler\n{fdb:,} flood +\n{VNIS * GROUPS:,} MDB",
            result["reconcile_s"],
            "tab:purple",
            f"{result['ratio_all']:.2f} x bridge -batch",
        ),
    ]
    xs = range(len(bars))
    ax.bar(xs, [b[1] for b in bars], 0.6, color=[b[2] for b in bars])
    for x, (_label, seconds, _color, ratio) in zip(xs, bars, strict=True):
        text = f"{seconds:.3f} s" + (f"\n= {ratio}" if ratio else "")
        ax.annotate(text, (x, seconds), ha="center", va="bottom", fontsize=9)
    ax.hlines(
        max_ratio * bridge,
        -0.4,
        1.4,
        colors="tab:red",
        linestyles="--",
        label=f"target for the flood entries: <= {max_ratio:.1f} x bridge -batch"
        f" ({max_ratio * bridge:.3f} s)",
    )
    ax.set_xticks(list(xs), [b[0] for b in bars])
    ax.set_ylabel("seconds (wall time, lower is better)")
    ax.set_title("programming from an empty kernel")
    ax.legend(loc="upper left", fontsize=9)

    noop.bar([0], [result["noop_s"]], 0.6, color="tab:green")
    noop.annotate(
        f"{result['noop_s']:.3f} s\nadded {result['noop_added']}, removed {result['noop_removed']}",
        (0, result["noop_s"]),
        ha="center",
        va="bottom",
        fontsize=9,
    )
    noop.axhline(noop_target, color="tab:red", linestyle="--", label=f"target: < {noop_target} s")
    noop.set_xticks([0], [f"no-op pass\n({fdb + mdb:,} entries\npresent)"])
    noop.set_xlim(-0.7, 0.7)
    noop.set_title("nothing to change")
    noop.legend(loc="upper left", fontsize=9)
    top = max(max_ratio * bridge, noop_target, result["noop_s"], *(b[1] for b in bars))
    ax.set_ylim(0, top * 1.3)
    fig.suptitle(
        f"Replication reconciler vs bridge -batch: {VNIS} VXLAN devices, {VNIS} x {VTEPS} VTEPs,"
        f" {VNIS} x {GROUPS} groups (median of {result['runs']} runs)"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    args = setup_run(__doc__, "also print a cProfile of the passes")

    stores = Stores(Store(), make_store(imet=True, smet=True), make_store(imet=True, smet=False))
    lab = VxlanLab()
    full: list[dict[str, Any]] = []
    split: list[dict[str, Any]] = []
    bridge: list[dict[str, Any]] = []
    wall = time.perf_counter()
    settled = {"before_s": 0.0, "after_s": 0.0}
    try:
        settled["before_s"] = lab.settle()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmpdir:
            tmp = Path(tmpdir)
            batch = batch_file(tmp / "fdb.batch")
            for _ in range(RUNS):
                full.append(run_full(lab, stores, tmp))
                split.append(run_fdb_then_mdb(lab, stores, tmp))
                bridge.append(run_bridge(lab, batch))
            if args.profile:
                profile(lab, stores, tmp)
    finally:
        settled["after_s"] = lab.close()

    counts = full[-1]["counts"]
    for what, got in (
        ("full pass: bridge fdb show dst lines", [r["counts"]["fdb_show"] for r in full]),
        ("flood-only pass: bridge fdb show dst lines", [r["fdb_show"] for r in split]),
        ("bridge -batch: bridge fdb show dst lines", [r["fdb_show"] for r in bridge]),
    ):
        if any(n != FDB_WANTED for n in got):
            raise RuntimeError(f"{what}: {got}, expected {FDB_WANTED}")
    for r in full:
        if r["counts"]["mdb_dump"] != MDB_WANTED or r["counts"]["mdb_show"] != MDB_WANTED:
            raise RuntimeError(f"MDB remotes {r['counts']}, expected {MDB_WANTED}")

    result = {
        "reconcile_s": med(full, "reconcile_s"),
        "reconcile_fdb_s": med(split, "reconcile_fdb_s"),
        "bridge_batch_s": med(bridge, "bridge_batch_s"),
        "noop_s": med(full, "noop_s"),
        "mdb_s": med(split, "mdb_s"),
        "setup_s": med(full, "setup_s"),
    }
    result["ratio"] = result["reconcile_fdb_s"] / result["bridge_batch_s"]
    result["ratio_all"] = result["reconcile_s"] / result["bridge_batch_s"]
    result["mdb_by_difference_s"] = result["reconcile_s"] - result["reconcile_fdb_s"]

    print(
        f"kernel {os.uname().release}, {VNIS} VXLAN devices, {VNIS} x {VTEPS} VTEPs, {VNIS} x {GROUPS} groups"
    )
    print(
        f"desired entries: {FDB_WANTED} flood + {MDB_WANTED} MDB"
        f" ({VNIS * GROUPS} groups + {2 * VNIS} catch-alls)"
    )
    print(
        f"verified: bridge fdb show dst lines {counts['fdb_show']}, bridge mdb show {counts['mdb_show']}, "
        f"MDB dump {counts['mdb_dump']}"
    )
    print(f"{'device set-up (first pass)':<44} {result['setup_s']:7.3f} s")
    for label, key in (
        ("reconcile, 10k flood + 10k MDB from empty", "reconcile_s"),
        ("reconcile, 10k flood only from empty", "reconcile_fdb_s"),
        ("reconcile, 10k MDB with the flood present", "mdb_s"),
        ("no-op pass (20,100 entries present)", "noop_s"),
        ("bridge -batch, 10k fdb append", "bridge_batch_s"),
    ):
        rows = [r for r in (*full, *split, *bridge) if key in r]
        print(f"{label:<44} {result[key]:7.3f} s   (runs: {runs(rows, key)})")
    print(f"ratio reconcile_fdb_s / bridge_batch_s: {result['ratio']:.2f} (target <= 2.0)")
    print(f"ratio_all reconcile_s / bridge_batch_s: {result['ratio_all']:.2f}")
    print(f"no-op pass report: {full[-1]['noop_report']}  (target < 0.2 s)")
    print(
        f"whole run: {time.perf_counter() - wall:.1f} s, of which waiting for namespace tear-down"
        f" {settled['before_s']:.1f} s before and {settled['after_s']:.1f} s after"
    )
    out: dict[str, Any] = {k: round(v, 4) for k, v in result.items()}
    out.update(
        ratio_uses="reconcile_fdb_s",
        entries_fdb=counts["fdb_show"],
        entries_mdb=counts["mdb_dump"],
        runs=RUNS,
        noop_added=full[-1]["noop_report"]["added"],
        noop_removed=full[-1]["noop_report"]["removed"],
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
