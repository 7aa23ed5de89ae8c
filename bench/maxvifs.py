"""Past MAXVIFS: one agent leaf feeds a routed multicast source to 100 remote VTEPs with 2 VIFs.

A Linux multicast router (the seed's IPMR) gives each table 32 VIFs (MAXVIFS), so a hub that
needs one VIF per branch (a tunnel interface per remote site) serves at most 31 branches (the
run measures that too: ``vif_per_vtep_max_vteps``, VIFs tried on the spine's VTEP links). The
agent's hub routes the stream once, from the edge port's VIF to the SVI's VIF, and the VXLAN
head-end replication fans it out to every VTEP that joined, however many there are. This
benchmark proves that with packets and measures what it costs.

Runs as root (``.venv/bin/python bench/maxvifs.py``; about 10 s). One lab, namespaces
``eiab<hex>...`` (bench.common.Lab), removed in a ``finally`` together with every process:

- ``l`` (the leaf): the real agent, ``evpn-agent run --config leaf.yaml``, with ``ipmr``
  enabled (edge ``e1``, SVI of VNI 100), ``br100``/``vxlan100`` (no host port), the local
  VTEP 10.255.0.1 on ``lo``, ``eth0`` 10.0.0.1/24 toward the spine (its default route);
- ``s`` (the source): 10.50.0.2/24 behind the leaf's routed edge port ``e1`` (10.50.0.1/24),
  a sender process sending numbered UDP datagrams to 239.1.1.1 with TTL 8;
- ``u`` (the underlay): a routing spine, 10.0.0.254/24 on its veth to the leaf and
  10.1.N.1/24 on a veth to each VTEP, and the route injector (``python -m bgp.injector
  serve``: one ExaBGP, iBGP to the leaf);
- ``v1``..``v101``: one namespace per remote VTEP (10.1.N.2/24), each with a UDP socket on
  port 4789 that this process reads (one thread, one selector for all 101 sockets), counting
  the VXLAN datagrams of VNI 100 whose inner packet is the source's to 239.1.1.1.

The injector announces, on behalf of all VTEPs (originator = each VTEP's address), an IMET per
VTEP (PMSI ingress replication, label 100, Multicast Flags "IGMP proxy": the VTEP takes part in
RFC 9251, so it gets only what it joins) and, for v1..v100, an SMET (*, 239.1.1.1): the
selective path. v101 announces only its IMET: it is in the flood list but did not join, and
must receive nothing of the stream (the negative).

Measured:

- ``baseline``: before any route, 100 packets: IPMR resolves (S,G) with no outputs; no VTEP may
  receive anything. The sender's per-packet ``sendto`` time here is the reference cost;
- ``flood_s`` / ``mdb_s``: from the first announce command until the leaf's kernel holds all
  101 flood entries (FDB of vxlan100) / the MDB entry (*, 239.1.1.1) with all 100 joined VTEPs
  (rtnetlink dumps polled every few ms, so the resolution is a few ms). Median of ROUNDS (3)
  announcements, with all routes withdrawn in between (``withdraw_*_s``: until none is left);
  ``mdb_after_ack_ms``: MDB complete minus the injector's ack of the last command, i.e. how far
  the agent trails ExaBGP;
- the stream: 200 packets at 100/s; per VTEP the distinct packets received. ``served`` = VTEPs
  with at least 95%; ``vifs_used`` read back from ``evpnctl show vifs --json`` and checked
  against ``/proc/net/ip_mr_vif`` in the leaf; ``vteps_per_vif`` = served / vifs_used;
- cost: the sender's median ``sendto`` time per packet (the kernel does the whole emulated
  path in that call's softirq: IPMR, bridge, 100 VXLAN encapsulations, the underlay and the
  deliveries; work the softirq budget defers to ksoftirqd is not in it, so it is a floor),
  its difference to the baseline per copy, and the agent's own CPU time during the stream
  (it only handles the one upcall: the kernel forwards);
- the negative's control: after the stream the leaf sends link-local datagrams (224.0.0.251) on
  br100, which go along the whole flood list: v101 must get them, so its zero is not a broken
  receiver.

Human-readable figures, then one JSON object on the last line. ``plot(result, out)`` draws the
packets received per VTEP as one PNG (``--plot PATH`` does it after the run).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
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
from typing import Any, TypeVar

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.control import ControlError, ask
from bench.common import PREFIX, Lab, inside, med, runs, sh
from ipmr import structs
from ipmr.mrt import MrtSocket
from ipmr.reader import read_vifs
from replication.kernel import RouteKernel

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: evpn-agent and evpnctl live next to python
ASN = 65000
VNI = 100
GROUP = "239.1.1.1"
CONTROL_GROUP = "224.0.0.251"  # link-local: the VXLAN device sends it along the whole flood list
CONTROL_PACKETS = 5
JOINED = 100  # v1..v100 join; v101 does not
VTEPS = JOINED + 1
SOURCE, EDGE_GW = "10.50.0.2", "10.50.0.1"
LEAF_UL, INJECTOR = "10.0.0.1", "10.0.0.254"
LEAF_VTEP = "10.255.0.1"
SVI = "192.168.100.1"
VXLAN_PORT = 4789
PACKETS, RATE = 200, 100.0  # the stream: 2 s
BASELINE_PACKETS = 100
SERVED_SHARE = 0.95
ROUNDS = 3  # announcements timed (with a timed withdrawal between two)
MAXVIFS = 32
VIFCTL = struct.Struct("=HBBIi4s")  # struct vifctl (DESIGN.md §6)
POLL_S = 0.005  # the kernel-state poll interval (the resolution of flood_s / mdb_s)
TIMEOUT_S = 60.0
QUIET_S = 0.5  # a stream is over once the sender is done and no datagram came for this long

PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) ")  # the agent's log format: time LEVEL name: text

T = TypeVar("T")


def vtep(n: int) -> str:
    """The VTEP address of namespace ``v<n>`` (n = 1..VTEPS), on its link to the spine."""
    return f"10.1.{n}.2"


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = POLL_S) -> T:
    """``check()``'s first truthy value; RuntimeError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # the poll's pace, bounded by the deadline


