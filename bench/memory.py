"""Memory: resident size of the agent holding 100,000 (peer, route) paths; target under 300 MB.

Runs as root, in about a minute. The paths are 100,000 distinct facts: 4 peers x 50 VNIs x 100
VTEPs of each peer's own x (1 IMET + 4 SMET (*,G)), each VTEP joining 4 of 400 groups per VNI so
that every group has one receiver behind each peer: 400 VTEPs and 400 groups per VNI (within the
agent's default limits, 4096 and 8192). Three measurements, in MB of 2^20 bytes:

- ``evpn-agent run`` loaded over BGP, which the verdict is about. Namespace ``snd`` holds 4 ExaBGP
  speakers with the project's launcher (``bench.common.Sender``) at 10.3.0.1, .3, .4 and .5,
  ``dmn`` the agent at 10.3.0.2 with the 50 ``brN``/``vxlanN``, one veth between them. Each
  sender is passive and is given its 25,000 routes as ``announce evpn`` commands before the
  agent starts (IMETs with PMSI ingress replication and the Multicast Flags IGMP proxy + MLD
  proxy, SMETs (*,G) IGMPv2), so they wait in its RIB; the agent then starts, its ExaBGP
  connects to all four and the routes arrive as from route reflectors after a restart. The
  data of ``evpnctl show summary`` (``agent.control.ask``) is polled until ``paths`` is 100,000
  and a replication pass after that has left the kernel holding every entry (checked with a
  netlink dump: 20,000 flood entries and 80,100 MDB remotes, i.e. 80,000 group remotes and per
  VNI the IPv4 and IPv6 catch-alls to the unspecified address, as every VTEP claims both
  proxies). Then VmRSS and VmHWM of the agent process, its ExaBGP child (``bgp.launcher``) and
  the relay (``bgp.relay``) from /proc; the agent's and ExaBGP's VmRSS are also sampled at every
  poll (the timeline). Timed from the agent's start: the sessions up (the senders' ``state
  up``), all paths in the store (the first poll that shows them), the kernel programmed (the
  first poll after that whose ``replication`` shows a pass ended since the previous one, when
  the dump that follows finds every entry); routes/s = 100,000 / (all paths - first session up)
  is the throughput through real ExaBGP, which hands the UPDATEs over undecoded (``receive {
  packets; }``: the agent decodes them) and so takes 10,000+ routes/s where it used to take
  about 5,900. Checked: per VNI, the kernel's flood entries equal the store's (``show vnis``),
  and for a sample of VNIs the kernel's flood list and group remotes are exactly the routes
  sent. Nothing is rejected, no pass fails. The daemon's peak depends on how its paced passes
  fall (the last one's scope): it varies by some tens of MB from run to run. Preloading the
  senders is the slow part of the run (about 20 s: each sender's ExaBGP takes some 1,200
  commands/s through the launcher on a shared 2-core machine, and holds about 110 MB with its
  25,000 routes; the agent's ExaBGP, which decodes nothing it receives, does not grow).
- The breakdown, in stand-in processes that run no loop: the same layout as ExaBGP 5.0.15 JSON
  UPDATE lines (one route per UPDATE), made from the golden capture's lines the way
  ``bench/bgp_intake.py`` makes them (peers 10.255.0.1-4, VTEPs 10.1-4.0.x, the capture's
  Multicast Flags: IGMP proxy, no MLD proxy), piped into a fresh Python process and never held
  in it. Measured there from /proc/self/status (VmRSS, VmHWM):

  - ``store`` process: the interpreter, then after importing ``bgp.exabgp_json``,
    ``agent.intake`` and ``agent.store``, then after the lines went through ``parse_line`` and
    ``Intake.apply`` into the ``Store``: the store's own cost and its bytes per path.
  - ``agent`` process, as ``evpn-agent run`` is before its loop: ``import agent.daemon``, an
    ``Agent`` built from a config (50 VNIs, 4 neighbors; its reconciler, intake and store), the
    lines through the daemon's own handler (``agent.bgp`` hands each line to ``parse_line``, the
    intake and ``Agent._changed``), then one replication pass as the daemon runs it (a
    ``StoreSnapshot``, the reconciler) against 50 real VXLAN devices in a namespace: 20,000
    flood entries and 80,050 MDB remotes written (80,000 group remotes and each VNI's IPv4
    catch-all to the unspecified address; the IPv6 catch-all would list exactly the flood list,
    as no VTEP claims the MLD proxy, so the VXLAN driver's fallback to the FDB serves it and it
    is not written). VmHWM then includes the pass's peak (one pass over every VNI and entry).
- ``evpn-agent run`` idle (no BGP peer answers, so no paths), in a namespace of its own with
  the same 50 devices, once its first replication pass is done: the daemon's fixed cost, so
  that (loaded - idle) / 100,000 is the real daemon's bytes per path.

PASS when the loaded ``evpn-agent run`` process's peak (VmHWM) is under 300 MB; its ExaBGP's is
reported beside it. Every process started is stopped and the namespaces are removed in a
``finally``, even on failure. Last line: JSON result.

Module-level imports are the standard library only: the measured processes import this module
to run ``child``, and nothing else may be counted before their own imports.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipaddress import IPv4Address

    from agent.config import AgentConfig
    from bench.common import Lab, Sender
    from replication.kernel import RouteKernel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: ``bench.common`` and the agent's packages
PEERS, VNIS, VTEPS, GROUPS, GROUPS_PER_VTEP = 4, 50, 100, 400, 4
FIRST_VNI = 100
ASN = 65000
LOCAL = "10.0.0.2"  # the golden capture's local address: the agent's own VTEP
PATHS = PEERS * VNIS * VTEPS * (1 + GROUPS_PER_VTEP)
TARGET_MB = 300.0
AGENT_START_S = 30.0  # deadline for ``evpn-agent run`` to answer with a finished first pass
FLOOD = PEERS * VNIS * VTEPS
# Every group has one receiver per peer. Stand-in: per VNI the 0.0.0.0 catch-all lists the
# unspecified address (every VTEP claims the IGMP proxy); the :: one would list exactly the flood
# list (none claims the MLD proxy), so it is left to the FDB and not written.
MDB = VNIS * GROUPS * PEERS + VNIS
# The loaded daemon: every VTEP claims both proxies, so both catch-alls list the unspecified address.
DAEMON_MDB = VNIS * GROUPS * PEERS + 2 * VNIS
DAEMON_ADDR = "10.3.0.2"  # the loaded agent's router id, VTEP and BGP address
SENDER_ADDRS = ("10.3.0.1", "10.3.0.3", "10.3.0.4", "10.3.0.5")  # one Sender per peer
SENDER_START_S = 30.0  # deadline for the senders' ExaBGP to start and take every command
LOAD_S = 60.0  # deadline from the agent's start to every path in the store and the kernel
POLL_S = 0.1  # summary poll interval (each poll is bounded by the deadline)
SAMPLE_VNIS = (FIRST_VNI, FIRST_VNI + VNIS // 2, FIRST_VNI + VNIS - 1)  # checked entry by entry
TIMELINE_POINTS = 80  # at most this many timeline samples in the JSON result


# --------------------------------------------------------------------------- measuring


def status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, MB."""
    return proc_status(os.getpid())


