"""Lab plumbing the namespace benchmarks share: uniquely named namespaces that go away even when a
run fails, entering a namespace in-process, waiting for the kernel to finish tearing namespaces
down before anything is timed, and the medians, run lists and cProfile tables of the report.

The scripts put the repository root on ``sys.path`` and import this as ``bench.common``. It must
not import from ``tests/`` (the benchmarks run without the test suite), so ``inside`` is its own,
of the same shape as ``tests.netns.netlab.inside``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import io
import os
import pstats
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from replication.kernel import NetlinkSocket
from replication.netlink import NLM_F_ACK, NLM_F_REQUEST

PREFIX = "eiab"  # evpn-ir-agent bench: every namespace of a benchmark starts with it
RTM_NEWLINK, IFF_UP = 16, 1
# settle: the wait is over once SETTLE_QUIET probes in a row answer within SETTLE_PROBE_S.
SETTLE_PROBE_S, SETTLE_QUIET, SETTLE_TIMEOUT_S = 0.002, 20, 30.0

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), feeding it ``stdin``; raise on failure, return its output."""
    return subprocess.run(cmd, input=stdin, check=True, text=True, capture_output=True)


def setup_run(description: str, profile_help: str) -> argparse.Namespace:
    """Parse ``--profile``, insist on root, and turn SIGTERM into SystemExit so that the caller's
    ``finally`` still removes its namespaces when the run is stopped."""
    parser = argparse.ArgumentParser(description=description.split("\n", 1)[0])
    parser.add_argument("--profile", action="store_true", help=profile_help)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark builds network namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args


# --------------------------------------------------------------------------- in-process netns


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the calling thread inside ``netns``: sockets opened here stay bound to it, and child
    processes start in it, so a measurement needs no ``ip netns exec`` in its timed part."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


# --------------------------------------------------------------------------- namespaces