# --------------------------------------------------------------------------- lab


class HubLab(Lab):
    """The leaf, the source, the underlay and the VTEP namespaces."""

    @property
    def leaf(self) -> str:
        return self.name("l")

    @property
    def src(self) -> str:
        return self.name("s")

    @property
    def ul(self) -> str:
        return self.name("u")

    def vtep_ns(self, n: int) -> str:
        return self.name(f"v{n}")

    def build(self) -> None:
        """A routed underlay: the spine ``u`` has a point-to-point link to the leaf and to each
        VTEP. (A flat L2 underlay, one bridge for all, loses the run: the leaf's first packet
        sends 100 ARP requests at once, the bridge copies each to 101 ports, and the 10,000
        frames overflow the CPU's backlog (netdev_max_backlog 1000), so most VTEPs stay
        unresolved.) Here the leaf resolves only the spine, and each VTEP is ARPed on its own
        link."""
        for suffix in ("l", "s", "u", *(f"v{n}" for n in range(1, VTEPS + 1))):
            self.add(suffix)
        ul = ["link set lo up", f"link add vl type veth peer name eth0 netns {self.leaf}", "link set vl up"]
        ul += [f"addr add {INJECTOR}/24 dev vl", f"route add {LEAF_VTEP}/32 via {LEAF_UL}"]
        for n in range(1, VTEPS + 1):
            ul += [f"link add v{n} type veth peer name eth0 netns {self.vtep_ns(n)}", f"link set v{n} up"]
            ul += [f"addr add 10.1.{n}.1/24 dev v{n}"]
        leaf = [
            "link set lo up",
            f"addr add {LEAF_VTEP}/32 dev lo",
            "link set eth0 up",
            f"addr add {LEAF_UL}/24 dev eth0",
            f"route add default via {INJECTOR}",
            f"link add e1 type veth peer name eth0 netns {self.src}",
            "link set e1 up",
            f"addr add {EDGE_GW}/24 dev e1",
            f"link add vxlan{VNI} type vxlan id {VNI} local {LEAF_VTEP} dstport {VXLAN_PORT} nolearning",
            f"link add br{VNI} type bridge mcast_snooping 1",
            f"link set vxlan{VNI} master br{VNI}",
            f"link set vxlan{VNI} up",
            f"link set br{VNI} up",
            f"addr add {SVI}/24 dev br{VNI}",
        ]
        src = ["link set lo up", "link set eth0 up", f"addr add {SOURCE}/24 dev eth0"]
        src += [f"route add default via {EDGE_GW}"]
        for name, lines in ((self.ul, ul), (self.leaf, leaf), (self.src, src)):
            sh(["ip", "-n", name, "-batch", "-"], "\n".join(lines) + "\n")
        for n in range(1, VTEPS + 1):
            # The default route keeps rp_filter (strict or loose, as inherited) from dropping
            # VXLAN from 10.255.0.1.
            lines = ["link set lo up", "link set eth0 up", f"addr add {vtep(n)}/24 dev eth0"]
            lines += [f"route add default via 10.1.{n}.1"]
            sh(["ip", "-n", self.vtep_ns(n), "-batch", "-"], "\n".join(lines) + "\n")
        sysctls = [f"net.ipv4.conf.{i}.rp_filter=0" for i in ("all", "default", "e1", "eth0")]
        sh(["ip", "netns", "exec", self.leaf, "sysctl", "-qw", *sysctls])
        sysctls = ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.vl.rp_filter=0"]
        sh(["ip", "netns", "exec", self.ul, "sysctl", "-qw", *sysctls])


# --------------------------------------------------------------------------- receivers


@dataclass
class Tally:
    """What one VTEP's socket on port 4789 got."""

    stream: set[int] = field(default_factory=set)  # distinct numbers of the measured stream
    baseline: set[int] = field(default_factory=set)  # ... of the baseline stream (before routes)
    control: set[int] = field(default_factory=set)  # ... of the leaf's link-local control datagrams
    other: int = 0  # any other VXLAN datagram (IGMP queries, broadcast: the flood list)