def proc_status(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def agent_config(workdir: Path) -> AgentConfig:
    """The leaf's config: the 50 VNIs (bridges brN, devices vxlanN) and the 4 peers."""
    from agent.config import parse_config

    return parse_config(
        {
            "router_id": LOCAL,
            "local_vtep": LOCAL,
            "asn": 65000,
            "neighbors": [{"address": f"10.255.0.{1 + p}", "asn": 65000} for p in range(PEERS)],
            "vnis": [{"vni": FIRST_VNI + v} for v in range(VNIS)],
            "workdir": str(workdir),
        }
    )


def child(mode: str, workdir: str) -> None:
    """The measured process (``mode`` store or agent): reads ExaBGP lines from stdin until EOF,
    prints its figures as one JSON line."""
    out: dict[str, Any] = {"mode": mode, "interpreter": status()}
    began = time.perf_counter()
    if mode == "store":
        from ipaddress import IPv4Address

        from agent.intake import AUTO, ImportPolicy, Intake
        from agent.store import Store
        from bgp.exabgp_json import parse_line

        out["imports"] = status()
        store = Store(own_vteps=[IPv4Address(LOCAL)])
        intake = Intake(store, ImportPolicy({FIRST_VNI + v: AUTO for v in range(VNIS)}))
        out["built"] = status()
        began = time.perf_counter()
        for line in sys.stdin:
            for event in parse_line(line.rstrip("\n")):
                intake.apply(event, 0.0)
        counters = dict(intake.counters)
    else:
        from agent.daemon import Agent
        from replication.model import StoreSnapshot

        out["imports"] = status()
        config = agent_config(Path(workdir))
        agent = Agent(config)
        out["built"] = status()
        store = agent.store
        handle = agent.bgp._handle  # the daemon's own line handler (BgpSide.run calls it)
        began = time.perf_counter()
        for line in sys.stdin:
            handle(line.rstrip("\n"))
        counters = dict(agent.intake.counters)
    out["load_s"] = time.perf_counter() - began
    gc.collect()
    out["loaded"] = status()
    out["paths"] = store.path_count()
    out["counters"] = counters
    out["rejected"] = dict(store.counters)
    if mode == "agent":
        vnis = [p.vni for p in config.vni_ports()]
        began = time.perf_counter()
        report = agent.reconciler.reconcile(StoreSnapshot.of(store, vnis))
        out["pass_s"] = time.perf_counter() - began
        out["pass"] = report.event()
        gc.collect()
        out["after_pass"] = status()
    out["end"] = status()
    print(json.dumps(out))


# --------------------------------------------------------------------------- the input


def peer_lines(peer: int) -> Iterator[str]:
    """One peer's 25,000 UPDATE lines: ``bench/bgp_intake.py``'s substitutions on the golden
    capture's IMET and SMET lines, with the peer, its VTEPs and the groups as parameters
    (``bgp_intake.make_lines`` has them fixed: one peer, 50 x 200)."""
    from ipaddress import IPv4Address

    from bench.bgp_intake import templates

    imet_t, smet_t = templates()
    old_imet_raw = "031100010A000001006400000000200A000001"
    old_smet_raw = "061800010A0000010064000000000020EF010101200A00000102"
    address = f'"peer": "10.255.0.{1 + peer}"'
    imet_t = imet_t.replace('"peer": "10.0.0.1"', address)
    smet_t = smet_t.replace('"peer": "10.0.0.1"', address)
    for v in range(VNIS):
        vni = FIRST_VNI + v
        rt_value = str(
            int.from_bytes(bytes([0, 2]) + (65000).to_bytes(2, "big") + vni.to_bytes(4, "big"), "big")
        )
        imet_v = imet_t.replace('"target:65000:100"', f'"target:65000:{vni}"').replace(
            "842122827661412", rt_value
        )
        smet_v = smet_t.replace('"target:65000:100"', f'"target:65000:{vni}"').replace(
            "842122827661412", rt_value
        )
        for t in range(VTEPS):
            vtep = IPv4Address(f"10.{1 + peer}.0.{1 + t}")
            vtep_hex = vtep.packed.hex().upper()
            rd = vtep_hex + f"{vni:04X}"
            line = imet_v.replace(old_imet_raw, f"03110001{rd}00000000" + "20" + vtep_hex)
            yield line.replace("(100):10.0.0.1", f"({vni}):{vtep}")
            for k in range(GROUPS_PER_VTEP):
                g = (GROUPS_PER_VTEP * t + k) % GROUPS
                group = IPv4Address(f"239.1.{g // 250}.{1 + g % 250}")
                raw = (
                    f"06180001{rd}00000000"
                    + "00"
                    + "20"
                    + group.packed.hex().upper()
                    + "20"
                    + vtep_hex
                    + "02"
                )
                yield smet_v.replace(old_smet_raw, raw)


def measured(mode: str, workdir: Path, tmp: Path) -> dict[str, Any]:
    """Run ``child(mode)`` in a fresh interpreter in the current namespace, piping every peer's
    lines into it; its JSON result."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.memory import child; "
        f"child({mode!r}, {str(workdir)!r})"
    )
    errors = tmp / f"{mode}.stderr"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdin is not None
        lines = 0
        for peer in range(PEERS):
            for line in peer_lines(peer):
                proc.stdin.write(line + "\n")
                lines += 1
        stdout, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} process failed ({proc.returncode}):\n{errors.read_text()[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["lines"] = lines
    return result


# --------------------------------------------------------------------------- evpn-agent run, idle


def idle_agent(tmp: Path) -> dict[str, Any]:
    """``evpn-agent run`` in the current namespace until its first replication pass is done:
    its RSS and its children's (ExaBGP)."""
    import yaml

    from bench.common import descendants

    workdir = tmp / "evpn-agent"
    config = agent_config(workdir).model_dump(mode="json", by_alias=True)
    path = tmp / "leaf.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "evpn-agent.log"
    sock = workdir / "control.sock"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "run", "--config", str(path)],
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + AGENT_START_S
        state = None
        while time.monotonic() < deadline and proc.poll() is None:
            state = ask_summary(sock) if sock.exists() else None
            if state is not None and (state.get("replication") or {}).get("mode"):
                break
            time.sleep(0.1)  # poll interval; the deadline bounds the wait
        else:
            raise RuntimeError(f"evpn-agent run did not come up:\n{log.read_text()[-3000:]}")
        own = proc_status(proc.pid)
        kids = [proc_status(pid) | {"cmd": cmdline(pid)} for pid in descendants(proc.pid)]
        return {"agent": own, "children": kids, "uptime_s": state["uptime"] if state else None}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmdline(pid: int) -> str:
    """What a child runs: the module after ``-m`` (ExaBGP is ``bgp.launcher``), else argv[0]."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
        if "-m" in argv[:-1]:
            return argv[argv.index("-m") + 1]
        return argv[0] if argv else "?"
    return "?"


# --------------------------------------------------------------------------- evpn-agent run, loaded


def daemon_vtep(peer: int, index: int) -> IPv4Address:
    """The ``index``-th VTEP behind sender ``peer`` (10.11-14.0.x: clear of the 10.3.0.0/24 link)."""
    from ipaddress import IPv4Address

    return IPv4Address(f"10.{11 + peer}.0.{1 + index}")


def group_address(g: int) -> str:
    return f"239.1.{g // 250}.{1 + g % 250}"


def joined(index: int) -> list[int]:
    """The groups the ``index``-th VTEP of every peer joins: group g's receiver is VTEP g // 4."""
    return [(GROUPS_PER_VTEP * index + k) % GROUPS for k in range(GROUPS_PER_VTEP)]


