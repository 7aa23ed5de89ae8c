"""Network-namespace building blocks for the tests: uniquely named namespaces and veth links,
FRR daemons with private sockets, polling with a deadline. Everything created is recorded and
removed by ``Lab.close`` even when a test fails."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PREFIX = "eiat"  # evpn-ir-agent test; every namespace of the suite starts with it


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, check=check, text=True, capture_output=True)


def poll(fn: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> T:
    """Call fn until it returns a truthy value; fail with its last value after the deadline."""
    deadline = time.monotonic() + timeout
    last: T = fn()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last={last!r}")
        time.sleep(interval)
        last = fn()
    return last


async def wait_until(pred: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """The asyncio twin of poll(): let the event loop run until pred() holds or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        await asyncio.sleep(0.05)


@dataclass
class Lab:
    workdir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def ns(self, name: str) -> str:
        full = f"{PREFIX}{self.tag}{name}"
        sh(f"ip netns add {full}")
        self.namespaces.append(full)
        sh(f"ip -n {full} link set lo up")
        return full

    def veth(self, ns_a: str, if_a: str, addr_a: str, ns_b: str, if_b: str, addr_b: str) -> None:
        sh(f"ip link add {if_a} netns {ns_a} type veth peer {if_b} netns {ns_b}")
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            if addr:
                sh(f"ip -n {ns} addr add {addr} dev {ifname}")
            sh(f"ip -n {ns} link set {ifname} up")

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for ns in self.namespaces:
            # Kill anything still running inside before the namespace goes.
            inside_pids = sh(f"ip netns pids {ns}", check=False).stdout.split()
            for text in inside_pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(text), signal.SIGKILL)
            sh(f"ip netns del {ns}", check=False)


def leftover_namespaces() -> list[str]:
    out = sh("ip netns list", check=False).stdout.split("\n")
    return [line.split()[0] for line in out if line.startswith(PREFIX)]


def frr_available() -> bool:
    return Path("/usr/lib/frr/bgpd").exists() and shutil.which("vtysh") is not None


@dataclass
class Frr:
    """zebra + bgpd in one namespace, with private pid files, zserv and vty sockets."""

    lab: Lab
    netns: str
    workdir: Path

    def start(self, bgpd_conf: str, zebra_conf: str = "") -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o777)
        (self.workdir / "zebra.conf").write_text(zebra_conf or "hostname zebra\n")
        (self.workdir / "bgpd.conf").write_text(bgpd_conf)
        zserv = self.workdir / "zserv.api"
        common = f"-d -u root -g frrvty -z {zserv} --vty_socket {self.workdir} -A 127.0.0.1"
        sh(
            f"ip netns exec {self.netns} /usr/lib/frr/zebra {common} -f {self.workdir}/zebra.conf "
            f"-i {self.workdir}/zebra.pid"
        )
        poll(zserv.exists, 10, what="zebra zserv socket")
        sh(
            f"ip netns exec {self.netns} /usr/lib/frr/bgpd {common} -f {self.workdir}/bgpd.conf "
            f"-i {self.workdir}/bgpd.pid -p 179"
        )
        for daemon in ("zebra", "bgpd"):
            pidfile = self.workdir / f"{daemon}.pid"
            poll(pidfile.exists, 10, what=f"{daemon} pid file")
            self.lab.pids.append(int(pidfile.read_text().strip()))

    def vtysh(self, command: str) -> str:
        return sh(
            f"ip netns exec {self.netns} vtysh --vty_socket {self.workdir} -c '{command}'", check=False
        ).stdout


# --------------------------------------------------------------------------- in-process netns

# One implementation for tests and benchmarks: entering a namespace from a thread.
from bench.common import inside  # noqa: E402 (re-exported for the tests)

# --------------------------------------------------------------------------- VXLAN capture

_ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class Inner:
    """One VXLAN packet as a receiving VTEP saw it: VNI, inner L3 addresses, UDP payload."""

    vni: int
    source: str
    group: str
    payload: bytes