def parse_vxlan_udp(data: bytes) -> tuple[bytes, bytes, bytes, int] | None:
    """(inner source, inner destination, tag, number) of a VXLAN datagram of VNI carrying an
    IPv4 UDP datagram with a ``TAG-NNNNNNN`` payload; None for anything else."""
    if len(data) < 8 + 14 + 20 + 8 or int.from_bytes(data[4:7], "big") != VNI or data[20:22] != b"\x08\x00":
        return None
    ip = 22
    ihl = (data[ip] & 0x0F) * 4
    if data[ip + 9] != 17:
        return None
    tag, _, number = data[ip + ihl + 8 :].partition(b"-")
    if not number.isdigit():
        return None
    return data[ip + 12 : ip + 16], data[ip + 16 : ip + 20], tag, int(number)


class Receivers:
    """One UDP socket on port 4789 in each VTEP namespace, read by one thread: no receiver
    process per namespace, and the counts are in this process when the stream ends."""

    def __init__(self, lab: HubLab) -> None:
        self.tallies = {n: Tally() for n in range(1, VTEPS + 1)}
        self.last = time.monotonic()  # when the last datagram arrived
        self._selector = selectors.DefaultSelector()
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        try:
            for n in range(1, VTEPS + 1):
                with inside(lab.vtep_ns(n)):  # the socket stays in that namespace
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socks.append(s)
                s.bind((vtep(n), VXLAN_PORT))
                s.setblocking(False)
                self._selector.register(s, selectors.EVENT_READ, n)
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name="vxlan-receivers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        source, group = IPv4Address(SOURCE).packed, IPv4Address(GROUP).packed
        control = IPv4Address(CONTROL_GROUP).packed
        while not self._stop.is_set():
            for key, _mask in self._selector.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                tally = self.tallies[key.data]
                with contextlib.suppress(BlockingIOError):
                    while True:
                        parsed = parse_vxlan_udp(sock.recv(2048))
                        with self._lock:
                            self.last = time.monotonic()
                            if parsed is None:
                                tally.other += 1
                            elif parsed[:3] == (source, group, b"base"):
                                tally.baseline.add(parsed[3])
                            elif parsed[:3] == (source, group, b"seq"):
                                tally.stream.add(parsed[3])
                            elif parsed[1:3] == (control, b"ctrl"):
                                tally.control.add(parsed[3])
                            else:
                                tally.other += 1

    def counts(self, which: str) -> dict[int, int]:
        """Distinct packets of one kind (stream, baseline, control) per VTEP, n = 1..VTEPS."""
        with self._lock:
            return {n: len(getattr(t, which)) for n, t in self.tallies.items()}

    def quiet_since(self) -> float:
        """Seconds since the last datagram at any VTEP: how a stream with losses is declared over."""
        with self._lock:
            return time.monotonic() - self.last

    def close(self) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join(2)
        self._selector.close()
        for s in self._socks:
            s.close()


# --------------------------------------------------------------------------- sender

# The sender, in the source namespace: for each JSON line {"tag", "count", "rate"} it sends
# ``count`` datagrams "TAG-NNNNNNN" to the group at ``rate`` per second and prints one JSON line
# with the CLOCK_MONOTONIC times of the first and last send and the sendto() times (us). It runs
# as its own process so that no thread of ours holds the GIL while a sendto() is being timed.
SENDER = r"""
import json, socket, statistics, sys, time
group, source = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
s.bind((source, 0))
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    tag, count, rate = job["tag"], job["count"], job["rate"]
    took, errors = [], 0
    t0 = time.monotonic()
    for n in range(count):
        due = t0 + n / rate
        while (wait := due - time.monotonic()) > 0:
            time.sleep(wait)  # the stream's pace
        data = f"{tag}-{n:07d}".encode()
        a = time.perf_counter()
        try:
            s.sendto(data, (group, 5000))
        except OSError:
            errors += 1
        took.append((time.perf_counter() - a) * 1e6)
    t1 = time.monotonic()
    print(json.dumps({"t0": t0, "t1": t1, "sent": count - errors, "errors": errors,
                      "sendto_us": statistics.median(took),
                      "sendto_p90_us": sorted(took)[int(0.9 * len(took))]}), flush=True)
"""


