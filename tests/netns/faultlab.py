"""Shared pieces of tests/netns/test_faults.py: one agent leaf with 50 VNIs in a namespace, a
route injector (the project's ExaBGP launcher, driven from a thread's event loop so that
synchronous tests can pipeline thousands of commands), an FRR peer, a Mosquitto broker, and
fast views of the leaf's kernel FDB/MDB through the project's own netlink code.

Topology (every namespace named ``eiat<tag>...``, removed by ``Lab.close``)::

    inj 10.0.0.2 --10.1.2.0/24-- leaf 10.0.0.1 --10.1.3.0/24-- frr 10.0.0.3
    (ExaBGP injector)            (evpn-agent, br1..br50)       (bgpd + zebra)

The leaf's agent peers with both over iBGP; FRR (bgpd + zebra, advertise-all-vni) has VNI 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, TypeVar

from bench.common import inside
from bgp.exabgp_config import Neighbor, Speaker
from bgp.speaker import ExabgpProcess
from replication.kernel import NetlinkSocket, RouteKernel
from replication.netlink import RTM_GETNEIGH, RTM_NEWMDB, dump_request, mdb_message, parse_fdb
from tests.netns.netlab import Broker, Frr, Lab, poll, sh
from tests.netns.test_agent_e2e import Fabric

T = TypeVar("T")

LEAF, INJ, FRR = "10.0.0.1", "10.0.0.2", "10.0.0.3"
VNIS = range(1, 51)
ZERO_MAC = "00:00:00:00:00:00"
ANY4, ANY6 = "0.0.0.0", "::"
GROUP_CAP = 1000
AGENT_PROTOCOL = 232  # replication.protocol's default: the agent's MDB entries carry it
GR_TIME = 12  # seconds of graceful restart in the agent's GR configuration
STARTUP_HOLD = 30  # replication.startup_hold of the leaf: deletes wait for BGP after a start

FdbKey = tuple[str, str, str]  # (device, MAC, dst)
MdbKey = tuple[str, str, str, str]  # (device, source or "*", group, dst)

# Entries an operator added by hand: flood remotes, a unicast MAC and a multicast MAC with a
# remote of their own. The agent must never touch them.
OPERATOR_FDB: frozenset[FdbKey] = frozenset(
    {
        ("vxlan1", ZERO_MAC, "10.200.0.1"),
        ("vxlan2", ZERO_MAC, "10.200.0.2"),
        ("vxlan50", ZERO_MAC, "10.200.0.50"),
        ("vxlan3", "02:00:00:00:00:01", "10.200.0.3"),
        ("vxlan4", "01:00:5e:01:02:03", "10.200.0.4"),
    }
)
# An MDB remote another daemon wrote (protocol 4, "static"): also never the agent's.
OPERATOR_MDB: MdbKey = ("vxlan1", "*", "239.9.9.9", "10.200.0.1")

FRR_CONF = f"""\
hostname frr
log stdout informational
router bgp 65000
 bgp router-id {FRR}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {LEAF} remote-as 65000
 neighbor {LEAF} update-source {FRR}
 neighbor {LEAF} timers 1 3
 neighbor {LEAF} timers connect 1
 address-family l2vpn evpn
  neighbor {LEAF} activate
  advertise-all-vni
 exit-address-family
"""


def vtep(t: int) -> str:
    """The injector's t-th remote VTEP (0 <= t < 250 * 250)."""
    return f"10.100.{t // 250}.{1 + t % 250}"


def imet(vni: int, t: int, action: str = "announce") -> str:
    v = vtep(t)
    return (
        f"{action} evpn imet rd {v}:{vni} etag 0 originator {v} next-hop {INJ} "
        f"pmsi ingress-replication {vni} {v} rt 65000:{vni} encap vxlan mcast-flags igmp-proxy+mld-proxy"
    )


def smet(vni: int, t: int, group: str, action: str = "announce") -> str:
    v = vtep(t)
    return (
        f"{action} evpn smet rd {v}:{vni} etag 0 source * group {group} originator {v} "
        f"next-hop {INJ} rt 65000:{vni}"
    )


# --------------------------------------------------------------------------- an event loop in a thread


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# --------------------------------------------------------------------------- the injector


