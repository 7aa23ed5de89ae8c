"""Restart: 50,000 FDB + MDB entries the agent owns are in the kernel; how long a restarted agent
takes to reconcile (nothing to change), and to fix 1,000 differences injected behind its back.

Runs as root. One namespace holds 50 bridges br1..br50, each with its VXLAN device vxlanN (VNI
N, local 10.0.0.1, nolearning) as a port, all up. The agent's config (``agent.config``: 50
VNIs, workdir in a temp directory) is built once; every reconciler here is made as
``agent.daemon`` makes it: ``Reconciler(RouteKernel(), config.vni_ports(),
config.replication_settings())``, its journal in the workdir. The store, as one route reflector
teaches it: per VNI 500 VTEPs (IMET, IGMP/MLD proxy set) and 500 groups each wanted by one VTEP
(SMET): 25,000 flood entries and 25,000 MDB remotes, plus the two catch-alls per VNI.

1. This process programs it all (the agent before the restart), and then, as an operator would,
   adds entries of its own: 5 flood entries (``bridge fdb append``, not in the journal) and 6
   VXLAN MDB remotes with protocol 4 (static), one of them on a group the agent manages.
   iproute2 6.1 cannot write VXLAN MDB remotes (it drops ``dst``), so those go by netlink.
2. The restart, 3 times, each in a fresh Python process in the namespace (so no cache of this
   one helps): it imports ``agent.daemon`` (timed), constructs an ``Agent`` from the config
   (timed: what ``evpn-agent run`` does before its loop), constructs the measured reconciler
   (its journal of 25,000 entries loaded), re-learns the same store, takes the daemon's
   ``StoreSnapshot`` and runs the first pass: expected to change nothing. The pass is split
   into device look-up/set-up, dumps, writes (timed at the kernel adapter), the journal
   rewrite, and the rest (desired sets, diff).
3. In the same process, 1,000 differences: 250 of the agent's flood entries deleted with
   ``bridge fdb del``, 250 of its MDB remotes deleted by netlink (another socket), and 500 store
   changes (125 new VTEPs, 125 VTEPs gone, 125 new group remotes, 125 gone); then one pass,
   timed and split the same way: it must add 750 and remove 250.

After every pass the kernel is dumped and compared with the store's own views plus the
operator's entries: exactly equal (and the operator's entries untouched). Median of the 3
restarts. The namespace is removed in a ``finally`` even on failure. Last line: JSON result.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import AgentConfig, parse_config
from agent.store import RemoteImet, RemoteSmet, Store
from bench.common import PREFIX, Lab, build_vnis, inside, med, runs, setup_run, sh
from bgp.evpn import IPAddress
from replication.kernel import Link, NetlinkSocket, Op, RouteKernel
from replication.model import ANY4, ANY6, ZERO_MAC, FdbEntry, StoreSnapshot
from replication.netlink import RTM_DELMDB, RTM_NEWMDB, Ack, FdbRecord, MdbRecord, mdb_message
from replication.reconciler import PassReport, Reconciler

ROOT = Path(__file__).resolve().parent.parent
VNIS, VTEPS, GROUPS, RESTARTS = 50, 500, 500, 3
LOCAL, PEER = "10.0.0.1", "10.255.0.1"
RTPROT_STATIC = 4  # the operator's MDB remotes
OWNED = VNIS * VTEPS + VNIS * GROUPS + 2 * VNIS
K = 5  # per VNI and round: entries deleted behind the agent's back, store changes per kind

FdbKey = tuple[str, IPAddress]  # (device, dst)
MdbKey = tuple[str, IPAddress | None, IPAddress, IPAddress, int]  # (device, S, G, dst, protocol)


# --------------------------------------------------------------------------- the fabric


def vtep(t: int) -> IPv4Address:
    return IPv4Address(f"10.1.{t // 250}.{1 + t % 250}")


def group(vni: int, t: int) -> IPv4Address:
    return IPv4Address(f"239.{vni}.{t // 250}.{1 + t % 250}")


def agent_config(workdir: Path) -> AgentConfig:
    """The leaf's config as ``evpn-agent run`` would load it (bridges brN, devices vxlanN)."""
    return parse_config(
        {
            "router_id": LOCAL,
            "local_vtep": LOCAL,
            "asn": 65000,
            "neighbors": [{"address": PEER, "asn": 65000}],
            "vnis": [{"vni": n} for n in range(1, VNIS + 1)],
            "workdir": str(workdir),
        }
    )