def parse_vxlan(frame: bytes) -> Inner | None:
    """Ethernet/IPv4|IPv6/UDP:4789/VXLAN/Ethernet/IPv4|IPv6 -> Inner; None for anything else."""
    if len(frame) < 14 + 40 + 8 + 8 + 14:
        return None
    if frame[12:14] == b"\x08\x00" and frame[23] == 17:
        udp = 14 + (frame[14] & 0x0F) * 4
    elif frame[12:14] == b"\x86\xdd" and frame[20] == 17:
        udp = 14 + 40
    else:
        return None
    if int.from_bytes(frame[udp + 2 : udp + 4], "big") != 4789:
        return None
    vni = int.from_bytes(frame[udp + 12 : udp + 15], "big")
    inner = udp + 16
    ethertype = frame[inner + 12 : inner + 14]
    l3 = inner + 14
    if ethertype == b"\x08\x00":
        ihl2 = (frame[l3] & 0x0F) * 4
        src = ipaddress.IPv4Address(frame[l3 + 12 : l3 + 16])
        dst = ipaddress.IPv4Address(frame[l3 + 16 : l3 + 20])
        payload = frame[l3 + ihl2 + 8 :] if frame[l3 + 9] == 17 else b""
        return Inner(vni, str(src), str(dst), payload)
    if ethertype == b"\x86\xdd":
        src6 = ipaddress.IPv6Address(frame[l3 + 8 : l3 + 24])
        dst6 = ipaddress.IPv6Address(frame[l3 + 24 : l3 + 40])
        payload = frame[l3 + 48 :] if frame[l3 + 6] == 17 else b""
        return Inner(vni, str(src6), str(dst6), payload)
    return Inner(vni, "", "", frame[inner:])


def parse_udp(frame: bytes) -> Inner | None:
    """Ethernet/IPv4|IPv6/UDP -> Inner (vni 0): plain multicast as a receiver's link sees it."""
    if frame[12:14] == b"\x08\x00" and len(frame) >= 14 + 20 + 8 and frame[23] == 17:
        ihl = (frame[14] & 0x0F) * 4
        src, dst = ipaddress.IPv4Address(frame[26:30]), ipaddress.IPv4Address(frame[30:34])
        return Inner(0, str(src), str(dst), frame[14 + ihl + 8 :])
    if frame[12:14] == b"\x86\xdd" and len(frame) >= 14 + 40 + 8 and frame[20] == 17:
        src6, dst6 = ipaddress.IPv6Address(frame[22:38]), ipaddress.IPv6Address(frame[38:54])
        return Inner(0, str(src6), str(dst6), frame[62:])
    return None


class Capture:
    """Records the packets of one kind arriving on one interface of a namespace (AF_PACKET);
    ``parse`` picks them (default: VXLAN)."""

    def __init__(self, netns: str, ifname: str, parse: Callable[[bytes], Inner | None] = parse_vxlan) -> None:
        self._parse = parse
        with inside(netns):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
            self._sock.bind((ifname, 0))
        self._sock.settimeout(0.05)
        self.packets: list[Inner] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            inner = self._parse(frame)
            if inner is not None:
                with self._lock:
                    self.packets.append(inner)
                    self.times.append(time.monotonic())

    def with_payload(self, prefix: bytes) -> list[Inner]:
        with self._lock:
            return [p for p in self.packets if p.payload.startswith(prefix)]

    def arrival_times(self, prefix: bytes) -> list[float]:
        with self._lock:
            return [t for p, t in zip(self.packets, self.times, strict=True) if p.payload.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


# --------------------------------------------------------------------------- MQTT broker


@dataclass
class Broker:
    """``mosquitto -c CONF`` inside ``netns``, listening on 127.0.0.1:``port``."""

    lab: Lab
    netns: str
    workdir: Path
    port: int = 1883
    extra: str = "allow_anonymous true\n"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"user root\npersistence false\nlog_dest stderr\nlog_type all\n"
            f"listener {self.port} 127.0.0.1\n{self.extra}"
        )
        with (self.workdir / "mosquitto.log").open("ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "mosquitto", "-c", str(conf)], stdout=out, stderr=out
            )
        self.lab.pids.append(self.proc.pid)
        poll(lambda: self.listening() or self.proc.poll() is not None, 5, 0.01, "mosquitto listening")  # type: ignore[union-attr]
        assert self.proc.poll() is None, (self.workdir / "mosquitto.log").read_text()

    def listening(self) -> bool:
        with inside(self.netns), socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.lab.pids.remove(self.proc.pid)


# --------------------------------------------------------------------------- multicast streams


@contextlib.contextmanager
def streaming(
    netns: str, group: str, source: str, interval: float = 0.01, ttl: int = 8, ifname: str = "eth0"
) -> Iterator[list[int]]:
    """A steady numbered UDP stream (``seq-NNNNNNN``) to ``group`` from ``source`` in ``netns``
    while the block runs; yields the numbers sent. IPv4 or IPv6 after the group."""
    sent: list[int] = []
    stop = threading.Event()
    with inside(netns):
        if ":" in group:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(ifname))
            s.bind((source, 0))
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))

    def run() -> None:
        n = 0
        while not stop.is_set():
            with contextlib.suppress(OSError):
                s.sendto(f"seq-{n:07d}".encode(), (group, 5000))
                sent.append(n)
            n += 1
            time.sleep(interval)  # the stream's pace, not synchronisation

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(2)
        s.close()