def sender_commands(peer: int, next_hop: str) -> list[str]:
    """One sender's 25,000 launcher commands (bgp/commands.py grammar), VNI by VNI: per VTEP its
    IMET, then its 4 SMETs."""
    out = []
    for vni in range(FIRST_VNI, FIRST_VNI + VNIS):
        for t in range(VTEPS):
            vtep = daemon_vtep(peer, t)
            key = f"rd {vtep}:{vni} etag 0"
            out.append(
                f"announce evpn imet {key} originator {vtep} next-hop {next_hop}"
                f" pmsi ingress-replication {vni} {vtep} rt {ASN}:{vni} encap vxlan"
                " mcast-flags igmp-proxy+mld-proxy"
            )
            for g in joined(t):
                out.append(
                    f"announce evpn smet {key} source * group {group_address(g)} originator {vtep}"
                    f" next-hop {next_hop} flags v2 rt {ASN}:{vni}"
                )
    return out


def daemon_config(workdir: Path) -> dict[str, Any]:
    """The loaded leaf's config (YAML-ready): the 50 VNIs and the 4 senders as neighbors."""
    return {
        "router_id": DAEMON_ADDR,
        "local_vtep": DAEMON_ADDR,
        "asn": ASN,
        "neighbors": [{"address": a, "asn": ASN, "local_address": DAEMON_ADDR} for a in SENDER_ADDRS],
        "vnis": [{"vni": FIRST_VNI + v} for v in range(VNIS)],
        "workdir": str(workdir),
    }


