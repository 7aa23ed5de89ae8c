"""IPMR driver: 10,000 static (S,G) routes over 32 VIFs, and a burst of 10,000 NOCACHE upcalls.

Runs as root. One lab for the whole run (namespaces ``eiab<hex>r``, ``...s``, ``...p``): the
router has 32 interfaces that can be VIFs, ``in0`` (a veth to the source namespace, which
holds 10.1.0.2 and 10.1.1.1-100) and ``out1``..``out31`` (veths into the peer namespace),
all up, rp_filter off, net.ipv4.igmp_max_memberships raised to 64 (see below). Every VIF and
MFC entry belongs to the socket that ran MRT_INIT and goes with it, so each measurement
starts from an empty table (checked) without a fresh namespace. Before measuring, and after
removing the lab, the run waits until RTNL answers promptly (``bench.common.Lab.settle``), so
no namespace tear-down falls into a measurement or into the next benchmark.

Measured, median of 3 runs each:

- ``mfc_s``: ``IpmrDriver(settings)`` + ``driver.start()`` with edge = the 32 interfaces and
  10,000 static (S,G) routes (S 10.10.x.y, G 239.1.x.y, iif in0, 3 oifs among out1..31):
  the 32 VIFs and every route. ``mfc_per_s`` = 10,000 / mfc_s. ``reconcile_s``: the route
  part alone (the reconcile call inside start(), timed by wrapping it); ``start_empty_s``:
  the same start() without routes. The kernel's count is checked (/proc ip_mr_cache).
- ``add_mfc_s``: ``MrtSocket.add_mfc`` alone for the same 10,000 routes (32 VIFs added
  first), and ``setsockopt_s``: ``MRT_ADD_MFC`` with the structs packed beforehand (the
  kernel floor for one syscall per route).
- ``smcroute_s``: smcrouted 2.5.6 with the same routes in its config (32 phyint lines,
  10,000 mroute lines), process start until every route is in the kernel (its PID file);
  ``smcroute_mfc_per_s`` = 10,000 / smcroute_s. ``ratio`` = mfc_per_s / smcroute_mfc_per_s.
- ``upcalls_per_s``: a driver with the 32 VIFs and no routes, its MRT socket's receive
  buffer raised to UPCALL_RCVBUF; a sender process in the source namespace sends one UDP
  packet (TTL 8) to each of 10,000 (S,G) flows, 100 sources x 100 groups, as fast as it can,
  while this process, inside the router namespace, calls ``driver.handle`` whenever the
  socket is readable. Flows resolved / (last route installed - first packet sent).
  ``upcalls_1x10000_per_s``: the same with 1 source x 10,000 groups.

Measured once: the kernel's queue (a socket that never reads: how many upcalls and
unresolved entries it keeps, with the default and the large receive buffer, and how long
resolving all of them then takes with nothing else going on), both bursts with the
default receive buffer (upcalls lost), a minimal resolver (recv, unpack, pack, setsockopt;
no driver) against the 100 x 100 burst (it keeps up with the sender, so it shows the
sender's pace), and what start() says with the default igmp_max_memberships (20: the
driver's socket joins 224.0.0.22 once per edge interface). About 17 s.
``--profile`` adds cProfiles of the 10,000-route start() and of both bursts. Last line: JSON.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PREFIX, Lab, inside, med, print_profile, runs, setup_run, sh
from ipmr import structs
from ipmr.driver import IpmrDriver, IpmrSettings, parse_static_route
from ipmr.mfc import StaticRoute
from ipmr.mrt import MrtSocket
from tests.netns import netlab
from tests.netns.smcroute import Smcroute, smcroute_available

RUNS = 3
ROUTES = 10_000
OUTS = 31  # out1..out31, plus in0: 32 VIFs (MAXVIFS)
IFACES = ("in0", *(f"out{n}" for n in range(1, OUTS + 1)))
SOURCES, GROUPS = 100, 100  # the burst: SOURCES x GROUPS flows, or 1 x FLOWS
FLOWS = SOURCES * GROUPS
SHAPES = {"100x100": f"{SOURCES} sources x {GROUPS} groups", "1x10000": f"1 source x {FLOWS:,} groups"}
SO_RCVBUFFORCE = 33  # not in Python's socket module; with CAP_NET_ADMIN it may exceed rmem_max
UPCALL_RCVBUF = 16 << 20  # the kernel doubles it: 32 MiB; one queued upcall takes 832 bytes
IGMP_MAX = 64  # net.ipv4.igmp_max_memberships in the router namespace (default 20)
BURST_IDLE_S = 0.5  # a burst ends when the sender is done and no upcall came for this long
BURST_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------- lab


class RouterLab(Lab):
    """Router, source and peer namespaces for the whole run."""

    @property
    def rtr(self) -> str:
        return self.name("r")

    @property
    def src(self) -> str:
        return self.name("s")

    @property
    def peer(self) -> str:
        return self.name("p")

    def build(self) -> None:
        for suffix in "rsp":
            self.add(suffix)
        rtr = ["link set lo up", f"link add in0 type veth peer name src0 netns {self.src}"]
        rtr += [f"link add out{n} type veth peer name o{n} netns {self.peer}" for n in range(1, OUTS + 1)]
        rtr += [f"link set {name} up" for name in IFACES]
        rtr += ["addr add 10.1.0.1/16 dev in0"]
        rtr += [f"addr add 10.2.{n}.1/24 dev out{n}" for n in range(1, OUTS + 1)]
        src = ["link set lo up", "link set src0 up", "addr add 10.1.0.2/16 dev src0"]
        src += [f"addr add {source_address(n)}/16 dev src0" for n in range(SOURCES)]
        peer = ["link set lo up", *(f"link set o{n} up" for n in range(1, OUTS + 1))]
        for name, lines in ((self.rtr, rtr), (self.src, src), (self.peer, peer)):
            sh(["ip", "-n", name, "-batch", "-"], "\n".join(lines) + "\n")
        for name in (self.rtr, self.src, self.peer):
            sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
            sh(["ip", "netns", "exec", name, "sysctl", "-qw", *sysctls])
        sh(["ip", "netns", "exec", self.rtr, "sysctl", "-qw", "net.ipv4.conf.in0.rp_filter=0"])

    def raise_igmp_memberships(self) -> None:
        """A socket joins at most net.ipv4.igmp_max_memberships groups (20); the driver joins
        224.0.0.22 on every edge interface with its MRT socket, so 32 edges need more."""
        sh(["ip", "netns", "exec", self.rtr, "sysctl", "-qw", f"net.ipv4.igmp_max_memberships={IGMP_MAX}"])


def mr_cache() -> tuple[int, int]:
    """(resolved, unresolved) MFC entries of the default table in the calling thread's namespace."""
    with open("/proc/thread-self/net/ip_mr_cache") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    unresolved = sum(1 for row in rows if row[2] == "-1")  # an unresolved entry has no iif
    return len(rows) - unresolved, unresolved