@dataclass
class Injector:
    """ExaBGP (the project's launcher) in ``netns`` peering with the leaf; remembers which IMET
    and SMET routes it announces, which is what the leaf's kernel must end up with."""

    lab: Lab
    netns: str
    workdir: Path
    loop: LoopThread
    graceful_restart: int = 0
    process: ExabgpProcess | None = None
    imets: set[tuple[int, int]] = field(default_factory=set)  # (vni, VTEP index)
    smets: set[tuple[int, int, str]] = field(default_factory=set)  # (vni, VTEP index, group)
    states: list[str] = field(default_factory=list)  # ExaBGP's session states, in order
    _drain: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.loop.run(self._start())

    async def _start(self) -> None:
        speaker = Speaker(
            ip_address(INJ),
            65000,
            ip_address(INJ),
            (Neighbor(ip_address(LEAF), 65000, ip_address(INJ), hold_time=9),),
            graceful_restart=self.graceful_restart,
        )
        self.process = ExabgpProcess(speaker, self.workdir, netns=self.netns, python=sys.executable)
        self.process.log_level = "WARNING"
        await self.process.start()
        assert self.process.pid is not None
        self.lab.pids.append(self.process.pid)
        self._drain = asyncio.get_running_loop().create_task(self._lines(self.process))

    async def _lines(self, process: ExabgpProcess) -> None:
        """Keep ExaBGP's pipe flowing; note the session states."""
        with contextlib.suppress(EOFError):
            while True:
                line = await process.next_line(None)
                if line is not None and '"type": "state"' in line:
                    self.states.append(str(json.loads(line)["neighbor"]["state"]))

    @property
    def up(self) -> bool:
        return bool(self.states) and self.states[-1] == "up"

    def send(self, lines: Iterable[str], chunk: int = 2500) -> None:
        """Pipeline the commands (``chunk`` in flight at a time); every one must be acknowledged."""
        self.loop.run(self._send(list(lines), chunk), timeout=120)

    async def _send(self, lines: list[str], chunk: int) -> None:
        assert self.process is not None
        for start in range(0, len(lines), chunk):
            part = lines[start : start + chunk]
            answers = await asyncio.gather(*(self.process.send(line) for line in part))
            refused = [line for line, ok in zip(part, answers, strict=True) if not ok]
            assert not refused, f"{len(refused)} commands refused, first: {refused[0]}"

    def announce_imets(self, routes: Iterable[tuple[int, int]], chunk: int = 2500) -> None:
        routes = list(routes)
        self.send((imet(vni, t) for vni, t in routes), chunk)
        self.imets.update(routes)

    def withdraw_imets(self, routes: Iterable[tuple[int, int]]) -> None:
        routes = list(routes)
        self.send(imet(vni, t, "withdraw") for vni, t in routes)
        self.imets.difference_update(routes)

    def announce_smets(self, routes: Iterable[tuple[int, int, str]]) -> None:
        routes = list(routes)
        self.send(smet(vni, t, g) for vni, t, g in routes)
        self.smets.update(routes)

    def signal(self, sig: int) -> None:
        """To ExaBGP's whole process group (launcher and relay)."""
        assert self.process is not None and self.process.pid is not None
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash: no NOTIFICATION, the kernel closes the TCP session. The routes
        it announced are forgotten (a new run starts empty)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.signal(signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        self.loop.run(process.stop())
        if self._drain is not None:
            self.loop.loop.call_soon_threadsafe(self._drain.cancel)
        self.imets.clear()
        self.smets.clear()
        self.states = []


# --------------------------------------------------------------------------- the leaf's kernel


class KernelView:
    """The leaf's VXLAN FDB and MDB read with the project's netlink code (one dump each); safe
    to share between threads (one dump at a time on its socket)."""

    def __init__(self, netns: str) -> None:
        self._lock = threading.Lock()
        with inside(netns):
            self.nl = NetlinkSocket()
            self.kernel = RouteKernel()
            self.names = {socket.if_nametoindex(f"vxlan{n}"): f"vxlan{n}" for n in VNIS}

    def close(self) -> None:
        self.nl.close()
        self.kernel.close()

    def fdb_list(self) -> list[FdbKey]:
        """Every FDB remote (an entry with a dst) of the VXLAN devices, duplicates kept."""
        out = []
        with self._lock:
            messages = self.nl.dump(lambda seq: dump_request(RTM_GETNEIGH, seq))
        for msg in messages:
            rec = parse_fdb(msg)
            if rec is not None and rec.dst is not None and rec.ifindex in self.names:
                out.append((self.names[rec.ifindex], ":".join(f"{b:02x}" for b in rec.mac), str(rec.dst)))
        return out

    def fdb(self) -> set[FdbKey]:
        return set(self.fdb_list())

    def flood(self) -> set[tuple[str, str]]:
        return {(dev, dst) for dev, mac, dst in self.fdb() if mac == ZERO_MAC}

    def mdb(self) -> dict[MdbKey, int]:
        """VXLAN MDB remotes -> protocol."""
        out = {}
        with self._lock:
            records = self.kernel.dump_mdb()
        for r in records:
            if r.dst is not None and r.port == r.device and r.device in self.names:
                source = "*" if r.source is None else str(r.source)
                out[(self.names[r.device], source, str(r.group), str(r.dst))] = r.protocol
        return out

    def add_operator_mdb(self, entry: MdbKey, protocol: int = 4) -> None:
        device, _source, group, dst = entry
        index = next(i for i, name in self.names.items() if name == device)
        with self._lock:
            seq = self.nl.next_seq()
            message = mdb_message(RTM_NEWMDB, seq, index, None, ip_address(group), ip_address(dst), protocol)
            ack = self.nl.transact([(seq, message)]).get(seq)
        assert ack is not None and ack.errno == 0, ack


class Sampler:
    """Calls ``fn`` in a thread every ``interval`` seconds and keeps (time, value) samples."""

    def __init__(self, fn: Callable[[], T], interval: float = 0.02) -> None:
        self.samples: list[tuple[float, Any]] = []
        self._fn = fn
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._fn()))
            self._stop.wait(self._interval)  # the sampling period, not synchronisation

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --------------------------------------------------------------------------- the fabric

