"""Flood-list convergence of an agent leaf against an FRR leaf, fed by the same ExaBGP sender.

What users would pick instead of the agent is FRR (bgpd + zebra, ``advertise-all-vni``), so
each run builds, in fresh namespaces (``eiab<hex>...``):

- ``snd``: the sender, ExaBGP 5.0.15 with the project's launcher, passive (it listens), one
  instance per receiver so both get the same treatment;
- ``frr``: an FRR 8.4 leaf (zebra + bgpd, private sockets), 50 ``brN``/``vxlanN``;
- ``agt``: an agent leaf (``evpn-agent run``), the same 50 ``brN``/``vxlanN``.

The sender announces N IMET routes (50 VNIs x V VTEPs, PMSI ingress replication, RT 65000:VNI,
one route per UPDATE as IMET arrives in a real fabric). Three scenarios per receiver:

- ``preloaded``: the routes wait in the sender's RIB; the receiver starts and connects. Timed
  from the session coming up (the sender's ``state up``) until the receiver's kernel FDB holds
  all N flood entries;
- ``withdraw``: the sender withdraws all N; timed until none is left;
- ``live``: on the established session, the sender announces all N; timed from the first
  command until the FDB holds all N.

The kernel FDB is watched with an rtnetlink listener (RTM_NEWNEIGH/DELNEIGH, one per remote) in
the receiver's namespace, next to a packet socket on its BGP link that notes when the last
UPDATE arrived. ``tail`` = FDB complete - last UPDATE in: what the receiver itself adds after
the sender is done. Small tails mean the sender is the bottleneck, not the receiver.

Runs alternate which receiver goes first. Figures are medians over the runs; ``ratio`` =
agent_s / frr_s (target <= 1.5). Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Lab, Sender, build_vnis, descendants, inside, sh
from bgp.evpn import IPAddress
from replication.kernel import NetlinkSocket, force_buffer
from replication.model import ZERO_MAC
from replication.netlink import (
    RTM_DELNEIGH,
    RTM_GETNEIGH,
    RTM_NEWNEIGH,
    dump_request,
    iter_messages,
    parse_fdb,
)

ROOT = Path(__file__).resolve().parent.parent
VNIS = 50
FIRST_VNI = 100
ASN = 65000
SIZES = {2500: 50, 10000: 200}  # routes -> VTEPs per VNI
RUNS = 5
TARGET_RATIO = 1.5
PHASE_TIMEOUT_S = 120.0
RTNLGRP_NEIGH = 3
ETH_P_IP = 0x0800
BGP_HEADER = 19  # a KEEPALIVE is exactly this; an UPDATE is longer

SENDER_FRR, FRR_ADDR = "10.1.0.1", "10.1.0.2"
SENDER_AGENT, AGENT_ADDR = "10.2.0.1", "10.2.0.2"


def vtep(index: int) -> IPv4Address:
    return IPv4Address(int(IPv4Address("10.200.0.1")) + index)


def imet_commands(action: str, vteps: int, next_hop: str) -> list[str]:
    """The launcher commands for 50 VNIs x ``vteps`` IMET routes, VNI by VNI."""
    out = []
    for vni in range(FIRST_VNI, FIRST_VNI + VNIS):
        for i in range(vteps):
            v = vtep(i)
            out.append(
                f"{action} evpn imet rd {v}:{vni} etag 0 originator {v} next-hop {next_hop} "
                f"pmsi ingress-replication {vni} {v} rt {ASN}:{vni} encap vxlan"
            )
    return out


# --------------------------------------------------------------------------- the watcher


@dataclass
class Watch:
    """Kernel FDB flood entries of our VTEPs, and the arrival of BGP UPDATEs, in one namespace.

    A thread reads both sockets, so nothing polls the kernel with dumps while it is being
    programmed. ``wait(count)`` returns the time at which the FDB held exactly ``count`` of the
    sender's entries. A netlink overrun (ENOBUFS) is repaired with a dump and counted.
    """

    netns: str
    link: str
    sender: str
    wanted: frozenset[IPv4Address]
    entries: set[tuple[int, IPAddress | None]] = field(default_factory=set)
    last_update: float = 0.0
    overruns: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reached: dict[int, float] = field(default_factory=dict)
    _stop: bool = False

    def start(self) -> None:
        with inside(self.netns):
            self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            force_buffer(self._nl, 64 << 20)
            self._nl.bind((0, 1 << (RTNLGRP_NEIGH - 1)))
            self._dumper = NetlinkSocket()
            self._pkt = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
            force_buffer(self._pkt, 16 << 20)
            self._pkt.bind((self.link, ETH_P_IP))
        self._sender = IPv4Address(self.sender).packed
        self._resync()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for s in (self._nl, self._pkt):
            s.close()
        self._dumper.close()

    def _resync(self) -> None:
        fresh: set[tuple[int, IPAddress | None]] = set()
        for msg in self._dumper.dump(lambda seq: dump_request(RTM_GETNEIGH, seq)):
            record = parse_fdb(msg)
            if record and record.mac == ZERO_MAC and record.dst in self.wanted:
                fresh.add((record.ifindex, record.dst))
        self.entries = fresh

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._nl, selectors.EVENT_READ, "nl")
        sel.register(self._pkt, selectors.EVENT_READ, "pkt")
        buf = bytearray(1 << 20)
        while not self._stop:
            for key, _ in sel.select(0.1):
                if key.data == "pkt":
                    self._packet(buf)
                    continue
                try:
                    n = self._nl.recv_into(buf)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    self.overruns += 1
                    self._resync()
                    self._note()
                    continue
                now = time.monotonic()
                for msg in iter_messages(bytes(buf[:n])):
                    if msg.kind not in (RTM_NEWNEIGH, RTM_DELNEIGH):
                        continue
                    record = parse_fdb(msg._replace(kind=RTM_NEWNEIGH))
                    if record is None or record.mac != ZERO_MAC or record.dst not in self.wanted:
                        continue
                    key_ = (record.ifindex, record.dst)
                    if msg.kind == RTM_NEWNEIGH:
                        self.entries.add(key_)
                    else:
                        self.entries.discard(key_)
                self._note(now)

    def _packet(self, buf: bytearray) -> None:
        while True:
            try:
                n = self._pkt.recv_into(buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if n < 40 or buf[12:16] != self._sender or buf[9] != socket.IPPROTO_TCP:
                continue
            ihl = (buf[0] & 0x0F) * 4
            total = struct.unpack_from("!H", buf, 2)[0]
            doff = (buf[ihl + 12] >> 4) * 4
            if total - ihl - doff > BGP_HEADER:
                self.last_update = time.monotonic()

    def _note(self, now: float | None = None) -> None:
        with self._cond:
            count = len(self.entries)
            if count not in self._reached:
                self._reached[count] = now or time.monotonic()
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            self._reached = {}
            self.last_update = 0.0

    def wait(self, count: int, timeout: float = PHASE_TIMEOUT_S) -> float:
        """The monotonic time at which the FDB first held ``count`` entries (after ``reset``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while count not in self._reached or len(self.entries) != count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.netns}: FDB holds {len(self.entries)} of {count} entries")
                self._cond.wait(min(left, 0.5))
            return self._reached[count]