class Probe:
    """Times an idempotent RTNL write (``link set lo up``) in a namespace of its own.

    Deleting a namespace returns at once, but the kernel then holds the RTNL lock for up to a
    second or so per namespace tearing it down; any netlink write (ours, ``bridge``'s, an
    ``MRT_ADD_MFC``) waits meanwhile. ``settle`` waits until the write answers promptly again.
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        with inside(netns):
            self._nl = NetlinkSocket()  # stays in the probe namespace after we leave it
            self._lo = socket.if_nametoindex("lo")

    def once(self) -> float:
        """Seconds one ``link set lo up`` takes, ack included."""
        seq = self._nl.next_seq()
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, self._lo, IFF_UP, IFF_UP)
        message = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
        began = time.perf_counter()
        ack = self._nl.transact([(seq, message)]).get(seq)
        elapsed = time.perf_counter() - began
        if ack is None or ack.errno:
            raise RuntimeError(f"probe write refused: {ack}")
        return elapsed

    def settle(self) -> float:
        """Seconds waited until SETTLE_QUIET probes in a row answer within SETTLE_PROBE_S."""
        began = time.perf_counter()
        quiet = 0
        while quiet < SETTLE_QUIET and time.perf_counter() - began < SETTLE_TIMEOUT_S:
            quiet = quiet + 1 if self.once() < SETTLE_PROBE_S else 0
            time.sleep(0.01)
        return time.perf_counter() - began

    def close(self) -> None:
        self._nl.close()


@dataclass
class Lab:
    """The namespaces of one run, named ``eiab<tag><suffix>`` with a random tag so that runs (and
    the test suite's ``eiat`` namespaces) never collide; ``close`` (in a ``finally``) removes them.

    ``settle`` waits for RTNL to be quiet, so that the tear-down of namespaces an earlier run or
    this one deleted never falls into a measurement. Its probe namespace goes last: ``close``
    deletes the others, waits once more so the next benchmark starts on a quiet kernel, and
    returns the seconds waited.
    """

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    probe: Probe | None = None

    def name(self, suffix: str) -> str:
        return f"{PREFIX}{self.tag}{suffix}"

    def add(self, suffix: str) -> str:
        """Create the namespace ``name(suffix)``, recorded for ``close``; its full name."""
        name = self.name(suffix)
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        return name

    def drop(self, name: str) -> None:
        """Kill what still runs in the namespace (a daemon left by a failed run) and delete it."""
        pids = subprocess.run(["ip", "netns", "pids", name], check=False, capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def settle(self) -> float:
        """Seconds waited for RTNL to answer promptly (the probe namespace made on first use)."""
        if self.probe is None:
            self.probe = Probe(self.add("probe"))
        return self.probe.settle()

    def close(self) -> float:
        """Delete the namespaces, then (if ``settle`` was used) wait for their tear-down; the
        seconds waited. Warns about any namespace of this run still listed."""
        probe, waited = self.probe, 0.0
        try:
            for name in [n for n in self.namespaces if probe is None or n != probe.netns]:
                self.drop(name)
            if probe is not None:
                waited = probe.settle()
        finally:
            if probe is not None:
                probe.close()
                self.drop(probe.netns)
                self.probe = None
            left = [n for n in sh(["ip", "netns", "list"]).stdout.split() if n.startswith(self.name(""))]
            if left:
                print(f"WARNING: namespaces left behind: {left}", file=sys.stderr)
        return waited


def build_vnis(netns: str, vnis: Iterable[int], local: str, loopback: bool = True) -> None:
    """Per VNI N a bridge ``brN`` with a VXLAN port ``vxlanN`` (VNI N, ``local``, nolearning),
    all up, as a leaf has them; ``loopback`` also puts ``local``/32 on ``lo``. One ``ip -batch``."""
    lines = ["link set lo up"] + ([f"addr add {local}/32 dev lo"] if loopback else [])
    for n in vnis:
        lines += [
            f"link add br{n} type bridge",
            f"link add vxlan{n} type vxlan id {n} local {local} dstport 4789 nolearning",
            f"link set vxlan{n} master br{n}",
            f"link set br{n} up",
            f"link set vxlan{n} up",
        ]
    sh(["ip", "-n", netns, "-batch", "-"], "\n".join(lines) + "\n")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the agent: its ExaBGP and the relay), for their CPU time
    and memory."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            for child in map(int, f.read().split()):
                out += [child, *descendants(child)]
    return out


# --------------------------------------------------------------------------- a BGP sender


class Sender:
    """An ExaBGP speaker (the project's launcher) in ``netns`` that announces routes to one peer
    over the launcher's commands; passive, so routes sent before the peer connects wait in its
    RIB. ``up_at`` is when the session came up (``time.monotonic``)."""

    def __init__(self, netns: str, local: str, peer: str, asn: int, workdir: Path) -> None:
        from bgp.exabgp_config import Neighbor, Speaker
        from bgp.speaker import ExabgpProcess

        speaker = Speaker(
            ip_address(local), asn, ip_address(local), (Neighbor(ip_address(peer), asn, passive=True),)
        )
        python = str(Path(__file__).resolve().parent.parent / ".venv/bin/python")
        self.process = ExabgpProcess(speaker, workdir, netns=netns, python=python)
        self.local = local
        self.up_at: float | None = None
        self.up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.process.start()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(EOFError):
            while True:
                line = await self.process.next_line(None)
                if line and '"state"' in line and '"up"' in line:
                    self.up_at = time.monotonic()
                    self.up.set()

    async def send(self, commands: list[str]) -> float:
        """Pipeline the commands; the time the last one was acknowledged."""
        futures = [self.process.send(c) for c in commands]
        results = await asyncio.gather(*futures)
        if not all(results):
            raise RuntimeError(f"the sender refused {results.count(False)} commands")
        return time.monotonic()

    async def stop(self) -> None:
        await self.process.stop()
        if self._reader is not None:
            self._reader.cancel()



# --------------------------------------------------------------------------- report


def med(rows: list[dict[str, Any]], key: str) -> float:
    """The median of ``key`` over the runs: the figure reported, robust to one disturbed run."""
    return float(statistics.median(r[key] for r in rows))


def runs(rows: list[dict[str, Any]], key: str) -> str:
    """The runs' ``key`` values, printed beside the median so that spread stays visible."""
    return ", ".join(f"{r[key]:.3f}" for r in rows)


def print_profile(prof: cProfile.Profile, what: str, lines: int = 14) -> None:
    """The top ``lines`` functions by own time, without pstats' boilerplate lines."""
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(lines)
    rows = [line for line in out.getvalue().splitlines() if line.strip()]
    print(f"--- cProfile: {what}, by own time ({rows[0].strip()})")
    for line in rows[1:]:
        if "Ordered by" not in line and "List reduced" not in line:
            print(line)