class Sender:
    """The sender process in the source namespace."""

    def __init__(self, lab: HubLab) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.src, sys.executable, "-c", SENDER, GROUP, SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the sender did not start: rc={self.proc.returncode}")

    def stream(self, tag: str, count: int, rate: float) -> dict[str, Any]:
        """Send ``count`` datagrams (blocking until the last one is sent); the sender's report."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"tag": tag, "count": count, "rate": rate}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sender died: rc={self.proc.poll()}")
        report: dict[str, Any] = json.loads(line)
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# --------------------------------------------------------------------------- agent and injector


def leaf_config(workdir: Path) -> dict[str, Any]:
    """The leaf's YAML, as an operator would write it: IPMR with the edge port and only VNI 100's
    SVI (2 VIFs), a querier address for br100 (DESIGN.md §6: deterministic querier election),
    and the BGP session from the underlay address, since the VTEP address on lo is not routed
    back to the injector."""
    return {
        "router_id": LEAF_VTEP,
        "local_vtep": LEAF_VTEP,
        "asn": ASN,
        "neighbors": [{"address": INJECTOR, "asn": ASN, "local_address": LEAF_UL, "hold_time": 9}],
        "vnis": [{"vni": VNI, "querier": SVI}],
        "ipmr": {"enabled": True, "edge": ["e1"], "svis": [VNI]},
        "workdir": str(workdir),
        "log_level": "info",
    }


def injector_config(workdir: Path) -> dict[str, Any]:
    """The injector's YAML (the agent's format, no VNIs): one iBGP session to the leaf."""
    return {
        "router_id": INJECTOR,
        "local_vtep": INJECTOR,
        "asn": ASN,
        "neighbors": [{"address": LEAF_UL, "asn": ASN, "local_address": INJECTOR, "hold_time": 9}],
        "workdir": str(workdir),
    }


def route_commands(action: str) -> list[str]:
    """IMET (with IGMP proxy) for every VTEP, then SMET (*, GROUP) for the joined ones; the
    launcher's grammar (bgp/commands.py), ``action`` announce or withdraw."""
    out = []
    for n in range(1, VTEPS + 1):
        v = vtep(n)
        out.append(
            f"{action} evpn imet rd {v}:{VNI} etag 0 originator {v} next-hop {v}"
            f" pmsi ingress-replication {VNI} {v} rt {ASN}:{VNI} encap vxlan mcast-flags igmp-proxy"
        )
    for n in range(1, JOINED + 1):
        v = vtep(n)
        out.append(
            f"{action} evpn smet rd {v}:{VNI} etag 0 source * group {GROUP} originator {v}"
            f" next-hop {v} flags v2 rt {ASN}:{VNI}"
        )
    return out


class Daemon:
    """A process started in a namespace with its output in a log file; stopped with SIGTERM,
    then SIGKILL, by its own pid."""

    def __init__(self, netns: str, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        """Still running: a daemon that died early makes the waits fail fast, not time out."""
        return self.proc.poll() is None

    def tail(self) -> str:
        """The end of its log, printed when the run fails (the log goes with the temp dir)."""
        return self.log.read_text(errors="replace")[-3000:]

    def cpu_s(self) -> float:
        """user + system CPU seconds of the process (``ip netns exec`` execs it: same pid)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def announce(sock_path: Path, lines: list[str]) -> list[str]:
    """All lines to the injector over one connection (it answers each in order); the answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT_S)
        s.connect(str(sock_path))
        s.sendall("".join(line + "\n" for line in lines).encode())
        buf = b""
        while buf.count(b"\n") < len(lines):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace").splitlines()


def injector_ready(sock_path: Path) -> bool:
    """The injector accepts connections (its socket exists before ExaBGP is up, so connect)."""
    if not sock_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock_path))
        except OSError:
            return False
    return True


def show(control: Path, what: str) -> Any:
    """``evpnctl show WHAT --json``: the interface users see (DESIGN.md section 8)."""
    out = sh([str(BIN / "evpnctl"), "show", what, "--json", "--socket", str(control)])
    return json.loads(out.stdout)


def peer_up(control: Path) -> bool:
    """The leaf's session to the injector is established: routes sent before that would be
    timed from a moment the leaf could not hear them."""
    try:
        peers = ask(control, {"show": "peers"}, timeout=5)
    except ControlError:
        return False
    return bool(peers) and all(p["state"] == "up" for p in peers)


# --------------------------------------------------------------------------- kernel state


class LeafKernel:
    """rtnetlink dumps of the leaf's vxlan100 flood list and MDB, from a socket opened inside
    the leaf namespace (it stays there), so polling runs no subprocess."""

    def __init__(self, leaf: str) -> None:
        with inside(leaf):
            self.kernel = RouteKernel()
            self.vxlan = socket.if_nametoindex(f"vxlan{VNI}")

    def flood(self) -> set[str]:
        """The remote VTEPs of vxlan100's flood list (all-zero MAC entries)."""
        return {
            str(r.dst) for r in self.kernel.dump_fdb(self.vxlan) if r.mac == b"\x00" * 6 and r.dst is not None
        }

    def mdb(self) -> set[str]:
        """The remote VTEPs of the VXLAN MDB entries for GROUP."""
        group = IPv4Address(GROUP)
        return {str(r.dst) for r in self.kernel.dump_mdb() if r.group == group and r.dst is not None}

    def close(self) -> None:
        self.kernel.close()


# --------------------------------------------------------------------------- the run