def ask_summary(sock: Path, request: str = "summary") -> Any:
    """A view from the agent's control socket (what ``evpnctl show VIEW --json`` prints); None
    while the agent does not answer."""
    from agent.control import ControlError, ask

    try:
        return ask(sock, {"show": request}, timeout=5.0)
    except ControlError:
        return None


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss(pid: int) -> float:
    """VmRSS in MB, rounded; 0 if the process is gone."""
    with contextlib.suppress(OSError, KeyError):
        return round(proc_status(pid)["VmRSS"], 1)
    return 0.0


def tree(pid: int) -> dict[str, int]:
    """The agent's process tree by role: ``agent`` itself, ``exabgp`` (bgp.launcher) and
    ``relay`` (bgp.relay), the first of each."""
    from bench.common import descendants

    out = {"agent": pid}
    for child_pid in descendants(pid):
        role = {"bgp.launcher": "exabgp", "bgp.relay": "relay"}.get(cmdline(child_pid))
        if role is not None and role not in out:
            out[role] = child_pid
    return out


def kernel_state(kernel: RouteKernel, devices: dict[int, int]) -> dict[int, dict[str, Any]]:
    """Per VNI (``devices``: VNI -> ifindex of vxlanN) the kernel's flood remotes (all-zero MAC)
    and MDB remotes as (group, remote) pairs."""
    vni_of = {ifindex: vni for vni, ifindex in devices.items()}
    out: dict[int, dict[str, Any]] = {vni: {"flood": set(), "mdb": set()} for vni in devices}
    for vni, ifindex in devices.items():
        for f in kernel.dump_fdb(ifindex):
            if f.dst is not None and f.mac == b"\x00" * 6:
                out[vni]["flood"].add(str(f.dst))
    for r in kernel.dump_mdb(vni_of.keys()):
        owner = vni_of.get(r.device)
        if owner is not None and r.dst is not None and r.port == r.device:
            out[owner]["mdb"].add((str(r.group), str(r.dst)))
    return out


def kernel_counts(state: dict[int, dict[str, Any]]) -> tuple[int, int]:
    return sum(len(s["flood"]) for s in state.values()), sum(len(s["mdb"]) for s in state.values())


def expected_vni(vni: int) -> dict[str, set[Any]]:
    """What the kernel must hold for one VNI after the routes sent: every sender's VTEPs in the
    flood list, group g's remotes the VTEP g // 4 of every sender, and both catch-alls to the
    unspecified address."""
    flood = {str(daemon_vtep(p, t)) for p in range(PEERS) for t in range(VTEPS)}
    mdb = {
        (group_address(g), str(daemon_vtep(p, t)))
        for p in range(PEERS)
        for t in range(VTEPS)
        for g in joined(t)
    }
    mdb |= {("0.0.0.0", "0.0.0.0"), ("::", "0.0.0.0")}
    return {"flood": flood, "mdb": mdb}