# --------------------------------------------------------------------------- receivers


FRR_BGPD = """\
hostname frr-leaf
log file {log} informational
router bgp {asn}
 bgp router-id {me}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {peer} remote-as {asn}
 neighbor {peer} timers connect 1
 address-family l2vpn evpn
  neighbor {peer} activate
  advertise-all-vni
 exit-address-family
"""


class Receiver:
    name = ""

    def __init__(self, netns: str, workdir: Path) -> None:
        self.netns = netns
        self.workdir = workdir

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The receiver's processes (for their CPU time)."""
        raise NotImplementedError

    def cpu_s(self) -> float:
        """User + system CPU seconds its processes have used so far."""
        return sum(self.cpu_parts().values())

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds so far by part: each process by what it runs, the agent's main thread
        apart from its other threads (the replication passes)."""
        parts: dict[str, float] = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    name = self.part(pid, int(tid))
                    parts[name] = parts.get(name, 0.0) + _cpu_s(f"/proc/{pid}/task/{tid}/stat")
        return parts

    def part(self, pid: int, tid: int) -> str:
        return _program(pid)


class FrrLeaf(Receiver):
    """zebra + bgpd with private pid files, zserv and vty sockets (DESIGN.md section 7)."""

    name = "frr"

    def start(self) -> None:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o777)
        (d / "zebra.conf").write_text("hostname zebra\n")
        (d / "bgpd.conf").write_text(
            FRR_BGPD.format(log=d / "bgpd.log", asn=ASN, me=FRR_ADDR, peer=SENDER_FRR)
        )
        common = ["-d", "-u", "root", "-g", "frrvty", "-z", str(d / "zserv.api"), "--vty_socket", str(d)]
        common += ["-A", "127.0.0.1"]
        netns = ["ip", "netns", "exec", self.netns]
        sh([*netns, "/usr/lib/frr/zebra", *common, "-f", str(d / "zebra.conf"), "-i", str(d / "zebra.pid")])
        _poll((d / "zserv.api").exists, "zebra's zserv socket")
        sh([*netns, "/usr/lib/frr/bgpd", *common, "-f", str(d / "bgpd.conf"), "-i", str(d / "bgpd.pid")])

    def pids(self) -> list[int]:
        out = []
        for daemon in ("bgpd", "zebra"):
            with contextlib.suppress(OSError, ValueError):
                out.append(int((self.workdir / f"{daemon}.pid").read_text().strip()))
        return out

    def stop(self) -> None:
        for daemon in ("bgpd", "zebra"):
            pidfile = self.workdir / f"{daemon}.pid"
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


class AgentLeaf(Receiver):
    """``evpn-agent run`` with the same 50 VNIs; IPMR off (the edge is not what is measured)."""

    name = "agent"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        config = {
            "router_id": AGENT_ADDR,
            "local_vtep": AGENT_ADDR,
            "asn": ASN,
            "neighbors": [{"address": SENDER_AGENT, "asn": ASN, "local_address": AGENT_ADDR}],
            "vnis": [{"vni": vni} for vni in range(FIRST_VNI, FIRST_VNI + VNIS)],
            "workdir": str(d / "run"),
            "log_level": "warning",
        }
        (d / "agent.yaml").write_text(json.dumps(config))  # JSON is YAML
        log = (d / "agent.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                str(ROOT / ".venv/bin/evpn-agent"),
                "run",
                "--config",
                str(d / "agent.yaml"),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def pids(self) -> list[int]:
        """The agent (``ip netns exec`` execs it) and its descendants: ExaBGP and the relay."""
        if self.proc is None:
            return []
        with contextlib.suppress(OSError):
            return [self.proc.pid, *descendants(self.proc.pid)]
        return []

    def part(self, pid: int, tid: int) -> str:
        if self.proc is not None and pid == self.proc.pid:
            return "agent main" if tid == pid else "agent passes"
        return _program(pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _cpu_s(stat: str) -> float:
    """User + system CPU seconds from a /proc stat file; 0 once the task is gone."""
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _program(pid: int) -> str:
    """What a receiver's process is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    for word in words:
        for known in ("bgp.relay", "bgp.launcher", "evpn-agent", "bgpd", "zebra"):
            if word.endswith(known):
                return {"bgp.launcher": "exabgp", "bgp.relay": "relay", "evpn-agent": "agent"}.get(
                    known, known
                )
    return Path(words[0]).name if words else "?"