C = TypeVar("C", set[FdbKey], dict[MdbKey, int])


def _items(value: set[FdbKey] | dict[MdbKey, int]) -> set[Any]:
    return set(value.items()) if isinstance(value, dict) else set(value)


def wait_equal(get: Callable[[], C], want: Callable[[], C], timeout: float, what: str) -> C:
    """Poll until ``get() == want()``; on failure name what is missing and what is extra."""
    last: dict[str, C] = {}

    def equal() -> bool:
        last["got"], last["want"] = get(), want()
        return last["got"] == last["want"]

    try:
        poll(equal, timeout, 0.1, what)
    except AssertionError as exc:
        got, wanted = _items(last["got"]), _items(last["want"])
        missing, extra = sorted(wanted - got), sorted(got - wanted)
        raise AssertionError(
            f"{exc}: {len(missing)} missing, e.g. {missing[:5]}; {len(extra)} extra, e.g. {extra[:5]}"
        ) from None
    return last["got"]


@dataclass
class FaultFabric(Fabric):
    """The leaf (``leaf1`` for the inherited Fabric helpers), its injector and FRR peers."""

    injector: Injector | None = None
    frr: Frr | None = None
    kernel: KernelView | None = None
    loop: LoopThread | None = None
    agent_extra: dict[str, Any] = field(default_factory=dict)

    def config(self, n: int, **extra: object) -> dict[str, object]:
        cfg: dict[str, object] = {
            "router_id": LEAF,
            "local_vtep": LEAF,
            "asn": 65000,
            "neighbors": [
                {"address": INJ, "asn": 65000, "local_address": LEAF, "hold_time": 9},
                {"address": FRR, "asn": 65000, "local_address": LEAF, "hold_time": 3, "send_smet": False},
            ],
            "vnis": [{"vni": v} for v in VNIS],
            "limits": {"max_groups_per_vni": GROUP_CAP},
            "replication": {"startup_hold": STARTUP_HOLD},
            "mqtt": {"host": "127.0.0.1", "retry_initial": 0.2, "retry_max": 1, "queue_size": 20000},
            "workdir": str(self.workdir / "leaf1"),
            "log_level": "info",
        }
        cfg.update(extra)
        return cfg

    @property
    def leaf_ns(self) -> str:
        return self.ns["leaf1"]

    @property
    def agent(self) -> Any:
        return self.agents[1]

    def exabgp_pid(self) -> int:
        return int((self.workdir / "leaf1" / "exabgp.pid").read_text())

    def full_log(self) -> str:
        return (self.workdir / "leaf1.log").read_text(errors="replace")

    def start_agent(self, **extra: Any) -> None:
        self.agent_extra = extra
        self.start(1, **extra)

    def stop_agent(self) -> None:
        proc = self.agents.get(1)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

    def peer_state(self, peer: str) -> str | None:
        rows = self.try_show(1, "peers")
        if not isinstance(rows, list):
            return None
        return next((str(r["state"]) for r in rows if r["peer"] == peer), None)

    def peers_up(self) -> bool:
        rows = self.try_show(1, "peers")
        return isinstance(rows, list) and all(r["state"] == "up" for r in rows)

    def rows(self, view: str) -> list[dict[str, Any]]:
        """``evpnctl show VIEW --json`` of a list view (vnis, flood, groups, peers)."""
        out = self.show(1, view)
        assert isinstance(out, list)
        return out

    def summary(self) -> dict[str, Any]:
        out = self.show(1, "summary")
        assert isinstance(out, dict)
        return out

    def frr_config(self, *lines: str) -> None:
        """Configuration commands under FRR's ``router bgp 65000``."""
        assert self.frr is not None
        words = " ".join(f"-c '{line}'" for line in ("configure terminal", "router bgp 65000", *lines))
        sh(f"ip netns exec {self.frr.netns} vtysh --vty_socket {self.frr.workdir} {words}")

    def restart_bgpd(self) -> None:
        """Start FRR's bgpd again (after it was killed), with the same files as Frr.start."""
        assert self.frr is not None
        frr = self.frr
        pidfile = frr.workdir / "bgpd.pid"
        old = pidfile.read_text().strip()
        sh(
            f"ip netns exec {frr.netns} /usr/lib/frr/bgpd -d -u root -g frrvty -z {frr.workdir}/zserv.api "
            f"--vty_socket {frr.workdir} -A 127.0.0.1 -f {frr.workdir}/bgpd.conf -i {pidfile} -p 179"
        )
        poll(lambda: pidfile.read_text().strip() not in ("", old), 10, what="bgpd's new pid file")
        self.lab.pids.append(int(pidfile.read_text()))

    def frr_up(self) -> bool:
        assert self.frr is not None
        try:
            summary = json.loads(self.frr.vtysh("show bgp l2vpn evpn summary json") or "{}")
        except ValueError:
            return False
        return bool(summary.get("peers", {}).get(LEAF, {}).get("state") == "Established")

    # ------------------------------------------------------------ what the kernel must hold

    def desired_fdb(self, frr: bool = True) -> set[FdbKey]:
        """The injector's IMETs, FRR's VTEP in VNI 1 (when its session is up), and the
        operator's entries: nothing else."""
        assert self.injector is not None
        want = {(f"vxlan{vni}", ZERO_MAC, vtep(t)) for vni, t in self.injector.imets}
        if frr:
            want.add(("vxlan1", ZERO_MAC, FRR))
        return want | OPERATOR_FDB

    def desired_mdb(self, frr: bool = True) -> dict[MdbKey, int]:
        """VXLAN MDB -> protocol: a group entry per injected SMET (its VTEP, plus FRR in VNI 1:
        FRR claims no IGMP/MLD proxy, so it gets all multicast there), per VNI a catch-all per
        group family listing the VTEPs that want all multicast, or the unspecified address (a
        drop) when none does, left out when it would list exactly the flood list (the VXLAN
        driver then floods by the FDB to the same VTEPs), and the other daemon's entry."""
        assert self.injector is not None
        want: dict[MdbKey, int] = {OPERATOR_MDB: 4}
        for vni in VNIS:
            every = {FRR} if frr and vni == 1 else set()
            flood = {vtep(t) for v, t in self.injector.imets if v == vni} | every
            if every == flood:
                continue
            for any_group in (ANY4, ANY6):
                for dst in every or {ANY4}:
                    want[(f"vxlan{vni}", "*", any_group, dst)] = AGENT_PROTOCOL
        for vni, t, group in self.injector.smets:
            for dst in {vtep(t)} | ({FRR} if frr and vni == 1 else set()):
                want[(f"vxlan{vni}", "*", group, dst)] = AGENT_PROTOCOL
        return want

    def wait_fdb(self, want: Callable[[], set[FdbKey]], timeout: float, what: str) -> set[FdbKey]:
        """Poll until the VXLAN FDB equals ``want()`` exactly; on failure say what differs."""
        assert self.kernel is not None
        return wait_equal(self.kernel.fdb, want, timeout, what)

    def wait_mdb(self, want: Callable[[], dict[MdbKey, int]], timeout: float, what: str) -> dict[MdbKey, int]:
        assert self.kernel is not None
        return wait_equal(self.kernel.mdb, want, timeout, what)

    def reset_routes(self) -> None:
        """A fresh injector announcing nothing: the leaf forgets every injected route."""
        assert self.injector is not None
        self.injector.kill()
        self.injector.start()
        poll(lambda: self.injector is not None and self.injector.up, 30, what="injector session")
        self.wait_fdb(self.desired_fdb, 30, "the leaf without injected routes")