class Loaded:
    """One loaded run: the senders, the agent, the poll and the figures."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.workdir = tmp / "daemon"
        self.sock = self.workdir / "control.sock"
        self.senders: list[Sender] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.kernel: RouteKernel | None = None
        self.devices: dict[int, int] = {}
        self.out: dict[str, Any] = {}
        self.timeline: list[list[float]] = []

    def build(self) -> str:
        """The sender and agent namespaces, one veth between them; the agent's namespace."""
        from bench.common import build_vnis, sh

        snd, dmn = self.lab.add("snd"), self.lab.add("dmn")
        sh(f"ip link add eiabsnd netns {snd} type veth peer name eth0 netns {dmn}".split())
        batch = [f"addr add {a}/24 dev eiabsnd" for a in SENDER_ADDRS]
        batch += ["link set eiabsnd up", "link set lo up"]
        sh(["ip", "-n", snd, "-batch", "-"], "\n".join(batch) + "\n")
        sh(["ip", "-n", dmn, "addr", "add", f"{DAEMON_ADDR}/24", "dev", "eth0"])
        sh(["ip", "-n", dmn, "link", "set", "eth0", "up"])
        build_vnis(dmn, range(FIRST_VNI, FIRST_VNI + VNIS), DAEMON_ADDR, loopback=False)
        return dmn

    async def run(self) -> dict[str, Any]:
        import asyncio
        import socket

        import yaml

        from bench.common import Sender, inside
        from replication.kernel import RouteKernel

        dmn = self.build()
        snd = self.lab.name("snd")
        self.senders = [
            Sender(snd, address, DAEMON_ADDR, ASN, self.tmp / f"sender{p}")
            for p, address in enumerate(SENDER_ADDRS)
        ]
        began = time.monotonic()
        started = await asyncio.gather(*(s.start() for s in self.senders), return_exceptions=True)
        for result in started:
            if isinstance(result, BaseException):
                raise RuntimeError(f"a sender did not start: {result}")
        commands = [sender_commands(p, s.local) for p, s in enumerate(self.senders)]
        await asyncio.wait_for(
            asyncio.gather(*(s.send(c) for s, c in zip(self.senders, commands, strict=True))),
            max(1.0, began + SENDER_START_S - time.monotonic()),
        )
        self.out["preload_s"] = time.monotonic() - began
        self.out["sender_mb"] = [rss(s.process.pid) for s in self.senders if s.process.pid is not None]
        del commands

        path = self.tmp / "daemon.yaml"
        path.write_text(yaml.safe_dump(daemon_config(self.workdir)))
        log = self.tmp / "daemon.log"
        with inside(dmn):
            self.kernel = RouteKernel()  # its netlink socket stays in the agent's namespace
            self.devices = {
                vni: socket.if_nametoindex(f"vxlan{vni}") for vni in range(FIRST_VNI, FIRST_VNI + VNIS)
            }
            with log.open("w") as out:
                t0 = time.monotonic()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "agent.main", "run", "--config", str(path)],
                    stdout=out,
                    stderr=out,
                    stdin=subprocess.DEVNULL,
                    cwd=ROOT,
                )
        await self.poll(t0, log)
        return self.out

    async def poll(self, t0: float, log: Path) -> None:
        """Until every path is in the store and the kernel holds every entry: the times, the
        memory timeline, then the final memory and the checks."""
        import asyncio

        assert self.proc is not None and self.kernel is not None
        kernel = self.kernel
        deadline = t0 + LOAD_S
        pids: dict[str, int] = {}
        state: dict[str, Any] | None = None
        t_answer = t_paths = t_kernel = None
        pass_seen: Any = None
        while t_kernel is None:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"evpn-agent run exited ({self.proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"evpn-agent run: not loaded {LOAD_S:.0f} s after its start; last summary {state};"
                    f" log tail:\n{log.read_text()[-2000:]}"
                )
            state = await asyncio.to_thread(ask_summary, self.sock)
            now = time.monotonic()
            if len(pids) < 3:  # the agent, then its ExaBGP, then ExaBGP's relay
                pids = tree(self.proc.pid)
            paths = state["paths"] if state else 0
            self.timeline.append(
                [
                    round(now - t0, 2),
                    paths,
                    rss(pids["agent"]),
                    rss(pids["exabgp"]) if "exabgp" in pids else 0.0,
                ]
            )
            if state is not None and t_answer is None:
                t_answer = now
            replication = state.get("replication") if state is not None else pass_seen
            if state is not None and paths == PATHS:
                if t_paths is None:
                    t_paths = now
                    self.out["cpu_at_paths_s"] = {r: cpu_s(p) for r, p in pids.items()}
                if replication != pass_seen:
                    # A pass ended since the last poll (its report changed). It may have begun
                    # before the last path came: the kernel says whether it is complete; if not,
                    # the next pass to end is checked. The time is this poll's: the pass ended
                    # before it, and the dump only confirms.
                    counts = kernel_counts(await asyncio.to_thread(kernel_state, kernel, self.devices))
                    self.out["kernel_checks"] = self.out.get("kernel_checks", 0) + 1
                    if counts == (FLOOD, DAEMON_MDB):
                        t_kernel = now
                        break
            pass_seen = replication
            await asyncio.sleep(POLL_S)  # the poll interval; the deadline above bounds the loop
        assert t_answer is not None and t_paths is not None and state is not None
        # The figures first: the checks below make the agent build larger views.
        self.out["memory"] = {r: proc_status(p) for r, p in pids.items()}
        self.out["cpu_s"] = {r: cpu_s(p) for r, p in pids.items()}
        ups = [s.up_at for s in self.senders]
        if any(u is None for u in ups):
            raise RuntimeError("every path arrived but a sender never saw its session up")
        up_times = [u - t0 for u in ups if u is not None]
        self.out.update(
            answer_s=t_answer - t0,
            first_up_s=min(up_times),
            all_up_s=max(up_times),
            paths_s=t_paths - t0,
            kernel_s=t_kernel - t0,
            summary=state,
            timeline=self.timeline,
        )
        self.out["checks"] = await asyncio.to_thread(self.verify, state)

    def verify(self, state: dict[str, Any]) -> dict[str, Any]:
        """Store and kernel agree, and the kernel is what was sent; raises otherwise."""
        assert self.kernel is not None
        problems = []
        rejected = state.get("rejected") or {}
        replication = state.get("replication") or {}
        if rejected:
            problems.append(f"rejected routes: {rejected}")
        if replication.get("failed") or replication.get("errors"):
            problems.append(f"replication pass: {replication}")
        if state["flood_entries"] != FLOOD or state["remote_groups"] != VNIS * GROUPS:
            problems.append(
                f"store: {state['flood_entries']} flood entries, {state['remote_groups']} remote groups"
            )
        kernel = kernel_state(self.kernel, self.devices)
        vnis = ask_summary(self.sock, "vnis") or []
        store_flood = {int(v["vni"]): int(v["flood"]) for v in vnis}
        differing = {
            vni: (store_flood.get(vni), len(kernel[vni]["flood"]))
            for vni in self.devices
            if store_flood.get(vni) != len(kernel[vni]["flood"])
        }
        if differing:
            problems.append(f"flood entries (store, kernel) differ on VNIs {differing}")
        for vni in SAMPLE_VNIS:
            want = expected_vni(vni)
            for what in ("flood", "mdb"):
                if kernel[vni][what] != want[what]:
                    missing, extra = want[what] - kernel[vni][what], kernel[vni][what] - want[what]
                    problems.append(
                        f"vni {vni} {what}: {len(missing)} missing (e.g. {sorted(missing)[:2]}),"
                        f" {len(extra)} extra (e.g. {sorted(extra)[:2]})"
                    )
        if problems:
            raise RuntimeError("loaded evpn-agent run: " + "; ".join(problems))
        fdb, mdb = kernel_counts(kernel)
        return {
            "vnis_store_eq_kernel": len(store_flood),
            "sample_vnis": list(SAMPLE_VNIS),
            "kernel_fdb": fdb,
            "kernel_mdb": mdb,
        }

    async def stop(self) -> None:
        """Stop the agent (SIGTERM, then SIGKILL), the senders, close the netlink socket."""
        import asyncio

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        await asyncio.gather(*(s.stop() for s in self.senders), return_exceptions=True)
        if self.kernel is not None:
            self.kernel.close()