def wait_stream(rx: Receivers, which: str, expected: dict[int, int], sent: int) -> dict[int, int]:
    """Counts once every VTEP has what it should (``expected``: VTEP -> packets) or the
    datagrams stopped coming for QUIET_S (losses, or nothing was due)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        counts = rx.counts(which)
        done = all(counts[n] >= want for n, want in expected.items())
        if (done and sent) or rx.quiet_since() > QUIET_S or time.monotonic() > deadline:
            return counts
        time.sleep(0.02)  # the poll's pace, bounded by the deadline and QUIET_S


def vif_per_branch(lab: HubLab) -> dict[str, Any]:
    """The reference design measured on this kernel: a hub that gives every branch a VIF of its
    own. The spine has an interface per VTEP (plus its uplink as the input), so it tries one VIF
    each with an MRT socket of its own; the first refusal ends it (the socket then goes, and the
    VIFs with it). The vifctl is packed here rather than by ``ipmr.structs.vifctl``, which
    refuses index 32 itself: the point is what the kernel says."""
    branches, refusal = 0, ""
    with inside(lab.ul):
        sock = MrtSocket(4)
        try:
            raw: socket.socket = sock._sock
            for n, name in enumerate(["vl", *(f"v{k}" for k in range(1, VTEPS + 1))]):
                value = VIFCTL.pack(n, structs.VIFF_USE_IFINDEX, 1, 0, socket.if_nametoindex(name), bytes(4))
                try:
                    raw.setsockopt(socket.IPPROTO_IP, structs.MRT_ADD_VIF, value)
                except OSError as exc:
                    refusal = f"VIF {n} ({name}): {errno.errorcode.get(exc.errno or 0, exc.errno)}"
                    break
                branches = n  # VIF 0 is the input
        finally:
            sock.close()
    return {"branches": branches, "refusal": refusal}


def print_tails(*daemons: Daemon) -> None:
    """The daemons' log tails on stderr: the only trace of a failed run once the temp dir is gone."""
    for daemon in daemons:
        print(f"--- {daemon.log.name} (tail)\n{daemon.tail()}", file=sys.stderr)


def routes_round(kernel: LeafKernel, inj_sock: Path, action: str) -> dict[str, Any]:
    """All routes announced (or withdrawn) through the injector over one connection; seconds
    from the first command until the leaf's kernel has all (or none) of the flood entries and
    of the MDB remotes, and until the injector acknowledged the last command."""
    lines = route_commands(action)
    want_flood = {vtep(n) for n in range(1, VTEPS + 1)}
    want_mdb = {vtep(n) for n in range(1, JOINED + 1)}
    marks: dict[str, float] = {}

    def complete() -> bool:
        now = time.monotonic()
        flood, mdb = kernel.flood() & want_flood, kernel.mdb() & want_mdb
        if "flood" not in marks and (flood == want_flood if action == "announce" else not flood):
            marks["flood"] = now
        if "mdb" not in marks and (mdb == want_mdb if action == "announce" else not mdb):
            marks["mdb"] = now
        return "flood" in marks and "mdb" in marks

    answers: list[str] = []

    def send() -> None:
        answers.extend(announce(inj_sock, lines))
        marks["acked"] = time.monotonic()

    t0 = time.monotonic()
    sender = threading.Thread(target=send, name="injector-client")
    sender.start()
    try:
        poll(complete, TIMEOUT_S, f"the leaf's kernel after {len(lines)} {action} commands")
    finally:
        sender.join(TIMEOUT_S)
    refused = [a for a in answers if a != "done"]
    if len(answers) != len(lines) or refused:
        raise RuntimeError(f"injector: {len(answers)} answers for {len(lines)} commands, {refused[:3]}")
    return {
        "action": action,
        "flood_s": marks["flood"] - t0,
        "mdb_s": marks["mdb"] - t0,
        "acked_s": marks["acked"] - t0,
    }


def send_control(lab: HubLab, rx: Receivers) -> dict[str, int]:
    """CONTROL_PACKETS link-local datagrams from the leaf's SVI; per VTEP, how many arrived."""
    with inside(lab.leaf):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(SVI))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        for n in range(CONTROL_PACKETS):
            s.sendto(f"ctrl-{n:07d}".encode(), (CONTROL_GROUP, 5000))
    with contextlib.suppress(RuntimeError):  # a VTEP short of them shows in the counts
        poll(
            lambda: all(c >= CONTROL_PACKETS for c in rx.counts("control").values()),
            5.0,
            "the control datagrams at every VTEP",
        )
    return {str(n): c for n, c in rx.counts("control").items()}