def build(lab: Lab, workdir: Path) -> FaultFabric:
    ns = {"leaf1": lab.ns("leaf"), "inj": lab.ns("inj"), "frr": lab.ns("frr")}
    leaf = ns["leaf1"]
    lines = [f"addr add {LEAF}/32 dev lo"]
    for n in VNIS:
        lines += [
            f"link add br{n} type bridge mcast_snooping 1",
            f"link add vxlan{n} type vxlan id {n} local {LEAF} dstport 4789 nolearning",
            f"link set vxlan{n} master br{n}",
            f"link set vxlan{n} up",
            f"link set br{n} up",
        ]
    batch = workdir / "leaf.batch"
    batch.write_text("\n".join(lines) + "\n")
    sh(f"ip -n {leaf} -batch {batch}")
    for peer, addr, net in ((ns["inj"], INJ, 2), (ns["frr"], FRR, 3)):
        lab.veth(leaf, f"to{net}", f"10.1.{net}.1/24", peer, "eth0", f"10.1.{net}.2/24")
        sh(f"ip -n {peer} addr add {addr}/32 dev lo")
        sh(f"ip -n {peer} route add {LEAF}/32 via 10.1.{net}.1")
        sh(f"ip -n {leaf} route add {addr}/32 via 10.1.{net}.2")
    frr = ns["frr"]
    sh(f"ip -n {frr} link add br1 type bridge")
    sh(f"ip -n {frr} link add vxlan1 type vxlan id 1 local {FRR} dstport 4789 nolearning")
    sh(f"ip -n {frr} link set vxlan1 master br1")
    sh(f"ip -n {frr} link set br1 up")
    sh(f"ip -n {frr} link set vxlan1 up")
    return FaultFabric(lab, ns, workdir)