def rx_packets(netns: str, ifname: str) -> int:
    out = json.loads(sh(["ip", "-n", netns, "-j", "-s", "link", "show", ifname]).stdout)
    return int(out[0]["stats64"]["rx"]["packets"])


def raw_drops(sock: socket.socket) -> int:
    """The ``drops`` column of /proc/net/raw for ``sock``: upcalls lost to a full receive buffer."""
    inode = os.fstat(sock.fileno()).st_ino
    with open("/proc/thread-self/net/raw") as f:
        for line in f.read().splitlines()[1:]:
            cols = line.split()
            if int(cols[9]) == inode:
                return int(cols[-1])
    return -1


def vif_socket() -> MrtSocket:
    """An MRT socket on the default table with the 32 VIFs (in the caller's namespace)."""
    sock = MrtSocket(4)
    for vif, name in enumerate(IFACES):
        sock.add_vif(vif, socket.if_nametoindex(name), name)
    return sock


# --------------------------------------------------------------------------- inputs


def source_address(n: int) -> str:
    return f"10.1.1.{1 + n}"


def static_routes() -> list[StaticRoute]:
    """10,000 (S,G): S 10.10.x.y, G 239.1.x.y, iif in0, three oifs spread over out1..out31."""
    out = []
    for i in range(ROUTES):
        oifs = [f"out{1 + (i + k) % OUTS}" for k in (0, 10, 20)]
        x, y = divmod(i, 250)
        out.append(parse_static_route(f"10.10.{x}.{1 + y}", f"239.1.{x}.{1 + y}", "in0", oifs))
    return out