async def loaded_agent(lab: Lab, tmp: Path) -> dict[str, Any]:
    """``evpn-agent run`` loaded with every path over BGP: its figures (``Loaded.poll``)."""
    run = Loaded(lab, tmp)
    try:
        return await run.run()
    finally:
        await run.stop()


# --------------------------------------------------------------------------- the run


def make_namespace(lab: Lab, suffix: str) -> str:
    from bench.common import build_vnis

    name = lab.add(suffix)
    build_vnis(name, range(FIRST_VNI, FIRST_VNI + VNIS), LOCAL)
    return name


def check(store: dict[str, Any], agent: dict[str, Any]) -> None:
    for r in (store, agent):
        if r["paths"] != PATHS or r["rejected"] or r["counters"].get("announce") != PATHS:
            raise RuntimeError(
                f"{r['mode']}: {r['paths']} paths, counters {r['counters']}, rejected {r['rejected']}"
            )
    report = agent["pass"]
    if (
        report["errors"]
        or report["failed"]
        or report["added"] != FLOOD + MDB
        or report["desired"] != FLOOD + MDB
    ):
        raise RuntimeError(f"replication pass: {report}, expected {FLOOD + MDB} entries added")


def main() -> None:
    import asyncio

    from bench.common import PREFIX, Lab, inside, setup_run

    setup_run(__doc__, "(no profile: the measured processes are separate)")
    assert len(SENDER_ADDRS) == PEERS
    lab = Lab()
    wall = time.perf_counter()
    settled = {"before_s": 0.0, "after_s": 0.0}
    try:
        settled["before_s"] = lab.settle()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmpdir:
            tmp = Path(tmpdir)
            store = measured("store", tmp / "unused", tmp)
            with inside(make_namespace(lab, "a")):
                agent = measured("agent", tmp / "agent", tmp)
            check(store, agent)
            with inside(make_namespace(lab, "r")):
                idle = idle_agent(tmp)
            lab.settle()
            daemon = asyncio.run(loaded_agent(lab, tmp))
    finally:
        settled["after_s"] = lab.close()
    report(store, agent, idle, daemon, time.perf_counter() - wall, settled)


def thin(timeline: list[list[float]], points: int) -> list[list[float]]:
    """At most ``points`` samples, evenly spread, the first and the last kept."""
    if len(timeline) <= points:
        return timeline
    step = (len(timeline) - 1) / (points - 1)
    return [timeline[round(i * step)] for i in range(points)]


