"""Replication reconciler vs ``bridge -batch``: programming 10,000 flood entries from an empty kernel.

Runs as root. Every measurement gets a fresh network namespace (named ``eiab<hex>...``) holding
50 VXLAN devices vxlan1..vxlan50 (VNI N, local 10.0.0.1, nolearning), each a port of its own
bridge brN, all up. The store holds, per VNI, 200 remote VTEPs (IMET, IGMP/MLD proxy set, so
no VTEP wants all multicast) and 200 groups each wanted by one VTEP (SMET): 10,000 flood
entries and 10,000 MDB group remotes, plus the two catch-alls (0.0.0.0 and ::) per VNI that
list the unspecified address.

Measured, median of 3 runs, each in its own namespace:

- ``setup_s``: the first pass over an empty store: device look-up and set-up (pyroute2, router
  port) and the 100 catch-all MDB entries. Kept out of the figures below.
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

import argparse
import contextlib
import cProfile
import ctypes
import gc
import io
import json
import os
import pstats
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.store import RemoteImet, RemoteSmet, Store
from replication.kernel import NetlinkSocket, RouteKernel
from replication.reconciler import PassReport, Reconciler, Settings, VniPorts

PREFIX = "eiab"  # evpn-ir-agent bench; every namespace of this script starts with it
VNIS, VTEPS, GROUPS = 50, 200, 200
RUNS = 3
LOCAL = "10.0.0.1"
PEER = "10.255.0.1"
CLONE_NEWNET = 0x40000000
RTM_NEWLINK, NLM_F_REQUEST, NLM_F_ACK, IFF_UP = 16, 1, 4, 1
SETTLE_PROBE_S, SETTLE_QUIET, SETTLE_TIMEOUT_S = 0.002, 20, 30.0
FDB_WANTED = VNIS * VTEPS
MDB_WANTED = VNIS * GROUPS + 2 * VNIS  # groups + the 0.0.0.0 and :: catch-alls of each VNI

_libc = ctypes.CDLL(None, use_errno=True)


def sh(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, check=True, text=True, capture_output=True)


# --------------------------------------------------------------------------- namespaces


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    count: int = 0
    probe: str | None = None

    def fresh(self) -> str:
        """A new namespace with the 50 bridges and VXLAN devices, all up."""
        self.count += 1
        name = f"{PREFIX}{self.tag}n{self.count}"
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        lines = ["link set lo up", f"addr add {LOCAL}/32 dev lo"]
        for n in range(1, VNIS + 1):
            lines += [
                f"link add br{n} type bridge",
                f"link add vxlan{n} type vxlan id {n} local {LOCAL} dstport 4789 nolearning",
                f"link set vxlan{n} master br{n}",
                f"link set br{n} up",
                f"link set vxlan{n} up",
            ]
        sh(["ip", "-n", name, "-batch", "-"], "\n".join(lines) + "\n")
        return name

    def drop(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def close(self) -> None:
        """Delete the namespaces; the kernel then tears them down in the background."""
        for name in list(self.namespaces):
            self.drop(name)


class Probe:
    """Times an idempotent RTNL write (``link set lo up``) in a namespace of its own.

    Deleting a namespace holding 100 devices returns at once, but the kernel then holds the
    RTNL lock for about a second tearing it down; any netlink write (ours, ``bridge``'s)
    waits meanwhile. ``settle`` waits until the write answers promptly again, so neither a
    previous run nor this one's clean-up falls into a measurement.
    """

    def __init__(self, lab: Lab) -> None:
        self.name = f"{PREFIX}{lab.tag}probe"
        sh(["ip", "netns", "add", self.name])
        lab.probe = self.name
        with inside(self.name):
            self._nl = NetlinkSocket()  # stays in the probe namespace after we leave it
            self._lo = socket.if_nametoindex("lo")

    def once(self) -> float:
        seq = self._nl.next_seq()
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, self._lo, IFF_UP, IFF_UP)
        message = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
        start = time.perf_counter()
        ack = self._nl.transact([(seq, message)]).get(seq)
        elapsed = time.perf_counter() - start
        if ack is None or ack.errno:
            raise RuntimeError(f"probe write refused: {ack}")
        return elapsed

    def settle(self) -> float:
        """Seconds waited until SETTLE_QUIET probes in a row answer within SETTLE_PROBE_S."""
        start = time.perf_counter()
        quiet = 0
        while quiet < SETTLE_QUIET and time.perf_counter() - start < SETTLE_TIMEOUT_S:
            quiet = quiet + 1 if self.once() < SETTLE_PROBE_S else 0
            time.sleep(0.01)
        return time.perf_counter() - start

    def close(self) -> None:
        self._nl.close()


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move this (single-threaded) process into the namespace; sockets and children follow."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace")
    finally:
        os.close(target)
        os.close(home)


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
    start = time.perf_counter()
    report = fn()
    return time.perf_counter() - start, report


# --------------------------------------------------------------------------- runs


@dataclass
class Stores:
    empty: Store
    full: Store
    flood: Store


def run_full(lab: Lab, stores: Stores, tmp: Path) -> dict[str, Any]:
    ns = lab.fresh()
    with inside(ns):
        kernel = RouteKernel()
        try:
            rec = Reconciler(kernel, ports(), Settings(journal=tmp / f"{ns}.json"))
            setup_s, r0 = timed(lambda: rec.reconcile(stores.empty))
            check(r0, "set-up pass", 2 * VNIS)
            reconcile_s, r1 = timed(lambda: rec.reconcile(stores.full))
            check(r1, "full pass", FDB_WANTED + VNIS * GROUPS)
            noop_s, r2 = timed(lambda: rec.reconcile(stores.full))
            check(r2, "no-op pass", 0)
            counts = kernel_counts(kernel)
        finally:
            kernel.close()
    return {
        "setup_s": setup_s,
        "reconcile_s": reconcile_s,
        "noop_s": noop_s,
        "counts": counts,
        "desired": r1.desired,
        "noop_report": r2.event(),
    }


def run_fdb_then_mdb(lab: Lab, stores: Stores, tmp: Path) -> dict[str, Any]:
    ns = lab.fresh()
    store = make_store(imet=True, smet=False)  # SMETs added below, so a private copy
    with inside(ns):
        kernel = RouteKernel()
        try:
            rec = Reconciler(kernel, ports(), Settings(journal=tmp / f"{ns}.json"))
            setup_s, r0 = timed(lambda: rec.reconcile(stores.empty))
            check(r0, "set-up pass", 2 * VNIS)
            fdb_s, r1 = timed(lambda: rec.reconcile(store))
            check(r1, "flood-only pass", FDB_WANTED)
            fdb_count = kernel_counts(kernel)["fdb_show"]
            add_smets(store)
            mdb_s, r2 = timed(lambda: rec.reconcile(store))
            check(r2, "MDB pass", VNIS * GROUPS)
        finally:
            kernel.close()
    return {"setup_s": setup_s, "reconcile_fdb_s": fdb_s, "mdb_s": mdb_s, "fdb_show": fdb_count}


def run_bridge(lab: Lab, batch: Path) -> dict[str, Any]:
    ns = lab.fresh()
    with inside(ns):
        gc.collect()
        start = time.perf_counter()
        subprocess.run(["bridge", "-batch", str(batch)], check=True, capture_output=True)
        elapsed = time.perf_counter() - start
        fdb_count = sum(" dst " in line for line in sh(["bridge", "fdb", "show"]).stdout.splitlines())
    return {"bridge_batch_s": elapsed, "fdb_show": fdb_count}


def profile(lab: Lab, stores: Stores, tmp: Path) -> None:
    """cProfile of one flood-only pass from empty and one no-op pass over the same store."""
    ns = lab.fresh()
    with inside(ns):
        kernel = RouteKernel()
        try:
            rec = Reconciler(kernel, ports(), Settings(journal=tmp / f"{ns}-profile.json"))
            rec.reconcile(stores.empty)
            for what in ("flood-only pass from empty", "no-op pass over the flood entries"):
                prof = cProfile.Profile()
                prof.enable()
                rec.reconcile(stores.flood)
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
                lines = [line for line in out.getvalue().splitlines() if line.strip()]
                print(f"--- cProfile: {what}, by own time ({lines[0].strip()})")
                for line in lines[1:]:
                    if "Ordered by" not in line and "List reduced" not in line:
                        print(line)
        finally:
            kernel.close()


def med(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the passes")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark builds network namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below still runs

    stores = Stores(Store(), make_store(imet=True, smet=True), make_store(imet=True, smet=False))
    lab = Lab()
    full: list[dict[str, Any]] = []
    split: list[dict[str, Any]] = []
    bridge: list[dict[str, Any]] = []
    wall = time.perf_counter()
    probe: Probe | None = None
    settled = {"before_s": 0.0, "after_s": 0.0}
    try:
        probe = Probe(lab)
        settled["before_s"] = probe.settle()
        with tempfile.TemporaryDirectory(prefix="eiab-") as tmpdir:
            tmp = Path(tmpdir)
            batch = batch_file(tmp / "fdb.batch")
            for _ in range(RUNS):
                full.append(run_full(lab, stores, tmp))
                split.append(run_fdb_then_mdb(lab, stores, tmp))
                bridge.append(run_bridge(lab, batch))
            if args.profile:
                profile(lab, stores, tmp)
    finally:
        lab.close()
        try:
            if probe is not None:
                settled["after_s"] = probe.settle()
                probe.close()
        finally:
            if lab.probe is not None:
                lab.drop(lab.probe)
            names = sh(["ip", "netns", "list"]).stdout.split()
            leftovers = [n for n in names if n.startswith(PREFIX + lab.tag)]
            if leftovers:
                print(f"WARNING: namespaces left behind: {leftovers}", file=sys.stderr)

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
    print(f"{'device set-up + catch-alls (first pass)':<44} {result['setup_s']:7.3f} s")
    for label, key in (
        ("reconcile, 10k flood + 10k MDB from empty", "reconcile_s"),
        ("reconcile, 10k flood only from empty", "reconcile_fdb_s"),
        ("reconcile, 10k MDB with the flood present", "mdb_s"),
        ("no-op pass (20,100 entries present)", "noop_s"),
        ("bridge -batch, 10k fdb append", "bridge_batch_s"),
    ):
        runs = [r[key] for r in (*full, *split, *bridge) if key in r]
        print(f"{label:<44} {result[key]:7.3f} s   (runs: {', '.join(f'{v:.3f}' for v in runs)})")
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