def imet_key(vni: int, t: int) -> bytes:
    return f"imet {vni} {t}".encode()


def smet_key(vni: int, t: int) -> bytes:
    return f"smet {vni} {t}".encode()


def smet(vni: int, t: int) -> RemoteSmet:
    """Group t of the VNI, wanted by VTEP t (modulo the VTEPs of the fabric)."""
    return RemoteSmet(vni, vtep(t % VTEPS), None, group(vni, t))


@dataclass(frozen=True, slots=True)
class Round:
    """What round ``r`` changes: disjoint per round, and disjoint from one another."""

    r: int

    def _ts(self, base: int) -> range:
        return range(base + K * self.r, base + K * (self.r + 1))

    def fdb_deleted(self) -> list[tuple[int, int]]:
        """(vni, VTEP index) of flood entries removed behind the agent's back."""
        return [(vni, t) for vni in range(1, VNIS + 1) for t in self._ts(400)]

    def mdb_deleted(self) -> list[tuple[int, int]]:
        """(vni, group index) of MDB remotes removed behind the agent's back."""
        return [(vni, t) for vni in range(1, VNIS + 1) for t in self._ts(400)]

    def apply(self, store: Store) -> int:
        """The round's 500 store changes; how many changed a view (all of them should)."""
        changed = 0
        half = VNIS // 2
        for vni in range(1, half + 1):
            for t in self._ts(VTEPS):  # new VTEPs, new groups
                changed += bool(store.announce(PEER, imet_key(vni, t), RemoteImet(vni, vtep(t), True, True)))
                changed += bool(store.announce(PEER, smet_key(vni, t), smet(vni, t)))
        for vni in range(half + 1, VNIS + 1):
            for t in self._ts(300):  # VTEPs and groups that go away
                changed += bool(store.withdraw(PEER, imet_key(vni, t)))
                changed += bool(store.withdraw(PEER, smet_key(vni, t)))
        return changed


def learn(rounds: int) -> Store:
    """The store as BGP teaches it after ``rounds`` rounds of changes."""
    store = Store(own_vteps=[IPv4Address(LOCAL)])
    for vni in range(1, VNIS + 1):
        for t in range(VTEPS):
            store.announce(PEER, imet_key(vni, t), RemoteImet(vni, vtep(t), True, True))
        for t in range(GROUPS):
            store.announce(PEER, smet_key(vni, t), smet(vni, t))
    for r in range(rounds):
        Round(r).apply(store)
    return store


# --------------------------------------------------------------------------- operator and checks


def operator_fdb() -> set[FdbKey]:
    return {(f"vxlan{n}", IPv4Address(f"10.99.0.{n}")) for n in range(1, 6)}


def operator_mdb() -> set[MdbKey]:
    out: set[MdbKey] = {
        (f"vxlan{n}", None, IPv4Address(f"239.99.0.{n}"), IPv4Address(f"10.99.0.{n}"), RTPROT_STATIC)
        for n in range(1, 6)
    }
    # On a group of the agent's that round 0 withdraws: its remotes go, this one must stay.
    out.add(("vxlan30", None, group(30, 300), IPv4Address("10.99.1.1"), RTPROT_STATIC))
    return out


def add_operator_entries() -> None:
    """As an operator would, in the current namespace: ``bridge`` for the flood entries, netlink
    for the MDB remotes (iproute2 6.1 drops ``dst``)."""
    lines = [
        f"fdb append {ZERO_MAC.hex(':')} dev {dev} dst {dst} self permanent" for dev, dst in operator_fdb()
    ]
    sh(["bridge", "-batch", "-"], "\n".join(lines) + "\n")
    with NetlinkSocket() as nl:
        batch = []
        for dev, source, grp, dst, proto in sorted(operator_mdb(), key=str):
            seq = nl.next_seq()
            batch.append((seq, mdb_message(RTM_NEWMDB, seq, ifindex(dev), source, grp, dst, proto)))
        refused = [a for a in nl.transact(batch).values() if a.errno]
        if refused:
            raise RuntimeError(f"operator MDB entries refused: {refused}")


def ifindex(name: str) -> int:
    return socket.if_nametoindex(name)