@contextlib.contextmanager
def fault_fabric(workdir: Path) -> Iterator[FaultFabric]:
    """The whole fabric up (sessions established, operator entries in place); everything it
    started (namespaces, agent, ExaBGP, FRR, Mosquitto, threads) goes away however it ends."""
    lab = Lab(workdir)
    fab: FaultFabric | None = None
    try:
        fab = build(lab, workdir)
        fab.loop = LoopThread()
        (workdir / "broker").mkdir()
        fab.broker = Broker(lab, fab.leaf_ns, workdir / "broker")
        fab.broker.start()
        for dev, mac, dst in sorted(OPERATOR_FDB):
            verb = "append" if mac == ZERO_MAC else "add"
            sh(f"bridge -n {fab.leaf_ns} fdb {verb} {mac} dev {dev} dst {dst} self permanent")
        fab.kernel = KernelView(fab.leaf_ns)
        fab.kernel.add_operator_mdb(OPERATOR_MDB)
        fab.frr = Frr(lab, fab.ns["frr"], workdir / "frr")
        fab.frr.start(FRR_CONF)
        fab.injector = Injector(lab, fab.ns["inj"], workdir / "injector", fab.loop)
        fab.injector.start()
        fab.start_agent()
        poll(fab.peers_up, 60, what="the leaf's sessions with the injector and FRR")
        fab.wait_fdb(fab.desired_fdb, 30, "FRR's VTEP and the operator entries only")
        yield fab
    finally:
        if fab is not None:
            with contextlib.suppress(Exception):
                fab.stop_agent()
            if fab.injector is not None:
                with contextlib.suppress(Exception):
                    fab.injector.kill()
            if fab.kernel is not None:
                fab.kernel.close()
            if fab.loop is not None:
                fab.loop.close()
        lab.close()