def smcroute_config(routes: list[StaticRoute]) -> str:
    lines = [f"phyint {name} enable" for name in IFACES]
    lines += [f"mroute from {r.iif} source {r.source} group {r.group} to {' '.join(r.oifs)}" for r in routes]
    return "\n".join(lines) + "\n"


def flows(shape: str) -> list[tuple[str, str]]:
    """(source, group) of a burst, in sending order: each group's sources one after another."""
    if shape == "100x100":
        return [(source_address(s), f"239.3.0.{1 + g}") for g in range(GROUPS) for s in range(SOURCES)]
    return [("10.1.0.2", f"239.2.{i // 250}.{1 + i % 250}") for i in range(FLOWS)]


# The sender: reads its flows (one JSON line), opens one socket per source, says "ready",
# waits for a line, sends one packet per flow and prints the CLOCK_MONOTONIC times of the
# first and the last send (comparable with time.monotonic() in this process).
SENDER = r"""
import json, socket, sys, time
flows = json.loads(sys.stdin.readline())
socks = {}
for source, _group in flows:
    if source not in socks:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        socks[source] = s
plan = [(socks[source].sendto, (group, 5000)) for source, group in flows]
print("ready", flush=True)
sys.stdin.readline()
errors = 0
t0 = time.monotonic()
for send, dst in plan:
    try:
        send(b"x", dst)
    except OSError:
        errors += 1
t1 = time.monotonic()
print(json.dumps({"t0": t0, "t1": t1, "sent": len(plan) - errors, "errors": errors}), flush=True)
"""