def desired(store: Store, protocol: int) -> tuple[set[FdbKey], set[MdbKey]]:
    """What the kernel must hold for the agent, from the store's own views."""
    fdb: set[FdbKey] = set()
    mdb: set[MdbKey] = set()
    for vni in range(1, VNIS + 1):
        dev = f"vxlan{vni}"
        fdb.update((dev, dst) for dst in store.flood_list(vni))
        for source, grp in store.remote_groups(vni):
            mdb.update((dev, source, grp, dst, protocol) for dst in store.receivers(vni, source, grp))
        mdb.add((dev, None, ANY4, ANY4, protocol))  # catch-alls: nobody wants all multicast
        mdb.add((dev, None, ANY6, ANY4, protocol))
    return fdb, mdb


def kernel_state(kernel: RouteKernel) -> tuple[set[FdbKey], set[MdbKey]]:
    """Every flood remote and VXLAN MDB remote of the 50 devices, whoever wrote it."""
    names = {}
    fdb: set[FdbKey] = set()
    for vni in range(1, VNIS + 1):
        dev = f"vxlan{vni}"
        ifindex = kernel.ifindex(dev)
        assert ifindex is not None
        names[ifindex] = dev
        for f in kernel.dump_fdb(ifindex):
            if f.dst is not None and f.mac == ZERO_MAC:
                fdb.add((dev, f.dst))
    mdb: set[MdbKey] = set()
    for m in kernel.dump_mdb():
        if m.dst is not None and m.device in names and m.port == m.device:
            mdb.add((names[m.device], m.source, m.group, m.dst, m.protocol))
    return fdb, mdb


def verify(kernel: RouteKernel, store: Store, protocol: int, what: str) -> None:
    """Kernel == the store's wants + the operator's entries, exactly; raise with the difference."""
    want_fdb, want_mdb = desired(store, protocol)
    want_fdb |= operator_fdb()
    want_mdb |= operator_mdb()
    got_fdb, got_mdb = kernel_state(kernel)
    for kind, want, got in (("FDB", want_fdb, got_fdb), ("MDB", want_mdb, got_mdb)):
        if want != got:
            missing, extra = sorted(want - got, key=str)[:3], sorted(got - want, key=str)[:3]
            raise RuntimeError(
                f"{what}: kernel {kind} differs: {len(want - got)} missing (e.g. {missing}), "
                f"{len(got - want)} extra (e.g. {extra})"
            )


def check_report(report: PassReport, what: str, added: int, removed: int) -> None:
    if (
        report.errors
        or report.failed
        or report.deferred
        or (report.added, report.removed) != (added, removed)
    ):
        raise RuntimeError(f"{what}: unexpected pass report {report.event()}, expected +{added} -{removed}")


BUCKETS = ("devices", "dump", "write")


class TimedKernel:
    """The real kernel adapter with a stopwatch per kind of call.

    A pass is split into device look-up/set-up, dumps (receive and parse) and writes without
    instrumenting the reconciler: whatever is left of the pass is its own Python work (desired
    sets from the snapshot, the set differences, the journal).
    """

    def __init__(self, kernel: RouteKernel) -> None:
        self.kernel = kernel
        self.seconds: dict[str, float] = dict.fromkeys(BUCKETS, 0.0)

    def reset(self) -> dict[str, float]:
        """The seconds so far, and start again from zero."""
        out, self.seconds = self.seconds, dict.fromkeys(BUCKETS, 0.0)
        return out

    def _add(self, bucket: str, began: float) -> None:
        self.seconds[bucket] += time.perf_counter() - began

    def link(self, name: str) -> Link | None:
        began = time.perf_counter()
        try:
            return self.kernel.link(name)
        finally:
            self._add("devices", began)

    def ifindex(self, name: str) -> int | None:
        began = time.perf_counter()
        try:
            return self.kernel.ifindex(name)
        finally:
            self._add("devices", began)

    def set_router_port(self, ifindex: int) -> Ack | None:
        began = time.perf_counter()
        try:
            return self.kernel.set_router_port(ifindex)
        finally:
            self._add("devices", began)

    def dump_fdb(self, ifindex: int) -> list[FdbRecord]:
        began = time.perf_counter()
        try:
            return self.kernel.dump_fdb(ifindex)
        finally:
            self._add("dump", began)

    def dump_mdb(self, devices: Container[int] | None = None) -> list[MdbRecord]:
        began = time.perf_counter()
        try:
            return self.kernel.dump_mdb(devices)
        finally:
            self._add("dump", began)

    def write(self, ops: Sequence[Op], ifindexes: Mapping[str, int], protocol: int) -> list[Ack | None]:
        began = time.perf_counter()
        try:
            return self.kernel.write(ops, ifindexes, protocol)
        finally:
            self._add("write", began)