def run(lab: HubLab, tmp: Path) -> dict[str, Any]:
    """Build the lab, start everything, measure; the raw figures. Every process started here is
    stopped on the way out (the lab's namespaces are the caller's to remove)."""
    res: dict[str, Any] = {}
    t = time.perf_counter()
    lab.build()
    res["build_s"] = time.perf_counter() - t
    res["settle_s"] = lab.settle()
    res["vif_per_branch"] = vif_per_branch(lab)
    (tmp / "leaf").mkdir()
    (tmp / "inj").mkdir()
    leaf_yaml, inj_yaml = tmp / "leaf.yaml", tmp / "injector.yaml"
    leaf_yaml.write_text(yaml.safe_dump(leaf_config(tmp / "leaf")))
    inj_yaml.write_text(yaml.safe_dump(injector_config(tmp / "inj")))
    control, inj_sock = tmp / "leaf" / "control.sock", tmp / "inj" / "injector.sock"

    with contextlib.ExitStack() as stops:  # stopped in reverse order, each even if one fails
        rx = Receivers(lab)
        stops.callback(rx.close)
        agent = Daemon(
            lab.leaf, [str(BIN / "evpn-agent"), "run", "--config", str(leaf_yaml)], tmp / "leaf.log"
        )
        stops.callback(agent.stop)
        injector = Daemon(
            lab.ul,
            [
                sys.executable,
                "-m",
                "bgp.injector",
                "--socket",
                str(inj_sock),
                "serve",
                "--config",
                str(inj_yaml),
            ],
            tmp / "injector.log",
        )
        stops.callback(injector.stop)
        kernel = LeafKernel(lab.leaf)
        stops.callback(kernel.close)
        sender = Sender(lab)
        stops.callback(sender.close)
        # The logs go with the temporary directory: show their tails if the run fails.
        stops.push(lambda kind, *_: print_tails(agent, injector) if kind is not None else None)
        poll(lambda: injector_ready(inj_sock) or not injector.alive(), TIMEOUT_S, "the injector")
        poll(lambda: peer_up(control) or not agent.alive(), TIMEOUT_S, "the leaf's BGP session")
        if not (agent.alive() and injector.alive()):
            raise RuntimeError("the agent or the injector stopped")

        # Baseline: no routes yet. IPMR resolves (S,G) with no outputs; nobody may get a copy.
        base = sender.stream("base", BASELINE_PACKETS, RATE)
        base_counts = wait_stream(rx, "baseline", {}, 0)
        res["baseline"] = {
            "report": base,
            "received": sum(base_counts.values()),
            "routes": [r for r in show(control, "mroutes") if r["source"] == SOURCE and r["group"] == GROUP],
        }

        # The routes: 101 IMET + 100 SMET, timed until the leaf's kernel has them all; then
        # withdrawn (timed until none is left) and announced again, ROUNDS announcements in all.
        res["rounds"] = []
        cpu0 = agent.cpu_s()
        for n in range(ROUNDS):
            res["rounds"].append(routes_round(kernel, inj_sock, "announce"))
            if n < ROUNDS - 1:
                res["rounds"].append(routes_round(kernel, inj_sock, "withdraw"))
        res["agent_cpu_routes_s"] = agent.cpu_s() - cpu0
        res["mdb_extra"] = sorted(kernel.mdb() - {vtep(n) for n in range(1, JOINED + 1)})

        # The stream.
        cpu0 = agent.cpu_s()
        report = sender.stream("seq", PACKETS, RATE)
        counts = wait_stream(rx, "stream", {n: PACKETS for n in range(1, JOINED + 1)}, report["sent"])
        res["agent_cpu_s"] = agent.cpu_s() - cpu0
        res["stream"] = report
        res["counts"] = {str(n): c for n, c in counts.items()}
        res["other"] = {str(n): t.other for n, t in rx.tallies.items()}

        # Control: link-local datagrams from the leaf's SVI go along the whole flood list, so
        # v101's receiver works and it is in the flood list: its zero above means something.
        res["control"] = send_control(lab, rx)

        vifs = show(control, "vifs")
        res["vifs"] = vifs
        res["mroutes"] = show(control, "mroutes")
        with inside(lab.leaf):
            res["proc_vifs"] = [(v.index, v.name, v.packets_in, v.packets_out) for v in read_vifs(4)]
        res["groups"] = [g for g in show(control, "groups") if g["group"] == GROUP]
        if not agent.alive():
            raise RuntimeError("the agent stopped during the run")
        res["log_problems"] = [
            line for line in agent.log.read_text(errors="replace").splitlines() if PROBLEM.search(line)
        ]
    return res