class Sender:
    """The sender process in the source namespace, ready to go once constructed."""

    def __init__(self, lab: RouterLab, shape: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.src, sys.executable, "-c", SENDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.report: dict[str, Any] | None = None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(flows(shape)) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the sender did not start: rc={self.proc.returncode}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def done(self) -> dict[str, Any] | None:
        """Its report once it has finished sending, else None."""
        if self.report is None and self.proc.poll() is not None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the sender failed: rc={self.proc.returncode}")
            self.report = json.loads(line)
        return self.report

    def wait(self, timeout: float = BURST_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (report := self.done()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the sender did not finish")
            time.sleep(0.01)
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def sending(lab: RouterLab, shape: str) -> Iterator[Sender]:
    sender = Sender(lab, shape)
    try:
        yield sender
    finally:
        sender.close()


# --------------------------------------------------------------------------- static routes


def timed_start(driver: IpmrDriver) -> tuple[float, float | None, list[str]]:
    """(seconds for start(), seconds of its reconcile call(s) or None if none, messages)."""
    inner = driver.reconcile
    spent: list[float] = []

    def reconcile(*args: Any, **kw: Any) -> list[str]:
        t = time.perf_counter()
        try:
            return inner(*args, **kw)
        finally:
            spent.append(time.perf_counter() - t)

    driver.reconcile = reconcile  # type: ignore[method-assign]
    gc.collect()
    t0 = time.perf_counter()
    messages = driver.start()
    elapsed = time.perf_counter() - t0
    driver.reconcile = inner  # type: ignore[method-assign]
    return elapsed, (sum(spent) if spent else None), messages


def run_driver_routes(lab: RouterLab, routes: list[StaticRoute]) -> dict[str, Any]:
    with inside(lab.rtr):
        if mr_cache() != (0, 0):
            raise RuntimeError(f"router MFC not empty before the run: {mr_cache()}")
        empty = IpmrDriver(IpmrSettings(edge=IFACES))
        try:
            start_empty_s, _r, messages = timed_start(empty)
            if messages:
                raise RuntimeError(f"start() without routes: {messages}")
        finally:
            empty.close()
        settings = IpmrSettings(edge=IFACES, routes=tuple(routes))
        gc.collect()
        t0 = time.perf_counter()
        driver = IpmrDriver(settings)
        init_s = time.perf_counter() - t0
        try:
            start_s, reconcile_s, messages = timed_start(driver)
            if messages:
                raise RuntimeError(f"start() with routes: {messages[:3]} ({len(messages)} lines)")
            kernel = mr_cache()
            installed = len(driver.routes(4))
        finally:
            driver.close()
    if kernel != (ROUTES, 0) or installed != ROUTES:
        raise RuntimeError(f"driver: kernel (resolved, unresolved) {kernel}, driver routes {installed}")
    return {
        "mfc_s": init_s + start_s,
        "start_s": start_s,
        # start() no longer going through reconcile(): fall back to the difference.
        "reconcile_s": reconcile_s if reconcile_s is not None else start_s - start_empty_s,
        "reconcile_wrapped": reconcile_s is not None,
        "start_empty_s": start_empty_s,
        "kernel": kernel[0],
    }


def run_raw(lab: RouterLab, routes: list[StaticRoute]) -> dict[str, Any]:
    vif = {name: n for n, name in enumerate(IFACES)}
    args = [
        (IPv4Address(r.source), IPv4Address(r.group), vif[r.iif], sorted(vif[o] for o in r.oifs))
        for r in routes
    ]
    with inside(lab.rtr):
        sock = vif_socket()
        try:
            add_mfc = sock.add_mfc
            gc.collect()
            t0 = time.perf_counter()
            for source, group, parent, oifs in args:
                add_mfc(source, group, parent, oifs)
            add_mfc_s = time.perf_counter() - t0
            kernel_add = mr_cache()
        finally:
            sock.close()
        packed = [structs.mfcctl(s, g, p, o) for s, g, p, o in args]
        sock = vif_socket()
        try:
            setsockopt = sock._sock.setsockopt
            gc.collect()
            t0 = time.perf_counter()
            for value in packed:
                setsockopt(socket.IPPROTO_IP, structs.MRT_ADD_MFC, value)
            setsockopt_s = time.perf_counter() - t0
            kernel_set = mr_cache()
        finally:
            sock.close()
    if kernel_add != (ROUTES, 0) or kernel_set != (ROUTES, 0):
        raise RuntimeError(f"raw installs: kernel {kernel_add} and {kernel_set}, expected {ROUTES}")
    return {"add_mfc_s": add_mfc_s, "setsockopt_s": setsockopt_s}


def run_smcroute(lab: RouterLab, config: str, workdir: Path, n: int) -> dict[str, Any]:
    helper_lab = netlab.Lab(workdir)  # only for the helper's list of pids to kill
    smc = Smcroute(helper_lab, lab.rtr, workdir / f"smcroute{n}", loglevel="notice")
    try:
        gc.collect()
        t0 = time.perf_counter()
        smc.start(config, timeout=60)
        elapsed = time.perf_counter() - t0
        with inside(lab.rtr):
            kernel = mr_cache()
    finally:
        smc.stop()
        helper_lab.close()
    if kernel != (ROUTES, 0):
        raise RuntimeError(f"smcroute: kernel (resolved, unresolved) {kernel}, expected {ROUTES}")
    return {"smcroute_s": elapsed}


def listen_errors(lab: RouterLab) -> list[str]:
    """What start() reports with the namespace's default igmp_max_memberships (20)."""
    quiet = logging.getLogger("evpn.ipmr")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the driver logs each as a warning; printed once below instead
    with inside(lab.rtr):
        driver = IpmrDriver(IpmrSettings(edge=IFACES))
        try:
            return driver.start()
        finally:
            driver.close()
            quiet.setLevel(level)


# --------------------------------------------------------------------------- upcalls


def burst(
    lab: RouterLab, shape: str, rcvbuf: int | None, profile: cProfile.Profile | None = None
) -> dict[str, Any]:
    """One packet per flow from the sender against a driver with the 32 VIFs and no routes."""
    with inside(lab.rtr), sending(lab, shape) as sender:
        if mr_cache() != (0, 0):
            raise RuntimeError(f"router MFC not empty before the burst: {mr_cache()}")
        driver = IpmrDriver(IpmrSettings(edge=IFACES))
        try:
            if messages := driver.start():
                raise RuntimeError(f"start(): {messages}")
            (sock,) = driver.sockets()
            raw: socket.socket = sock._sock
            if rcvbuf is not None:
                raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            before = rx_packets(lab.rtr, "in0")
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            counters = driver.counters
            busy = 0.0
            gc.collect()
            if profile is not None:
                profile.enable()
            sender.go()
            last = time.monotonic()
            deadline = last + BURST_TIMEOUT_S
            while counters["upcalls"] < FLOWS:
                if poller.poll(20):
                    seen = counters["upcalls"]
                    t = time.monotonic()
                    driver.handle(sock)  # reads until EAGAIN; each upcall's route is in on return
                    end = time.monotonic()
                    busy += end - t
                    if counters["upcalls"] != seen:
                        last = end
                    continue
                now = time.monotonic()
                if (sender.done() is not None and now - last > BURST_IDLE_S) or now > deadline:
                    break
            if profile is not None:
                profile.disable()
            report = sender.wait()
            kernel = mr_cache()
            drops = raw_drops(raw)
            installed = len(driver.routes(4))
            upcalls = counters["upcalls"]
            effective_rcvbuf = raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            driver.close()
    return {
        "burst_s": last - report["t0"],
        "send_s": report["t1"] - report["t0"],
        "handle_busy_s": busy,
        "sent": report["sent"],
        "arrived": rx_packets(lab.rtr, "in0") - before,
        "upcalls": upcalls,
        "resolved": installed,
        "kernel_resolved": kernel[0],
        "kernel_unresolved": kernel[1],
        "socket_drops": drops,
        "rcvbuf": effective_rcvbuf,
        "upcalls_per_s": installed / (last - report["t0"]),
    }


_MFCCTL = struct.Struct("=4s4sH32s2xIIIi")
_IGMPMSG = struct.Struct("=8xBBBB4s4s")


def _mfcctl_for(upcall: bytes) -> bytes:
    """MRT_ADD_MFC for a NOCACHE upcall's (S,G) on its VIF, without outputs."""
    _kind, _mbz, vif, _hi, src, dst = _IGMPMSG.unpack_from(upcall)
    return _MFCCTL.pack(src, dst, vif, bytes(32), 0, 0, 0, 0)


def minimal_resolver(lab: RouterLab, shape: str) -> dict[str, Any]:
    """The same burst against the least a Python resolver does: recv, unpack, pack, setsockopt."""
    mfcctl, igmpmsg = _MFCCTL, _IGMPMSG
    no_oifs = bytes(32)
    with inside(lab.rtr), sending(lab, shape) as sender:
        sock = vif_socket()
        try:
            raw: socket.socket = sock._sock
            raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UPCALL_RCVBUF)
            raw.setblocking(False)
            poller = select.poll()
            poller.register(raw.fileno(), select.POLLIN)
            done = 0
            gc.collect()
            sender.go()
            last = time.monotonic()
            deadline = last + BURST_TIMEOUT_S
            while done < FLOWS:
                if not poller.poll(20):
                    now = time.monotonic()
                    if (sender.done() is not None and now - last > BURST_IDLE_S) or now > deadline:
                        break
                    continue
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = raw.recv(2048)
                        kind, mbz, vif, _hi, src, dst = igmpmsg.unpack_from(data)
                        if mbz == 0 and kind == structs.IGMPMSG_NOCACHE:
                            value = mfcctl.pack(src, dst, vif, no_oifs, 0, 0, 0, 0)
                            raw.setsockopt(socket.IPPROTO_IP, structs.MRT_ADD_MFC, value)
                            done += 1
                last = time.monotonic()
            report = sender.wait()
            kernel = mr_cache()
        finally:
            sock.close()
    return {
        "resolved": done,
        "kernel_resolved": kernel[0],
        "send_s": report["t1"] - report["t0"],
        "burst_s": last - report["t0"],
        "upcalls_per_s": done / (last - report["t0"]),
    }


def kernel_queue(lab: RouterLab, rcvbuf: int | None) -> dict[str, Any]:
    """The 1 x 10,000 burst at an MRT socket that never reads: what does the kernel keep?"""
    with inside(lab.rtr), sending(lab, "1x10000") as sender:
        sock = vif_socket()
        try:
            raw: socket.socket = sock._sock
            if rcvbuf is not None:
                raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            sender.go()
            report = sender.wait()
            kernel = mr_cache()
            drops = raw_drops(raw)
            upcalls = []
            raw.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    upcalls.append(raw.recv(2048))
            # Then resolve them, oldest first, with nothing else going on: MRT_ADD_MFC looks for
            # the unresolved entry in a list (newest first), so this is the kernel's cost of a
            # long unresolved queue.
            values = [_mfcctl_for(data) for data in upcalls]
            gc.collect()
            t0 = time.perf_counter()
            for value in values:
                raw.setsockopt(socket.IPPROTO_IP, structs.MRT_ADD_MFC, value)
            resolve_s = time.perf_counter() - t0
            effective = raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            after = mr_cache()
        finally:
            sock.close()
    return {
        "rcvbuf": effective,
        "send_s": report["t1"] - report["t0"],
        "queued_upcalls": len(upcalls),
        "unresolved": kernel[1],
        "socket_drops": drops,
        "resolve_s": resolve_s,
        "resolved": after[0],
    }


# --------------------------------------------------------------------------- profiles


def profile_all(lab: RouterLab, routes: list[StaticRoute]) -> None:
    with inside(lab.rtr):
        driver = IpmrDriver(IpmrSettings(edge=IFACES, routes=tuple(routes)))
        prof = cProfile.Profile()
        try:
            prof.enable()
            driver.start()
            prof.disable()
        finally:
            driver.close()
    print_profile(prof, f"IpmrDriver.start() with {ROUTES:,} static routes")
    for shape, what in SHAPES.items():
        prof = cProfile.Profile()
        burst(lab, shape, UPCALL_RCVBUF, prof)
        print_profile(prof, f"upcall burst, {what} (the driver.handle loop)")


# --------------------------------------------------------------------------- main


def plot(result: dict[str, Any], out: Path) -> None:
    """Routes per second, driver vs smcroute with the kernel floors; upcalls per second per burst
    shape next to a minimal resolver (the sender's pace)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    routes, flows = result["routes"], result["flows"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.8), gridspec_kw={"height_ratios": [4, 3]})
    panels = (
        (
            top,
            [
                (
                    "driver: IpmrDriver() + start()",
                    result["mfc_per_s"],
                    "tab:blue",
                    f" {result['mfc_per_s']:,}/s ({result['mfc_s']:.3f} s) = {result['ratio']:.1f}x smcroute",
                ),
                (
                    "smcrouted 2.5.6: start -> ready",
                    result["smcroute_mfc_per_s"],
                    "tab:orange",
                    f" {result['smcroute_mfc_per_s']:,}/s ({result['smcroute_s']:.3f} s)",
                ),
                (
                    "floor: MrtSocket.add_mfc alone",
                    result["add_mfc_per_s"],
                    "silver",
                    f" {result['add_mfc_per_s']:,}/s",
                ),
                (
                    "floor: setsockopt(MRT_ADD_MFC),\nstructs packed beforehand",
                    result["setsockopt_per_s"],
                    "tab:gray",
                    f" {result['setsockopt_per_s']:,}/s",
                ),
            ],
            f"static (S,G) routes installed per second ({routes:,} routes, {len(IFACES)} VIFs,"
            " 3 outputs each)",
            f"{routes:,} static routes: driver vs smcroute, and the floors measured in the same run",
        ),
        (
            bottom,
            [
                (
                    "driver.handle: 100 sources x 100 groups",
                    result["upcalls_per_s"],
                    "tab:blue",
                    f" {result['upcalls_per_s']:,}/s ({result['burst_s']:.3f} s);"
                    f" {result['upcalls_lost_default_rcvbuf']:,} lost with the default SO_RCVBUF",
                ),
                (
                    f"driver.handle: 1 source x {flows:,} groups",
                    result["upcalls_1x10000_per_s"],
                    "tab:cyan",
                    f" {result['upcalls_1x10000_per_s']:,}/s ({result['burst_1x10000_s']:.3f} s);"
                    f" {result['upcalls_lost_default_rcvbuf_1x10000']:,} lost with the default SO_RCVBUF",
                ),
                (
                    "minimal resolver, 100 x 100\n(keeps up with the sender)",
                    result["minimal_upcalls_per_s"],
                    "tab:gray",
                    f" {result['minimal_upcalls_per_s']:,}/s: the sender's pace",
                ),
            ],
            f"NOCACHE upcalls resolved per second ({flows:,} new flows, first packet -> last route)",
            f"upcall bursts: one packet to each of {flows:,} new (S,G) flows, sent as fast as a sender can",
        ),
    )
    for ax, rows, xlabel, title in panels:
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color=[r[2] for r in rows])
        for y, (_label, value, _color, note) in enumerate(rows):
            ax.annotate(note, (value, y), va="center", fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, max(r[1] for r in rows) * 1.45)
        ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:,.0f}")
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"IPMR driver vs smcroute (median of {result['runs']} runs; higher is better)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    args = setup_run(__doc__, "also print cProfiles of start and bursts")
    if not smcroute_available():
        sys.exit("smcroute is not installed (make setup)")

    wall = time.perf_counter()
    routes = static_routes()
    config = smcroute_config(routes)
    lab = RouterLab()
    drv: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    smc: list[dict[str, Any]] = []
    up: dict[str, list[dict[str, Any]]] = {shape: [] for shape in SHAPES}
    once: dict[str, Any] = {}
    try:
        lab.build()
        once["listen_errors"] = listen_errors(lab)
        lab.raise_igmp_memberships()
        once["settle_s"] = lab.settle()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmpdir:
            for n in range(RUNS):
                drv.append(run_driver_routes(lab, routes))
                raw.append(run_raw(lab, routes))
                smc.append(run_smcroute(lab, config, Path(tmpdir), n))
                for shape, rows in up.items():
                    rows.append(burst(lab, shape, UPCALL_RCVBUF))
        once["queue_default"] = kernel_queue(lab, None)
        once["queue_large"] = kernel_queue(lab, UPCALL_RCVBUF)
        once["default_rcvbuf"] = {shape: burst(lab, shape, None) for shape in SHAPES}
        once["minimal"] = minimal_resolver(lab, "100x100")
        if args.profile:
            profile_all(lab, routes)
    finally:
        once["settle_after_s"] = lab.close()

    for shape, rows in up.items():
        for r in rows:
            if r["resolved"] != FLOWS or r["kernel_resolved"] != FLOWS or r["upcalls"] != FLOWS:
                raise RuntimeError(f"burst {shape} with a large receive buffer: {r}")

    res: dict[str, float] = {
        "mfc_s": med(drv, "mfc_s"),
        "reconcile_s": med(drv, "reconcile_s"),
        "start_empty_s": med(drv, "start_empty_s"),
        "add_mfc_s": med(raw, "add_mfc_s"),
        "setsockopt_s": med(raw, "setsockopt_s"),
        "smcroute_s": med(smc, "smcroute_s"),
        "burst_s": med(up["100x100"], "burst_s"),
        "burst_1x10000_s": med(up["1x10000"], "burst_s"),
    }
    res["mfc_per_s"] = ROUTES / res["mfc_s"]
    res["reconcile_per_s"] = ROUTES / res["reconcile_s"]
    res["add_mfc_per_s"] = ROUTES / res["add_mfc_s"]
    res["setsockopt_per_s"] = ROUTES / res["setsockopt_s"]
    res["smcroute_mfc_per_s"] = ROUTES / res["smcroute_s"]
    res["ratio"] = res["mfc_per_s"] / res["smcroute_mfc_per_s"]
    res["upcalls_per_s"] = med(up["100x100"], "upcalls_per_s")
    res["upcalls_1x10000_per_s"] = med(up["1x10000"], "upcalls_per_s")
    res["minimal_upcalls_per_s"] = once["minimal"]["upcalls_per_s"]

    print(
        f"kernel {os.uname().release}, {len(IFACES)} VIFs ({IFACES[0]}, {IFACES[1]}..{IFACES[-1]}),"
        f" median of {RUNS} runs; waited {once['settle_s']:.1f} s for RTNL to be quiet first"
    )
    print(
        f"{ROUTES:,} static (S,G) routes, iif in0, 3 oifs each; the kernel held"
        f" {', '.join(str(r['kernel']) for r in drv)} resolved entries after start()"
    )
    wrapped = (
        "the reconcile() call inside start()" if drv[-1]["reconcile_wrapped"] else "start() - start() empty"
    )
    for label, key, rows in (
        (f"driver: IpmrDriver() + start(), {ROUTES:,} routes", "mfc_s", drv),
        (f"  routes only ({wrapped})", "reconcile_s", drv),
        ("MrtSocket.add_mfc alone", "add_mfc_s", raw),
        ("setsockopt(MRT_ADD_MFC), structs prepacked", "setsockopt_s", raw),
        ("smcrouted start -> ready (PID file)", "smcroute_s", smc),
    ):
        rate = ROUTES / res[key]
        print(f"{label:<62} {res[key]:6.3f} s {rate:9,.0f} routes/s   (runs: {runs(rows, key)})")
    print(f"{'  start() with the 32 VIFs and no routes':<62} {res['start_empty_s']:6.3f} s")
    print(f"ratio mfc_per_s / smcroute_mfc_per_s: {res['ratio']:.1f}")
    for shape, what in SHAPES.items():
        rows, last = up[shape], up[shape][-1]
        print(
            f"upcall burst, {what}: {med(rows, 'upcalls_per_s'):,.0f} upcalls/s; first packet -> last route"
            f" {med(rows, 'burst_s'):.3f} s (runs: {runs(rows, 'burst_s')})"
        )
        print(
            f"  sender {med(rows, 'send_s'):.3f} s, driver inside handle()"
            f" {med(rows, 'handle_busy_s'):.3f} s; last run: sent {last['sent']}, in0 received"
            f" {last['arrived']}, upcalls read {last['upcalls']}, socket drops {last['socket_drops']},"
            f" routes {last['resolved']} (kernel {last['kernel_resolved']} resolved,"
            f" {last['kernel_unresolved']} unresolved), SO_RCVBUF {last['rcvbuf']:,}"
        )
    for shape, b in once["default_rcvbuf"].items():
        print(
            f"  same with the default SO_RCVBUF ({b['rcvbuf']:,}), {SHAPES[shape]}: {b['upcalls']:,} of"
            f" {b['sent']:,} upcalls read, {b['socket_drops']:,} dropped, {b['resolved']:,} routes"
        )
    m = once["minimal"]
    print(
        f"minimal resolver (recv, unpack, pack, setsockopt), {SHAPES['100x100']}: {m['upcalls_per_s']:,.0f}"
        f" upcalls/s, {m['resolved']:,} routes in {m['burst_s']:.3f} s (sender {m['send_s']:.3f} s)"
    )
    for key in ("queue_default", "queue_large"):
        q = once[key]
        print(
            f"kernel queue, nobody reading, SO_RCVBUF {q['rcvbuf']:,}: {q['queued_upcalls']:,} upcalls"
            f" queued, {q['unresolved']:,} unresolved entries, {q['socket_drops']:,} dropped;"
            f" sender {q['send_s']:.3f} s; then resolving them alone {q['resolve_s']:.3f} s"
            f" ({q['resolve_s'] / max(1, q['queued_upcalls']) * 1e6:.1f} us each, {q['resolved']:,} routes)"
        )
    errs = once["listen_errors"]
    print(
        f"start() with the default net.ipv4.igmp_max_memberships (20): {len(errs)} error lines"
        + (f", e.g. {errs[0]!r}; the figures above use {IGMP_MAX}" if errs else "")
    )
    print(
        f"whole run: {time.perf_counter() - wall:.1f} s, of which waiting for namespace tear-down"
        f" {once['settle_after_s']:.1f} s after"
    )
    out: dict[str, Any] = {
        k: (round(v) if k.endswith("per_s") else round(v, 4 if k.endswith("_s") else 2))
        for k, v in res.items()
    }
    out.update(
        routes=ROUTES,
        flows=FLOWS,
        runs=RUNS,
        upcalls_shape=SHAPES["100x100"],
        upcalls_lost_default_rcvbuf=once["default_rcvbuf"]["100x100"]["socket_drops"],
        upcalls_lost_default_rcvbuf_1x10000=once["default_rcvbuf"]["1x10000"]["socket_drops"],
        kernel_queue_default_rcvbuf=once["queue_default"]["queued_upcalls"],
        kernel_queue_large_rcvbuf=once["queue_large"]["queued_upcalls"],
        listen_errors_default_igmp_max=len(errs),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