def report(
    store: dict[str, Any],
    agent: dict[str, Any],
    idle: dict[str, Any],
    daemon: dict[str, Any],
    wall: float,
    settled: dict[str, float],
) -> None:
    per_path = (store["loaded"]["VmRSS"] - store["imports"]["VmRSS"]) * 2**20 / PATHS
    agent_per_path = (agent["loaded"]["VmRSS"] - agent["built"]["VmRSS"]) * 2**20 / PATHS
    peak = agent["end"]["VmHWM"]
    exabgp = sum(k["VmRSS"] for k in idle["children"])
    idle_exabgp = sum(k["VmRSS"] for k in idle["children"] if k["cmd"] == "bgp.launcher")
    mem = daemon["memory"]
    daemon_peak = mem["agent"]["VmHWM"]
    verdict = "PASS" if daemon_peak < TARGET_MB else "FAIL"
    daemon_per_path = (mem["agent"]["VmRSS"] - idle["agent"]["VmRSS"]) * 2**20 / PATHS
    exabgp_per_path = (mem["exabgp"]["VmRSS"] - idle_exabgp) * 2**20 / PATHS
    routes_per_s = PATHS / (daemon["paths_s"] - daemon["first_up_s"])
    tree_mb = sum(m["VmRSS"] for m in mem.values())
    loaded_rss = next((row[2] for row in daemon["timeline"] if row[1] == PATHS), mem["agent"]["VmRSS"])
    checks = daemon["checks"]
    print(
        f"{PATHS:,} paths: {PEERS} peers x {VNIS} VNIs x {VTEPS} VTEPs x (1 IMET"
        f" + {GROUPS_PER_VTEP} SMET (*,G)); {PEERS * VTEPS} VTEPs and {GROUPS} groups per VNI"
    )
    print(
        f"evpn-agent run loaded over BGP: {PEERS} ExaBGP senders ({', '.join(SENDER_ADDRS)}) held"
        f" {PATHS // PEERS:,} routes each (preloaded in {daemon['preload_s']:.1f} s; each sender's"
        f" ExaBGP then {max(daemon['sender_mb']):.0f} MB)"
    )
    print(
        f"  from the agent's start: control socket answers {daemon['answer_s']:.1f} s, sessions up"
        f" {daemon['first_up_s']:.1f}-{daemon['all_up_s']:.1f} s, {PATHS:,} paths in the store"
        f" {daemon['paths_s']:.1f} s, kernel programmed ({FLOOD:,} flood + {DAEMON_MDB:,} MDB entries)"
        f" {daemon['kernel_s']:.1f} s (polled every {POLL_S:g} s)"
    )
    cpu, cpu_paths = daemon["cpu_s"], daemon["cpu_at_paths_s"]
    print(
        f"  throughput {routes_per_s:,.0f} routes/s (first session up to all paths in the store);"
        " CPU seconds until all paths / the kernel programmed: "
        + ", ".join(
            f"{name} {cpu_paths.get(role, 0):.1f} / {cpu.get(role, 0):.1f}"
            for role, name in (("agent", "agent"), ("exabgp", "ExaBGP"), ("relay", "relay"))
        )
        + f"; {daemon['kernel_checks']} kernel dump(s) to confirm"
    )
    print(f"  {'MB':<10} {'VmRSS':>8} {'VmHWM':>8} {'idle':>8} {'per path':>10}")
    for role, idle_mb, pp in (
        ("agent", idle["agent"]["VmRSS"], f"{daemon_per_path:,.0f} B"),
        ("ExaBGP", idle_exabgp, f"{exabgp_per_path:,.0f} B"),
        ("relay", None, ""),
    ):
        m = mem.get({"agent": "agent", "ExaBGP": "exabgp", "relay": "relay"}[role])
        if m is None:
            continue
        idle_text = "" if idle_mb is None else f"{idle_mb:8.1f}"
        print(f"  {role:<10} {m['VmRSS']:8.1f} {m['VmHWM']:8.1f} {idle_text:>8} {pp:>10}")
    print(
        f"  the three together {tree_mb:.1f} MB; agent RSS when the last path was in the store"
        f" {loaded_rss:.1f} MB (before the final pass)"
    )
    print(
        f"  checked: kernel {checks['kernel_fdb']:,} flood + {checks['kernel_mdb']:,} MDB entries;"
        f" flood entries per VNI equal the store's on all {checks['vnis_store_eq_kernel']} VNIs;"
        f" VNIs {', '.join(map(str, checks['sample_vnis']))} hold exactly the routes sent;"
        f" nothing rejected, no pass failed"
    )
    print(
        f"breakdown: stand-in processes, {store['lines']:,} ExaBGP JSON lines piped into each"
        " (4 peers x 50 x 100, Multicast Flags: IGMP proxy only)"
    )
    print(f"{'VmRSS, MB':<58} {'store':>8} {'agent':>8}")
    for label, key in (
        ("interpreter", "interpreter"),
        ("after imports", "imports"),
        ("after building the store / Agent(config)", "built"),
        (f"after {PATHS:,} paths (gc.collect)", "loaded"),
    ):
        print(f"  {label:<56} {store[key]['VmRSS']:8.1f} {agent[key]['VmRSS']:8.1f}")
    print(
        f"  {f'after the replication pass ({FLOOD + MDB:,} entries written)':<56} {'':>8}"
        f" {agent['after_pass']['VmRSS']:8.1f}"
    )
    print(f"  {'peak (VmHWM)':<56} {store['end']['VmHWM']:8.1f} {peak:8.1f}")
    print(
        f"per path: {per_path:,.0f} bytes (store process), {agent_per_path:,.0f} bytes (agent process);"
        f" load {store['load_s']:.2f} s / {agent['load_s']:.2f} s ({PATHS / agent['load_s']:,.0f} lines/s"
        f" through the daemon's handler); pass {agent['pass_s']:.2f} s"
    )
    print(
        f"evpn-agent run, idle (no paths, first pass done after {idle['uptime_s']:.1f} s):"
        f" VmRSS {idle['agent']['VmRSS']:.1f} MB, VmHWM {idle['agent']['VmHWM']:.1f} MB;"
        f" its children {exabgp:.1f} MB more (ExaBGP = bgp.launcher: "
        + ", ".join(f"{k['cmd']} {k['VmRSS']:.1f}" for k in idle["children"])
        + ")"
        f" (agent process after Agent(config): {agent['built']['VmRSS']:.1f} MB)"
    )
    print(
        f"target: evpn-agent run's peak with {PATHS:,} paths < {TARGET_MB:.0f} MB: {daemon_peak:.1f} MB"
        f" -> {verdict} (stand-in agent process peak {peak:.1f} MB; ExaBGP's peak"
        f" {mem['exabgp']['VmHWM']:.1f} MB besides)"
    )
    print(
        f"whole run: {wall:.1f} s, of which waiting for namespace tear-down"
        f" {settled['before_s']:.1f} s before and {settled['after_s']:.1f} s after"
    )
    out: dict[str, Any] = {
        "paths": PATHS,
        "target_mb": TARGET_MB,
        "verdict": verdict,
        "store_mb": {k: round(store[k]["VmRSS"], 1) for k in ("interpreter", "imports", "built", "loaded")},
        "agent_mb": {
            k: round(agent[k]["VmRSS"], 1)
            for k in ("interpreter", "imports", "built", "loaded", "after_pass")
        },
        "store_hwm_mb": round(store["end"]["VmHWM"], 1),
        "agent_hwm_mb": round(peak, 1),
        "bytes_per_path": round(per_path),
        "agent_bytes_per_path": round(agent_per_path),
        "idle_evpn_agent_mb": round(idle["agent"]["VmRSS"], 1),
        "idle_evpn_agent_hwm_mb": round(idle["agent"]["VmHWM"], 1),
        "idle_exabgp_mb": round(exabgp, 1),
        "load_s": round(agent["load_s"], 3),
        "pass_s": round(agent["pass_s"], 3),
        "verdict_on": "evpn-agent run loaded over BGP, VmHWM",
        "daemon_hwm_mb": round(daemon_peak, 1),
        "daemon_mb": {role: round(m["VmRSS"], 1) for role, m in mem.items()},
        "daemon_peak_mb": {role: round(m["VmHWM"], 1) for role, m in mem.items()},
        "daemon_loaded_mb": loaded_rss,
        "daemon_bytes_per_path": round(daemon_per_path),
        "daemon_exabgp_bytes_per_path": round(exabgp_per_path),
        "daemon_peers": PEERS,
        "sender_exabgp_mb": max(daemon["sender_mb"]),
        "daemon_s": {
            k: round(daemon[f"{k}_s"], 2)
            for k in ("preload", "answer", "first_up", "all_up", "paths", "kernel")
        },
        "daemon_routes_per_s": round(routes_per_s),
        "daemon_cpu_s": {role: round(v, 2) for role, v in cpu.items()},
        "daemon_cpu_at_paths_s": {role: round(v, 2) for role, v in cpu_paths.items()},
        "daemon_kernel": {
            "fdb": checks["kernel_fdb"],
            "mdb": checks["kernel_mdb"],
            "dumps": daemon["kernel_checks"],
        },
        "daemon_timeline": thin(daemon["timeline"], TIMELINE_POINTS),
        "run_s": round(wall, 1),
    }
    print(json.dumps(out))