def summarize(raw: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The figures of the run (and the JSON line) from what ``run`` collected."""
    counts = {int(n): c for n, c in raw["counts"].items()}
    joined = [counts[n] for n in range(1, JOINED + 1)]
    served = sum(1 for c in joined if c >= SERVED_SHARE * PACKETS)
    vif_names = sorted(v["interface"] for v in raw["vifs"]["vifs"] if v["family"] == 4)
    proc_names = sorted(name for _i, name, _in, _out in raw["proc_vifs"])
    if vif_names != proc_names:
        raise RuntimeError(f"evpnctl shows VIFs {vif_names}, the kernel {proc_names}")
    route = next(
        (r for r in raw["mroutes"] if r["source"] == SOURCE and r["group"] == GROUP and not r["unresolved"]),
        None,
    )
    base_us = raw["baseline"]["report"]["sendto_us"]
    stream_us = raw["stream"]["sendto_us"]
    announced = [r for r in raw["rounds"] if r["action"] == "announce"]
    withdrawn = [r for r in raw["rounds"] if r["action"] == "withdraw"]
    control = {int(n): c for n, c in raw["control"].items()}
    return {
        "vteps_joined": JOINED,
        "vteps_served": served,
        "packets_sent": raw["stream"]["sent"],
        "received_min": min(joined),
        "received_median": statistics.median(joined),
        "received_max": max(joined),
        "nonjoined_received": counts[VTEPS],
        "nonjoined_other_datagrams": raw["other"][str(VTEPS)],
        "control_sent": CONTROL_PACKETS,
        "control_min": min(control.values()),
        "nonjoined_control": control[VTEPS],
        "baseline_received": raw["baseline"]["received"],
        "baseline_mfc_oifs": [x["oifs"] for x in raw["baseline"]["routes"]],
        "vifs_used": len(vif_names),
        "vif_interfaces": vif_names,
        "vteps_per_vif": served / len(vif_names) if vif_names else 0.0,
        "vif_per_vtep_max_vteps": raw["vif_per_branch"]["branches"],
        "ratio_vs_vif_per_vtep": served / max(1, raw["vif_per_branch"]["branches"]),
        "flood_s": med(announced, "flood_s"),
        "mdb_s": med(announced, "mdb_s"),
        "injector_acked_s": med(announced, "acked_s"),
        "mdb_after_ack_ms": statistics.median(x["mdb_s"] - x["acked_s"] for x in announced) * 1000,
        "withdraw_mdb_s": med(withdrawn, "mdb_s") if withdrawn else None,
        "withdraw_flood_s": med(withdrawn, "flood_s") if withdrawn else None,
        "rounds": len(announced),
        "mdb_extra": raw["mdb_extra"],
        "mfc_oifs": route["oifs"] if route else [],
        "mfc_packets": route["packets"] if route else 0,
        "fanout": raw["groups"][0]["fanout"] if raw["groups"] else 0,
        "sendto_us": stream_us,
        "sendto_us_no_receivers": base_us,
        "us_per_copy": (stream_us - base_us) / JOINED,
        "agent_cpu_ms": raw["agent_cpu_s"] * 1000,
        "agent_cpu_routes_ms": raw["agent_cpu_routes_s"] * 1000,
        "agent_log_problems": len(raw["log_problems"]),
        "counts": [counts[n] for n in range(1, VTEPS + 1)],
        "build_s": raw["build_s"],
        "wall_s": wall_s,
    }


def report(r: dict[str, Any], raw: dict[str, Any]) -> None:
    """The figures for people, each with what it was measured against."""
    print(
        f"kernel {os.uname().release}; waited {raw['settle_s']:.1f} s for RTNL to be quiet after building"
        " the lab"
    )
    print(
        f"leaf: agent with IPMR (edge e1, SVI br{VNI}), {VTEPS} remote VTEP namespaces in VNI {VNI},"
        f" {JOINED} joined {GROUP} (SMET (*,G)), v{VTEPS} in the flood list only"
    )
    b = raw["baseline"]
    routes = ", ".join(f"iif {x['iif']} oifs {x['oifs']} packets {x['packets']}" for x in b["routes"])
    print(
        f"before any route: {b['report']['sent']} packets sent, {r['baseline_received']} VXLAN copies"
        f" received in all; MFC ({SOURCE}, {GROUP}): {routes or 'none'}"
    )
    announced = [x for x in raw["rounds"] if x["action"] == "announce"]
    withdrawn = [x for x in raw["rounds"] if x["action"] == "withdraw"]
    print(
        f"routes announced ({VTEPS} IMET + {JOINED} SMET, one injector, median of {len(announced)}):"
        f" flood list complete after {r['flood_s']:.3f} s (runs: {runs(announced, 'flood_s')}),"
        f" MDB (*, {GROUP}) with all {JOINED} VTEPs after {r['mdb_s']:.3f} s"
        f" (runs: {runs(announced, 'mdb_s')});"
        f" the injector acked the last command after {r['injector_acked_s']:.3f} s (MDB complete"
        f" {r['mdb_after_ack_ms']:.0f} ms after that ack, median)"
        + (f"; extra MDB remotes {r['mdb_extra']}" if r["mdb_extra"] else "")
    )
    if withdrawn:
        print(
            f"withdrawn in between ({len(withdrawn)}x): MDB empty after {r['withdraw_mdb_s']:.3f} s"
            f" (runs: {runs(withdrawn, 'mdb_s')}), flood list after {r['withdraw_flood_s']:.3f} s"
        )
    print(
        f"agent CPU for the {len(announced)} announcements and {len(withdrawn)} withdrawals:"
        f" {r['agent_cpu_routes_ms']:.0f} ms"
    )
    print(
        f"stream: {r['packets_sent']} packets at {RATE:.0f}/s from {SOURCE} (routed, TTL 8) -> VTEPs with"
        f" >= {SERVED_SHARE:.0%}: {r['vteps_served']}/{JOINED}; received min {r['received_min']},"
        f" median {r['received_median']:g}, max {r['received_max']}"
    )
    print(
        f"v{VTEPS} (in the flood list, not joined): {r['nonjoined_received']} packets of the stream;"
        f" it got {r['nonjoined_control']}/{CONTROL_PACKETS} link-local datagrams ({CONTROL_GROUP}) the"
        f" leaf sent on br{VNI} (every VTEP got at least {r['control_min']}), and"
        f" {r['nonjoined_other_datagrams']} other VXLAN datagrams"
    )
    print(
        f"VIFs used on the leaf: {r['vifs_used']} ({', '.join(r['vif_interfaces'])}; evpnctl and"
        f" /proc/net/ip_mr_vif agree) -> {r['vteps_per_vif']:g} VTEPs served per VIF"
    )
    for index, name, pin, pout in raw["proc_vifs"]:
        print(f"  vif {index} {name}: packets in {pin}, out {pout}")
    print(
        f"  MFC ({SOURCE}, {GROUP}): oifs {r['mfc_oifs']}, {r['mfc_packets']} packets; agent's group fanout"
        f" {r['fanout']}"
    )
    print(
        f"baseline, one VIF per remote VTEP (tried on the spine's {VTEPS} VTEP links, same kernel):"
        f" {r['vif_per_vtep_max_vteps']} VTEPs plus the input VIF, then"
        f" {raw['vif_per_branch']['refusal'] or 'no refusal'}; served here: {r['vteps_served']},"
        f" {r['ratio_vs_vif_per_vtep']:.1f}x"
    )
    print(
        f"cost: sendto() median {r['sendto_us']:.0f} us per packet with {JOINED} copies"
        f" ({r['sendto_us_no_receivers']:.0f} us with none) -> {r['us_per_copy']:.1f} us per copy for the"
        f" whole emulated path; agent CPU during the stream {r['agent_cpu_ms']:.0f} ms"
        f" (clock tick {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms: the kernel forwards, the agent only"
        " resolved the flow's one upcall)"
    )
    problems = raw["log_problems"]
    print(f"agent log: {len(problems)} warning/error lines" + "".join(f"\n  {line}" for line in problems[:5]))
    print(f"whole run: {r['wall_s']:.1f} s (lab build {r['build_s']:.1f} s)")


# --------------------------------------------------------------------------- plot


def plot(result: dict[str, Any], out: Path) -> None:
    """Packets received per VTEP: the 100 joined VTEPs and the one that did not join, against
    the packets sent, annotated with the VIFs used: the hub-with-many-branches case in one
    picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts: list[int] = result["counts"]
    joined, sent = len(counts) - 1, result["packets_sent"]
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.bar(range(1, joined + 1), counts[:joined], width=0.8, color="tab:blue", label="joined (SMET (*,G))")
    ax.bar([joined + 1], [counts[-1]], width=0.8, color="tab:red", label="in the flood list, not joined")
    ax.plot([joined + 1], [0], marker="^", color="tab:red", markersize=9, clip_on=False)
    ax.axhline(sent, color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"sent: {sent}", (1, sent), xytext=(0, 4), textcoords="offset points", fontsize=9)
    ax.annotate(
        f"v{len(counts)}\n(not joined):\n{counts[-1]} received",
        (joined + 1, 0),
        xytext=(joined + 4, sent * 0.45),
        ha="left",
        color="tab:red",
        arrowprops={"arrowstyle": "->", "color": "tab:red"},
    )
    served, per_vif = result["vteps_served"], result["vteps_per_vif"]
    ax.text(
        0.03,
        0.97,
        f"{result['vifs_used']} VIFs ({' + '.join(result['vif_interfaces'])}), {served} VTEPs served"
        f" (>= {SERVED_SHARE:.0%}): {per_vif:g} VTEPs per VIF\n"
        f"one VIF per VTEP stops at {result['vif_per_vtep_max_vteps']} VTEPs (MAXVIFS {MAXVIFS})",
        transform=ax.transAxes,
        va="top",
        fontsize=11,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9},
    )
    ax.set_xlim(0, len(counts) + 16)  # room on the right for the non-joined VTEP's label
    ax.set_ylim(0, sent * 1.35)
    ax.set_xlabel(f"remote VTEP (namespace v1..v{len(counts)})")
    ax.set_ylabel("packets of the stream received")
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    ax.set_title(
        f"Routed source on an IPMR edge port to {joined} VTEPs by head-end replication (VNI {VNI},"
        f" {GROUP})\nMDB complete {result['mdb_s']:.2f} s after the routes were announced"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw the received packets per VTEP")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark builds network namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (BIN / "evpn-agent").exists():
        sys.exit(f"{BIN / 'evpn-agent'} is missing: run with the project's venv (make setup)")

    wall = time.perf_counter()
    lab = HubLab()
    try:
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-maxvifs-") as tmp:
            raw = run(lab, Path(tmp))
    finally:
        settle_after = lab.close()
    result = summarize(raw, time.perf_counter() - wall)
    report(result, raw)
    print(f"  (waited {settle_after:.1f} s for the namespaces' tear-down)")
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "counts"}
    out["counts"] = result["counts"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