# --------------------------------------------------------------------------- the restarted agent


def time_journal(rec: Reconciler) -> dict[str, float]:
    """A stopwatch around the reconciler's journal write (an instance attribute shadows the
    method): a new instance does not know what is on disk, so its first pass rewrites the whole
    journal, and that belongs in the breakdown."""
    seconds = {"journal": 0.0}
    save: Callable[[set[FdbEntry]], None] = rec._save_journal

    def timed_save(entries: set[FdbEntry]) -> None:
        began = time.perf_counter()
        try:
            save(entries)
        finally:
            seconds["journal"] += time.perf_counter() - began

    rec._save_journal = timed_save  # type: ignore[method-assign]
    return seconds


def one_pass(
    rec: Reconciler, timed: TimedKernel, journal: dict[str, float], store: Store, vnis: list[int]
) -> tuple[dict[str, float], PassReport]:
    """The daemon's snapshot and one pass over every VNI, with the pass split up."""
    timed.reset()
    journal["journal"] = 0.0
    gc.collect()
    began = time.perf_counter()
    snapshot = StoreSnapshot.of(store, vnis)
    snapped = time.perf_counter()
    report = rec.reconcile(snapshot)
    ended = time.perf_counter()
    split = timed.reset()
    out = {
        "snapshot_s": snapped - began,
        "pass_s": ended - snapped,
        "devices_s": split["devices"],
        "dump_s": split["dump"],
        "write_s": split["write"],
        "journal_s": journal["journal"],
    }
    out["diff_s"] = out["pass_s"] - sum(out[k] for k in ("devices_s", "dump_s", "write_s", "journal_s"))
    return out, report


def inject(round_: Round) -> None:
    """Behind the agent's back: ``bridge fdb del`` of 250 of its flood entries, and 250 of its
    MDB remotes deleted through a netlink socket of our own."""
    lines = [
        f"fdb del {ZERO_MAC.hex(':')} dev vxlan{vni} dst {vtep(t)} self" for vni, t in round_.fdb_deleted()
    ]
    sh(["bridge", "-batch", "-"], "\n".join(lines) + "\n")
    with NetlinkSocket() as nl:
        batch = []
        for vni, t in round_.mdb_deleted():
            seq = nl.next_seq()
            fact = smet(vni, t)
            message = mdb_message(RTM_DELMDB, seq, ifindex(f"vxlan{vni}"), None, fact.group, fact.vtep, None)
            batch.append((seq, message))
        refused = [a for a in nl.transact(batch).values() if a.errno]
        if refused:
            raise RuntimeError(f"injected MDB deletes refused: {refused[:3]}")