def plot(result: dict[str, Any], out: Path) -> None:
    """Left: RSS at each stage of the two stand-in processes and of the real ``evpn-agent run``
    (idle, all paths in, after the last pass, peak) against the 300 MB target. Right (results
    with the loaded daemon): the daemon's and its ExaBGP's RSS while the paths arrive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result.get("daemon_timeline")
    stages = [
        ("interpreter", "interpreter"),
        ("imports", "imports"),
        ("store / Agent()\nbuilt; daemon idle", "built"),
        (f"{result['paths']:,}\npaths loaded", "loaded"),
        ("after the\nreplication pass", "after_pass"),
        ("peak\n(VmHWM)", "hwm"),
    ]
    store = dict(result["store_mb"], hwm=result["store_hwm_mb"])
    agent = dict(result["agent_mb"], hwm=result["agent_hwm_mb"])
    series = [
        (store, "stand-in store process (parse_line + intake + store)", "#c6dbef"),
        (agent, "stand-in agent process (Agent, daemon's line handler, one pass)", "#6baed6"),
    ]
    if timeline is not None:
        daemon = {
            "built": result["idle_evpn_agent_mb"],
            "loaded": result["daemon_loaded_mb"],
            "after_pass": result["daemon_mb"]["agent"],
            "hwm": result["daemon_hwm_mb"],
        }
        series.append((daemon, "evpn-agent run loaded over BGP (real daemon)", "#08519c"))
    fig, axes = plt.subplots(
        1, 2 if timeline is not None else 1, figsize=(17 if timeline else 11, 5.5), squeeze=False
    )
    ax = axes[0][0]
    xs = list(range(len(stages)))
    width = 0.8 / len(series)
    for i, (values, label, colour) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        heights = [values.get(key, 0.0) for _label, key in stages]
        bars = ax.bar([x + offset for x in xs], heights, width, label=label, color=colour)
        for bar, h in zip(bars, heights, strict=True):
            if h:
                ax.annotate(
                    f"{h:.0f}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=7
                )
    ax.axhline(
        result["target_mb"], color="#de2d26", linestyle="--", label=f"target {result['target_mb']:.0f} MB"
    )
    ax.axhline(
        result["idle_evpn_agent_mb"],
        color="#636363",
        linestyle=":",
        label=f"evpn-agent run, idle: {result['idle_evpn_agent_mb']:.0f} MB"
        f" (+ ExaBGP and relay {result['idle_exabgp_mb']:.0f} MB)",
    )
    ax.set_xticks(xs, [label for label, _key in stages], fontsize=8)
    ax.set_ylabel("resident set size, MB (VmRSS; last group VmHWM)")
    peak = result.get("daemon_hwm_mb", result["agent_hwm_mb"])
    ax.set_ylim(0, max(result["target_mb"], peak, result["agent_hwm_mb"]) * 1.5)
    if timeline is not None:
        ax.set_title(
            f"{result['paths']:,} paths: evpn-agent run peak {peak:.0f} MB"
            f" ({result['daemon_bytes_per_path']:,} B/path over idle) -> {result['verdict']}",
            fontsize=10,
        )
    else:
        ax.set_title(
            f"Memory with {result['paths']:,} paths: {result['agent_bytes_per_path']:,} bytes/path in the"
            f" agent, peak {result['agent_hwm_mb']:.0f} MB -> {result['verdict']}"
        )
    ax.legend(fontsize=7, loc="upper left")
    if timeline is not None:
        ax = axes[0][1]
        t = [row[0] for row in timeline]
        ax.plot(t, [row[2] for row in timeline], color="#08519c", label="evpn-agent run VmRSS")
        ax.plot(t, [row[3] for row in timeline], color="#fd8d3c", label="its ExaBGP VmRSS")
        ax.axhline(result["target_mb"], color="#de2d26", linestyle="--", label="target")
        times = result["daemon_s"]
        for key, text, style in (
            ("first_up", "sessions up", ":"),
            ("paths", "all paths in the store", "-."),
            ("kernel", "kernel programmed", "--"),
        ):
            ax.axvline(
                times[key], color="#636363", linestyle=style, linewidth=1, label=f"{text} {times[key]:.1f} s"
            )
        ax.set_xlabel("seconds since evpn-agent run started")
        ax.set_ylabel("MB (VmRSS)")
        ax.set_ylim(0, max(result["target_mb"], peak) * 1.15)
        twin = ax.twinx()
        twin.plot(t, [row[1] for row in timeline], color="#31a354", alpha=0.6, label="paths in the store")
        twin.set_ylabel("paths in the store")
        twin.set_ylim(0, result["paths"] * 1.4)
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper left")
        ax.set_title(
            f"Loaded over BGP from {result['daemon_peers']} ExaBGP peers:"
            f" {result['daemon_routes_per_s']:,} routes/s",
            fontsize=10,
        )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