def _poll(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- the sender


# --------------------------------------------------------------------------- one round


async def measure(receiver: Receiver, sender: Sender, watch: Watch, vteps: int) -> dict[str, float]:
    """The three scenarios against one receiver; seconds for each, the receiver's tails, and
    the CPU its parts and the sender used (``SCENARIO_cpu_PART``)."""
    n = VNIS * vteps
    announce = imet_commands("announce", vteps, sender.local)
    withdraw = imet_commands("withdraw", vteps, sender.local)
    out: dict[str, float] = {}
    sender_pid = 0

    def cpu() -> dict[str, float]:
        parts = receiver.cpu_parts()
        parts["sender"] = sum(_cpu_s(f"/proc/{p}/stat") for p in (sender_pid, *descendants(sender_pid)))
        return parts

    def note(scenario: str, done: float, began: float, before: dict[str, float]) -> None:
        out[f"{scenario}_s"] = done - began
        out[f"{scenario}_tail_s"] = done - watch.last_update
        after = cpu()
        out[f"{scenario}_cpu_s"] = sum(v - before.get(k, 0.0) for k, v in after.items() if k != "sender")
        for part, value in after.items():
            out[f"{scenario}_cpu_{part}"] = value - before.get(part, 0.0)

    await sender.start()
    sender_pid = sender.process.pid or 0
    try:
        await sender.send(announce)  # preloaded: held in the sender's RIB until the session is up
        watch.reset()
        receiver.start()
        await asyncio.wait_for(sender.up.wait(), 60)
        assert sender.up_at is not None
        before = cpu()
        note("preloaded", await asyncio.to_thread(watch.wait, n), sender.up_at, before)

        watch.reset()
        began, before = time.monotonic(), cpu()
        await sender.send(withdraw)
        note("withdraw", await asyncio.to_thread(watch.wait, 0), began, before)

        watch.reset()
        began, before = time.monotonic(), cpu()
        await sender.send(announce)
        note("live", await asyncio.to_thread(watch.wait, n), began, before)
        out["overruns"] = watch.overruns
    finally:
        receiver.stop()
        await sender.stop()
    return out


async def one_run(lab: Lab, run: int, size: int, workdir: Path) -> dict[str, dict[str, float]]:
    vteps = SIZES[size]
    snd, frr, agt = lab.add(f"s{size}r{run}"), lab.add(f"f{size}r{run}"), lab.add(f"a{size}r{run}")
    for peer, here, there in ((frr, SENDER_FRR, FRR_ADDR), (agt, SENDER_AGENT, AGENT_ADDR)):
        tag = "f" if peer == frr else "a"
        sh(
            [
                "ip",
                "link",
                "add",
                f"eiab{tag}",
                "netns",
                snd,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer,
            ]
        )
        sh(["ip", "-n", snd, "addr", "add", f"{here}/24", "dev", f"eiab{tag}"])
        sh(["ip", "-n", snd, "link", "set", f"eiab{tag}", "up"])
        sh(["ip", "-n", peer, "addr", "add", f"{there}/24", "dev", "eth0"])
        sh(["ip", "-n", peer, "link", "set", "eth0", "up"])
    sh(["ip", "-n", snd, "link", "set", "lo", "up"])
    build_vnis(frr, range(FIRST_VNI, FIRST_VNI + VNIS), FRR_ADDR, loopback=False)
    build_vnis(agt, range(FIRST_VNI, FIRST_VNI + VNIS), AGENT_ADDR, loopback=False)
    wanted = frozenset(vtep(i) for i in range(vteps))
    receivers: list[tuple[Receiver, Sender, Watch]] = [
        (
            FrrLeaf(frr, workdir / f"frr-{size}-{run}"),
            Sender(snd, SENDER_FRR, FRR_ADDR, ASN, workdir / f"snd-frr-{size}-{run}"),
            Watch(frr, "eth0", SENDER_FRR, wanted),
        ),
        (
            AgentLeaf(agt, workdir / f"agent-{size}-{run}"),
            Sender(snd, SENDER_AGENT, AGENT_ADDR, ASN, workdir / f"snd-agent-{size}-{run}"),
            Watch(agt, "eth0", SENDER_AGENT, wanted),
        ),
    ]
    if run % 2:
        receivers.reverse()
    results = {}
    for receiver, sender, watch in receivers:
        lab.settle()
        watch.start()
        try:
            results[receiver.name] = await measure(receiver, sender, watch, vteps)
        finally:
            watch.close()
    return results


# --------------------------------------------------------------------------- report

SCENARIOS = ("preloaded", "live", "withdraw")


def summarise(rows: dict[int, list[dict[str, dict[str, float]]]], runs: int) -> dict[str, Any]:
    result: dict[str, Any] = {"runs": runs, "target_ratio": TARGET_RATIO, "sizes": {}}
    for size, runs_ in rows.items():
        per: dict[str, Any] = {}
        for scenario in SCENARIOS:
            agent = statistics.median(r["agent"][f"{scenario}_s"] for r in runs_)
            frr = statistics.median(r["frr"][f"{scenario}_s"] for r in runs_)
            per[scenario] = {
                "agent_s": round(agent, 4),
                "frr_s": round(frr, 4),
                "ratio": round(agent / frr, 3),
                "agent_tail_s": round(statistics.median(r["agent"][f"{scenario}_tail_s"] for r in runs_), 4),
                "frr_tail_s": round(statistics.median(r["frr"][f"{scenario}_tail_s"] for r in runs_), 4),
                "agent_cpu_s": round(statistics.median(r["agent"][f"{scenario}_cpu_s"] for r in runs_), 3),
                "frr_cpu_s": round(statistics.median(r["frr"][f"{scenario}_cpu_s"] for r in runs_), 3),
                "agent_cpu_parts": _parts(runs_, "agent", scenario),
                "frr_cpu_parts": _parts(runs_, "frr", scenario),
                "agent_runs": [round(r["agent"][f"{scenario}_s"], 4) for r in runs_],
                "frr_runs": [round(r["frr"][f"{scenario}_s"], 4) for r in runs_],
            }
        per["overruns"] = sum(int(r[k]["overruns"]) for r in runs_ for k in ("agent", "frr"))
        result["sizes"][str(size)] = per
    return result


def _parts(runs_: list[dict[str, dict[str, float]]], who: str, scenario: str) -> dict[str, float]:
    """Median CPU seconds of each part of ``who`` (and of its sender) in ``scenario``."""
    prefix = f"{scenario}_cpu_"
    names = {k[len(prefix) :] for r in runs_ for k in r[who] if k.startswith(prefix) and k != prefix + "s"}
    return {
        name: round(statistics.median(r[who].get(prefix + name, 0.0) for r in runs_), 3)
        for name in sorted(names)
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\nmedian of {result['runs']} runs; tail = FDB complete minus last UPDATE received; "
        "CPU = receiver's processes (agent + its ExaBGP + relay; bgpd + zebra)"
    )
    print(
        f"{'routes':>7} {'scenario':<10} {'agent s':>8} {'FRR s':>8} {'ratio':>6} "
        f"{'agent tail':>11} {'FRR tail':>9} {'agent CPU':>10} {'FRR CPU':>8}"
    )
    for size, per in result["sizes"].items():
        for scenario in SCENARIOS:
            s = per[scenario]
            print(
                f"{size:>7} {scenario:<10} {s['agent_s']:>8.3f} {s['frr_s']:>8.3f} {s['ratio']:>6.2f} "
                f"{s['agent_tail_s']:>11.3f} {s['frr_tail_s']:>9.3f} {s['agent_cpu_s']:>10.2f} "
                f"{s['frr_cpu_s']:>8.2f}"
            )
    print("CPU seconds by part (median):")
    for size, per in result["sizes"].items():
        for scenario in SCENARIOS:
            s = per[scenario]
            parts = "  ".join(
                f"{who}: " + ", ".join(f"{k} {v:.2f}" for k, v in s[f"{who}_cpu_parts"].items())
                for who in ("agent", "frr")
            )
            print(f"{size:>7} {scenario:<10} {parts}")
    worst = max(per[s]["ratio"] for per in result["sizes"].values() for s in SCENARIOS)
    result["worst_ratio"] = worst
    print(
        f"worst ratio {worst:.2f} (target <= {TARGET_RATIO}): {'PASS' if worst <= TARGET_RATIO else 'FAIL'}"
    )


def plot(result: dict[str, Any], out: Path) -> None:
    """Grouped bars: agent and FRR seconds per scenario and size, ratios written above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(result["sizes"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        per = result["sizes"][size]
        xs = range(len(SCENARIOS))
        agent = [per[s]["agent_s"] for s in SCENARIOS]
        frr = [per[s]["frr_s"] for s in SCENARIOS]
        ax.bar([x - 0.2 for x in xs], agent, 0.4, label="agent")
        ax.bar([x + 0.2 for x in xs], frr, 0.4, label="FRR 8.4")
        for x, s in zip(xs, SCENARIOS, strict=True):
            top = max(per[s]["agent_s"], per[s]["frr_s"])
            ax.annotate(f"x{per[s]['ratio']:.2f}", (x, top), ha="center", va="bottom")
        ax.set_xticks(list(xs), [f"{s}" for s in SCENARIOS])
        ax.set_ylabel("seconds until the kernel FDB is complete")
        ax.set_title(f"{int(size):,} IMET routes (50 VNIs x {SIZES[int(size)]} VTEPs)")
        ax.margins(y=0.15)
        ax.legend()
    fig.suptitle("Flood-list convergence, agent vs FRR (same ExaBGP sender; median)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    lab = Lab()
    rows: dict[int, list[dict[str, dict[str, float]]]] = {size: [] for size in args.sizes}
    with tempfile.TemporaryDirectory(prefix="eiab-conv-") as tmp:
        try:
            for run in range(args.runs):
                for size in args.sizes:
                    r = await one_run(lab, run, size, Path(tmp))
                    rows[size].append(r)
                    print(
                        f"run {run + 1} {size:>6} routes: "
                        + "  ".join(
                            f"{who} pre {r[who]['preloaded_s']:.3f} live {r[who]['live_s']:.3f} "
                            f"wd {r[who]['withdraw_s']:.3f}"
                            for who in ("agent", "frr")
                        ),
                        flush=True,
                    )
        finally:
            lab.close()
    return summarise(rows, args.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--plot", type=Path, help="also draw the PNG here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark builds network namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = asyncio.run(main_async(args))
    report(result)
    if args.plot:
        plot(result, args.plot)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