def restarted(t0: float, t1: float, workdir: str, r: int) -> None:
    """The restarted agent, run by ``main`` in a fresh process inside the namespace (``t0``: its
    first statement, ``t1``: after ``import agent.daemon``). Prints one JSON line."""
    from agent.daemon import Agent

    config = agent_config(Path(workdir))
    out: dict[str, Any] = {"import_s": t1 - t0}
    began = time.perf_counter()
    Agent(config)  # what ``evpn-agent run`` builds before its loop, its reconciler included
    out["agent_s"] = time.perf_counter() - began
    began = time.perf_counter()
    timed = TimedKernel(RouteKernel())
    rec = Reconciler(timed, config.vni_ports(), config.replication_settings())
    out["construct_s"] = time.perf_counter() - began
    journal = time_journal(rec)
    began = time.perf_counter()
    store = learn(r)
    out["relearn_s"] = time.perf_counter() - began
    out["paths"] = store.path_count()
    vnis = [p.vni for p in config.vni_ports()]
    protocol = config.replication.protocol
    checker = RouteKernel()

    split, report = one_pass(rec, timed, journal, store, vnis)
    check_report(report, "first pass after the restart", 0, 0)
    verify(checker, store, protocol, "after the restart pass")
    out["restart"] = split
    out["restart_report"] = report.event()

    changes = Round(r)
    inject(changes)
    gc.collect()
    began = time.perf_counter()
    changed = changes.apply(store)
    out["store_changes_s"] = time.perf_counter() - began
    out["store_changes"] = changed
    if changed != 4 * K * (VNIS // 2):
        raise RuntimeError(f"round {r}: {changed} store changes took effect, expected {4 * K * (VNIS // 2)}")
    split, report = one_pass(rec, timed, journal, store, vnis)
    check_report(report, "pass fixing 1,000 differences", 750, 250)
    verify(checker, store, protocol, "after the pass fixing 1,000 differences")
    out["fix"] = split
    out["fix_report"] = report.event()
    print(json.dumps(out))


CHILD = (
    "import time; t0 = time.perf_counter(); import sys; sys.path.insert(0, {root!r}); import agent.daemon; "
    "t1 = time.perf_counter(); from bench.restart import restarted; restarted(t0, t1, {workdir!r}, {r})"
)


def restart(workdir: Path, r: int) -> dict[str, Any]:
    """One restart in a fresh interpreter in the current namespace; its result and wall time."""
    code = CHILD.format(root=str(ROOT), workdir=str(workdir), r=r)
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"restarted agent {r} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


# --------------------------------------------------------------------------- the run


def make_namespace(lab: Lab) -> str:
    name = lab.add("n")
    build_vnis(name, range(1, VNIS + 1), LOCAL)
    return name


def before_restart(config: AgentConfig) -> dict[str, float]:
    """The agent before the restart programs everything; the operator adds entries of its own."""
    kernel = RouteKernel()
    try:
        rec = Reconciler(kernel, config.vni_ports(), config.replication_settings())
        vnis = [p.vni for p in config.vni_ports()]
        setup = rec.reconcile(StoreSnapshot.of(Store(), vnis))
        check_report(setup, "set-up pass", 0, 0)  # an empty VNI needs no catch-all
        store = learn(0)
        gc.collect()
        began = time.perf_counter()
        report = rec.reconcile(StoreSnapshot.of(store, vnis))
        program_s = time.perf_counter() - began
        check_report(report, "programming pass", OWNED, 0)
        add_operator_entries()
        verify(kernel, store, config.replication.protocol, "before the restart")
    finally:
        kernel.close()
    return {"setup_s": setup.seconds, "program_s": program_s}


def flat(rows: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    return [r[part] for r in rows]


def main() -> None:
    setup_run(__doc__, "(no profile: the restarted agents run in processes of their own)")
    lab = Lab()
    wall = time.perf_counter()
    settled = {"before_s": 0.0, "after_s": 0.0}
    rows: list[dict[str, Any]] = []
    try:
        settled["before_s"] = lab.settle()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmpdir:
            workdir = Path(tmpdir) / "agent"
            config = agent_config(workdir)
            ns = make_namespace(lab)
            with inside(ns):
                before = before_restart(config)
            journal_kb = (workdir / "replication-journal.json").stat().st_size / 1024
            for r in range(RESTARTS):
                lab.settle()
                with inside(ns):
                    rows.append(restart(workdir, r))
            with inside(ns):
                checker = RouteKernel()
                try:  # the operator's entries survived three restarts and 3,000 differences
                    verify(checker, learn(RESTARTS), config.replication.protocol, "at the end")
                finally:
                    checker.close()
    finally:
        settled["after_s"] = lab.close()
    report(rows, before, journal_kb, time.perf_counter() - wall, settled)


PARTS = ("snapshot_s", "devices_s", "dump_s", "diff_s", "journal_s", "write_s")


def report(
    rows: list[dict[str, Any]],
    before: dict[str, float],
    journal_kb: float,
    wall: float,
    settled: dict[str, float],
) -> None:
    restart_rows, fix_rows = flat(rows, "restart"), flat(rows, "fix")
    result: dict[str, Any] = {k: med(rows, k) for k in ("import_s", "agent_s", "construct_s", "relearn_s")}
    result.update(process_s=med(rows, "process_s"), store_changes_s=med(rows, "store_changes_s"))
    for name, part in (("restart", restart_rows), ("fix", fix_rows)):
        for key in ("pass_s", *PARTS):
            result[f"{name}_{key}"] = med(part, key)
        result[f"{name}_s"] = med([{"v": r["snapshot_s"] + r["pass_s"]} for r in part], "v")
    # From the process's first statement to a reconciled kernel, BGP's re-learning left out.
    # Agent(config) builds the daemon's reconciler (journal load included); construct_s is a
    # second reconciler alone, the one the passes run on (the two are not added up).
    starts = [
        r["import_s"] + r["agent_s"] + r["restart"]["snapshot_s"] + r["restart"]["pass_s"] for r in rows
    ]
    result["restart_total_s"] = med([{"v": v} for v in starts], "v")
    result.update(before)

    print(
        f"kernel {os.uname().release}, {VNIS} VXLAN devices: the agent owns {VNIS * VTEPS:,} flood entries"
        f" and {VNIS * GROUPS + 2 * VNIS:,} MDB remotes ({OWNED:,}); the operator 5 flood entries and 6 MDB"
        " remotes"
    )
    print(
        f"before the restart: programmed from empty in {before['program_s']:.3f} s; "
        f"journal {journal_kb:,.0f} KiB"
    )
    print(f"restarted agent, fresh process, median of {RESTARTS} (runs in brackets):")
    lines = (
        ("import agent.daemon", "import_s", rows),
        ("Agent(config) construction, its reconciler incl.", "agent_s", rows),
        ("  a Reconciler alone (its journal loaded), again", "construct_s", rows),
        (f"store re-learnt ({rows[0]['paths']:,} paths, store calls only)", "relearn_s", rows),
    )
    for label, key, src in lines:
        print(f"  {label:<48} {result[key]:7.3f} s   ({runs(src, key)})")
    for name, label, part in (
        ("restart", "first pass, nothing to change", restart_rows),
        ("fix", "pass fixing 1,000 differences (+750 -250)", fix_rows),
    ):
        print(
            f"  {label:<48} {result[name + '_s']:7.3f} s   (snapshot + pass; passes {runs(part, 'pass_s')})"
        )
        print("    " + ", ".join(f"{k.removesuffix('_s')} {result[name + '_' + k]:.3f}" for k in PARTS))
    print(
        f"  restart to reconciled kernel (import + Agent() + snapshot + first pass): "
        f"{result['restart_total_s']:.3f} s; whole process incl. interpreter start and checks "
        f"{result['process_s']:.1f} s"
    )
    print(
        f"  the 500 store changes themselves: {result['store_changes_s'] * 1000:.1f} ms; reports: "
        f"{rows[-1]['restart_report']} / {rows[-1]['fix_report']}"
    )
    print(
        "verified after every pass: kernel flood lists and VXLAN MDB == the store's views + the operator's "
        "entries, exactly; operator entries untouched"
    )
    print(
        f"whole run: {wall:.1f} s, of which waiting for namespace tear-down"
        f" {settled['before_s']:.1f} s before and {settled['after_s']:.1f} s after"
    )
    out: dict[str, Any] = {k: round(v, 4) for k, v in result.items()}
    out.update(owned=OWNED, differences=1000, restarts=RESTARTS)
    print(json.dumps(out))


def plot(result: dict[str, Any], out: Path) -> None:
    """Where a restarted agent's time goes: process start, the first (no-op) pass, and the pass
    that fixes 1,000 differences, each split into its parts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "import": "#c6dbef",
        "Agent() (its Reconciler + journal load incl.)": "#6baed6",
        "snapshot": "#fdd0a2",
        "devices": "#fdae6b",
        "dump": "#4292c6",
        "diff": "#e6550d",
        "journal": "#a1d99b",
        "write": "#08519c",
    }
    bars = [
        (
            "process start",
            {"import": "import_s", "Agent() (its Reconciler + journal load incl.)": "agent_s"},
        ),
        ("first pass\n(nothing to change)", {k.removesuffix("_s"): f"restart_{k}" for k in PARTS}),
        ("pass fixing\n1,000 differences", {k.removesuffix("_s"): f"fix_{k}" for k in PARTS}),
    ]
    fig, ax = plt.subplots(figsize=(12, 4.6))
    seen: set[str] = set()
    for y, (_label, parts) in enumerate(bars):
        left = 0.0
        for name, key in parts.items():
            value = float(result[key])
            ax.barh(
                y,
                value,
                left=left,
                color=colours[name],
                edgecolor="white",
                label=None if name in seen else name,
            )
            seen.add(name)
            left += value
        ax.annotate(f"{left:.2f} s", (left, y), xytext=(4, 0), textcoords="offset points", va="center")
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("seconds (median of the restarts)")
    ax.set_xlim(0, max(ax.get_xlim()[1], 0.1) * 1.12)
    ax.set_title(
        f"Restart with {result['owned']:,} owned FDB+MDB entries: reconcile, and fix "
        f"{result['differences']:,} differences (import to reconciled: {result['restart_total_s']:.2f} s)"
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="parts")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
