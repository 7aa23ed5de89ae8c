"""Security properties of a running leaf (issue 7), proved with real processes in namespaces.

One module-scoped site serves every test:

    inj (bgp.injector, ExaBGP) 10.0.1.2 --- 10.0.1.1 leaf (evpn-agent run) 10.0.2.1 --- 10.0.2.2 frr (bgpd)
                                              VTEP 10.0.0.1 on lo, br100/vxlan100
                                              mosquitto on 127.0.0.1 in the leaf namespace

The agent's neighbor FRR is configured with ``md5: secret-a``, FRR with ``password secret-b``.
The agent's workdir lives under a world-traversable directory, so that an unprivileged user's
only barriers are the modes the agent itself sets (workdir 0700, control socket 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.common import inside
from bgp.injector import send as inject_send
from replication.kernel import RouteKernel
from tests.netns.netlab import Broker, Frr, Lab, frr_available, poll, sh

ROOT = Path(__file__).parents[2]
AGENT = [sys.executable, "-m", "agent.main"]
EVPNCTL = [sys.executable, "-m", "agent.cli"]
SYSTEM_PYTHON = Path("/usr/bin/python3")  # the venv's python lives under /root (0700): nobody cannot run it
NOBODY = 65534
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish", "busybox"})

VTEP = "10.0.0.1"  # the agent's own VTEP
LEAF_INJ, INJ = "10.0.1.1", "10.0.1.2"
LEAF_FRR, FRR_ADDR = "10.0.2.1", "10.0.2.2"
GOOD = "10.0.0.77"  # the positive control's VTEP
GROUP, BAD_ONLY_GROUP = "239.8.8.8", "239.9.9.9"
# (address, the store's reason): every VTEP address the guard rails must refuse
BAD_VTEPS = (
    (VTEP, "own-vtep"),
    ("239.1.2.3", "multicast-vtep"),
    ("127.0.0.1", "martian-vtep"),
    ("0.0.0.0", "martian-vtep"),
    ("::", "martian-vtep"),
    ("::1", "martian-vtep"),
    ("ff02::1", "multicast-vtep"),
)
MD5_AGENT, MD5_FRR_WRONG = "secret-a", "secret-b"

FRR_CONF = f"""\
hostname frr-md5
log stdout informational
router bgp 65000
 bgp router-id {FRR_ADDR}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {LEAF_FRR} remote-as 65000
 neighbor {LEAF_FRR} password {MD5_FRR_WRONG}
 neighbor {LEAF_FRR} timers connect 1
 address-family l2vpn evpn
  neighbor {LEAF_FRR} activate
 exit-address-family
"""


# --------------------------------------------------------------------------- capability checks


def tcp_md5_problem() -> str | None:
    """Why this kernel cannot sign TCP segments (CONFIG_TCP_MD5SIG), or None when it can."""
    addr = struct.pack("=HH4s", socket.AF_INET, 0, socket.inet_aton(FRR_ADDR)).ljust(128, b"\0")
    key = b"probe"
    md5sig = addr + struct.pack("=BBHI", 0, 0, len(key), 0) + key.ljust(80, b"\0")  # struct tcp_md5sig
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, 14, md5sig)  # TCP_MD5SIG
        except OSError as exc:
            return f"the kernel has no TCP MD5 signatures (TCP_MD5SIG: {exc.strerror})"
    return None


def world_reachable(path: Path) -> bool:
    """Every directory from / to ``path`` lets others traverse it (so nobody can import from it)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


MD5_PROBLEM = tcp_md5_problem()
FRR_PROBLEM = None if frr_available() else "FRR (Debian package frr) not installed"
MQTT_PROBLEM = (
    None if shutil.which("mosquitto") and shutil.which("mosquitto_sub") else "mosquitto is not installed"
)


# --------------------------------------------------------------------------- the site


@dataclass
class Site:
    lab: Lab
    ns: dict[str, str]
    workdir: Path  # private (pytest's tmp, 0700 at the top)
    public: Path  # world-traversable parent of the agent's workdir
    agent: subprocess.Popen[str] | None = None
    injector: subprocess.Popen[str] | None = None
    frr: Frr | None = None
    broker: Broker | None = None
    subscriber: subprocess.Popen[bytes] | None = None

    @property
    def agent_workdir(self) -> Path:
        return self.public / "leaf"

    @property
    def socket(self) -> Path:
        return self.agent_workdir / "control.sock"

    @property
    def inj_socket(self) -> Path:
        return self.workdir / "inj" / "injector.sock"

    def agent_log(self) -> str:
        return (self.workdir / "leaf.log").read_text(errors="replace")

    def show(self, what: str) -> Any:
        out = evpnctl(self, "show", what, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def try_show(self, what: str) -> Any:
        out = evpnctl(self, "show", what, "--json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    def inject(self, command: str) -> None:
        answer = inject_send(command, self.inj_socket)
        assert answer == "done", f"{command}: {answer}"

    def peer_state(self, peer: str) -> str | None:
        for row in self.try_show("peers") or []:
            if row["peer"] == peer:
                return str(row["state"])
        return None

    def mqtt_events(self, kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        path = self.workdir / "mqtt.txt"
        for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
            topic, _, payload = line.partition(" ")
            if topic.endswith(f"/events/{kind}"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(payload))
        return out


def evpnctl(
    site: Site, *args: str, user: int | None = None, sock: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``evpnctl ... --socket`` as root, or as ``user`` (setpriv: uid/gid, no supplementary groups)."""
    argv = [*args, "--socket", str(sock or site.socket)]
    if user is None:
        return subprocess.run(
            [*EVPNCTL, *argv], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
    drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    return subprocess.run(
        [*drop, str(SYSTEM_PYTHON), "-m", "agent.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def agent_config(site: Site) -> dict[str, Any]:
    frr_neighbor: dict[str, Any] = {
        "address": FRR_ADDR,
        "asn": 65000,
        "local_address": LEAF_FRR,
        "hold_time": 9,
        "send_smet": False,  # FRR drops type 6 anyway
    }
    if MD5_PROBLEM is None:
        frr_neighbor["md5"] = MD5_AGENT
    neighbors: list[dict[str, Any]] = [
        {"address": INJ, "asn": 65000, "local_address": LEAF_INJ, "hold_time": 9}
    ]
    if FRR_PROBLEM is None:
        neighbors.append(frr_neighbor)
    cfg: dict[str, Any] = {
        "router_id": VTEP,
        "local_vtep": VTEP,
        "asn": 65000,
        "neighbors": neighbors,
        "vnis": [{"vni": 100, "querier": "192.168.100.201"}],
        "workdir": str(site.agent_workdir),
        "replication": {"startup_hold": 5},
        "log_level": "info",
    }
    if MQTT_PROBLEM is None:
        cfg["mqtt"] = {"host": "127.0.0.1", "retry_initial": 0.2, "retry_max": 1}
    return cfg


def _start_agent(site: Site) -> None:
    path = site.workdir / "leaf.yaml"
    path.write_text(yaml.safe_dump(agent_config(site)))
    with (site.workdir / "leaf.log").open("a") as log:
        site.agent = subprocess.Popen(
            ["ip", "netns", "exec", site.ns["leaf"], *AGENT, "run", "--config", str(path)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            text=True,
        )
    site.lab.pids.append(site.agent.pid)
    agent = site.agent
    poll(
        lambda: site.try_show("summary") is not None or agent.poll() is not None,
        30,
        what="the control socket",
    )
    assert agent.poll() is None, site.agent_log()[-3000:]


def _start_injector(site: Site) -> None:
    (site.workdir / "inj").mkdir()
    cfg = {
        "router_id": INJ,
        "local_vtep": INJ,
        "asn": 65000,
        "neighbors": [{"address": LEAF_INJ, "asn": 65000, "local_address": INJ, "hold_time": 9}],
        "workdir": str(site.workdir / "inj"),
    }
    path = site.workdir / "inj.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with (site.workdir / "inj.log").open("a") as log:
        site.injector = subprocess.Popen(
            [
                "ip", "netns", "exec", site.ns["inj"], sys.executable, "-m", "bgp.injector",
                "--socket", str(site.inj_socket), "serve", "--config", str(path),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            text=True,
        )  # fmt: skip
    site.lab.pids.append(site.injector.pid)
    injector = site.injector
    poll(lambda: site.inj_socket.exists() or injector.poll() is not None, 30, what="the injector's socket")
    assert injector.poll() is None, (site.workdir / "inj.log").read_text()[-3000:]


def _build(site: Site) -> None:
    lab, ns = site.lab, site.ns
    leaf = ns["leaf"]
    lab.veth(leaf, "eth0", f"{LEAF_INJ}/24", ns["inj"], "eth0", f"{INJ}/24")
    lab.veth(leaf, "eth1", f"{LEAF_FRR}/24", ns["frr"], "eth0", f"{FRR_ADDR}/24")
    sh(f"ip -n {leaf} addr add {VTEP}/32 dev lo")
    sh(f"ip -n {leaf} link add vxlan100 type vxlan id 100 local {VTEP} dstport 4789 nolearning")
    sh(f"ip -n {leaf} link add br100 type bridge mcast_snooping 1")
    sh(f"ip -n {leaf} link set vxlan100 master br100")
    sh(f"ip -n {leaf} link set vxlan100 up")
    sh(f"ip -n {leaf} link set br100 up")
    # Remote VTEPs sit behind the injector's link, as they would behind a spine.
    sh(f"ip -n {leaf} route add 10.0.0.0/24 via {INJ}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("security")
    public = Path(tempfile.mkdtemp(prefix="eiat-security-", dir="/tmp"))
    os.chmod(public, 0o755)
    lab = Lab(workdir)
    s = Site(lab, {}, workdir, public)
    try:
        s.ns.update({name: lab.ns(name) for name in ("leaf", "inj", "frr")})
        _build(s)
        if MQTT_PROBLEM is None:
            (workdir / "broker").mkdir()
            s.broker = Broker(lab, s.ns["leaf"], workdir / "broker")
            s.broker.start()
            subscribe = ["mosquitto_sub", "-h", "127.0.0.1", "-t", "evpn/#", "-v"]
            with (workdir / "mqtt.txt").open("w") as out:
                s.subscriber = subprocess.Popen(
                    ["ip", "netns", "exec", s.ns["leaf"], *subscribe],
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                )
            lab.pids.append(s.subscriber.pid)
        if FRR_PROBLEM is None:
            s.frr = Frr(lab, s.ns["frr"], workdir / "frr")
            s.frr.start(FRR_CONF)
        _start_injector(s)
        _start_agent(s)
        poll(lambda: s.peer_state(INJ) == "up", 40, what="the agent's session with the injector")
        yield s
    finally:
        for proc in (s.agent, s.injector):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (s.agent, s.injector):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
        lab.close()
        shutil.rmtree(public, ignore_errors=True)


# --------------------------------------------------------------------------- 2. the control socket


def _mode(path: Path) -> tuple[int, int, int, bool]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, stat.S_ISSOCK(st.st_mode)


def _nobody_can_run_evpnctl() -> str | None:
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing (nobody needs a Python outside /root)"
    if not world_reachable(ROOT / "agent"):
        return f"{ROOT} is not readable by other users"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing"
    return None


def test_control_socket_is_a_root_owned_0600_socket_in_a_0700_root_workdir(site: Site) -> None:
    """The modes the agent sets itself: workdir 0700 root:root, control socket 0600 root:root; the
    ExaBGP API socket (whoever connects there replaces the relay and feeds the agent routes) is
    0600 root:root too, inside the same workdir."""
    assert _mode(site.agent_workdir) == (0o700, 0, 0, False)
    assert _mode(site.socket) == (0o600, 0, 0, True)
    assert _mode(site.agent_workdir / "exabgp" / "exabgp-api.sock") == (0o600, 0, 0, True)


def test_evpnctl_as_nobody_is_refused_with_one_line_and_exit_2_while_root_is_answered(site: Site) -> None:
    """Default layout: an unprivileged user gets exit 2, one clear line on stderr and nothing on
    stdout; root gets the summary."""
    reason = _nobody_can_run_evpnctl()
    if reason:
        pytest.skip(reason)
    root = evpnctl(site, "show", "summary", "--json")
    assert root.returncode == 0, root.stderr
    assert json.loads(root.stdout)["local_vtep"] == VTEP
    nobody = evpnctl(site, "show", "summary", "--json", user=NOBODY)
    assert nobody.returncode == 2
    assert nobody.stdout == ""
    assert nobody.stderr.splitlines() == [
        f"evpnctl: permission denied on {site.socket}: run evpnctl as root"
    ], nobody.stderr
    # The human table too, and the agent is still serving root afterwards.
    assert evpnctl(site, "show", "peers", user=NOBODY).returncode == 2
    assert evpnctl(site, "show", "peers").returncode == 0


@contextlib.contextmanager
def loosened(path: Path, mode: int) -> Iterator[None]:
    """chmod ``path`` for the block (an operator's mistake), then restore its mode."""
    before = stat.S_IMODE(path.lstat().st_mode)
    os.chmod(path, mode)
    try:
        yield
    finally:
        os.chmod(path, before)


def test_socket_mode_alone_refuses_nobody_when_the_workdir_is_world_traversable(site: Site) -> None:
    """With the workdir opened to 0755 (a permissive directory), the 0600 socket still refuses
    an unprivileged user: the refusal does not depend on the directory alone."""
    reason = _nobody_can_run_evpnctl()
    if reason:
        pytest.skip(reason)
    with loosened(site.agent_workdir, 0o755):
        nobody = evpnctl(site, "show", "summary", "--json", user=NOBODY)
    assert nobody.returncode == 2
    assert nobody.stderr.splitlines() == [
        f"evpnctl: permission denied on {site.socket}: run evpnctl as root"
    ], nobody.stderr


def test_agent_checks_the_peers_uid_even_when_the_socket_mode_is_loosened(site: Site) -> None:
    """Defence in depth: with the socket chmod-ed 0666 (operator mistake, container bind mount,
    ACL), the agent itself must still refuse a non-root peer (SO_PEERCRED)."""
    reason = _nobody_can_run_evpnctl()
    if reason:
        pytest.skip(reason)
    with loosened(site.agent_workdir, 0o755), loosened(site.socket, 0o666):
        nobody = evpnctl(site, "show", "summary", "--json", user=NOBODY)
    assert nobody.returncode == 2, f"nobody was answered: {nobody.stdout[:200]}"
    assert len(nobody.stderr.splitlines()) == 1 and "permission denied" in nobody.stderr, nobody.stderr


# --------------------------------------------------------------------------- 3b. no shell at run time


def _children() -> dict[int, list[int]]:
    table: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])  # comm may hold spaces and ')'
        table.setdefault(ppid, []).append(int(entry.name))
    return table


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    argv: tuple[str, ...]


def process_tree(root: int) -> list[Proc]:
    """``root`` and all its descendants, each with its comm and argv."""
    children = _children()
    out: list[Proc] = []
    todo = [(root, 0)]
    while todo:
        pid, ppid = todo.pop()
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            argv = tuple(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1])
        except OSError:
            continue  # exited meanwhile
        out.append(Proc(pid, ppid, comm, argv))
        todo += [(child, pid) for child in children.get(pid, [])]
    return out


def tree_with_relay(root: int) -> list[Proc] | None:
    """``process_tree(root)`` once ExaBGP's API process (the relay) is in it, else None."""
    tree = process_tree(root)
    return tree if any(p.argv[1:3] == ("-m", "bgp.relay") for p in tree) else None


def _no_shell(tree: list[Proc]) -> None:
    for p in tree:
        assert p.comm not in SHELLS, f"process {p.pid} is a shell: {p.argv}"
        assert Path(p.argv[0]).name not in SHELLS if p.argv else True, f"process {p.pid}: {p.argv}"
        assert "-c" not in p.argv[1:2], f"process {p.pid} runs a command string: {p.argv}"


def test_agent_process_tree_is_agent_exabgp_relay_with_no_shell_anywhere(site: Site) -> None:
    """The running agent's descendants (ExaBGP via the launcher, ExaBGP's API process) include no
    shell: ExaBGP 5.0.15 starts ``process ... run`` with Popen(argv) and no shell in between."""
    assert site.agent is not None
    pid = site.agent.pid
    tree = poll(lambda: tree_with_relay(pid), 20, what="the agent's process tree with ExaBGP's relay")
    assert tree is not None
    agent, *rest = tree
    assert agent.argv[1:4] == ("-m", "agent.main", "run"), agent.argv  # `ip netns exec` exec-ed, no fork
    launchers = [p for p in rest if p.argv[1:3] == ("-m", "bgp.launcher")]
    relays = [p for p in rest if p.argv[1:3] == ("-m", "bgp.relay")]
    assert len(launchers) == 1 and launchers[0].ppid == agent.pid, tree
    # The relay is ExaBGP's own child: no shell in between, and its argv is the argv list ExaBGP got.
    assert len(relays) == 1 and relays[0].ppid == launchers[0].pid, tree
    api_socket = str(site.agent_workdir / "exabgp" / "exabgp-api.sock")
    assert relays[0].argv == (sys.executable, "-m", "bgp.relay", api_socket), relays[0].argv
    _no_shell(tree)
    assert {p.pid for p in tree} == {agent.pid, launchers[0].pid, relays[0].pid}, tree


def test_injector_process_tree_has_no_shell(site: Site) -> None:
    """The route injector (bgp.injector, the same ExaBGP adapter) runs no shell either."""
    assert site.injector is not None
    pid = site.injector.pid
    tree = poll(lambda: tree_with_relay(pid), 20, what="the injector's process tree")
    assert tree is not None
    _no_shell(tree)
    assert len(tree) == 3, tree


# --------------------------------------------------------------------------- 4. VTEP guard rails


def kernel_remotes(netns: str) -> tuple[set[str], set[tuple[str, str]]]:
    """vxlan100's flood-list remotes (all-zero MAC dsts) and its VXLAN MDB (group, dst) pairs."""
    with inside(netns):
        kernel = RouteKernel()
        try:
            ifindex = kernel.ifindex("vxlan100")
            assert ifindex is not None
            fdb = {str(r.dst) for r in kernel.dump_fdb(ifindex) if r.mac == b"\0" * 6 and r.dst is not None}
            mdb = {
                (str(r.group), str(r.dst))
                for r in kernel.dump_mdb()
                if r.device == ifindex and r.dst is not None
            }
        finally:
            kernel.close()
    return fdb, mdb


def imet(rd: int, originator: str, endpoint: str | None = None) -> str:
    """An IMET for VNI 100 with an ingress-replication PMSI (tunnel endpoint = originator by default)."""
    return (
        f"announce evpn imet rd {INJ}:{rd} etag 0 originator {originator} next-hop {INJ} "
        f"pmsi ingress-replication 100 {endpoint or originator} rt 65000:100 encap vxlan "
        "mcast-flags igmp-proxy"
    )


def smet(rd: int, originator: str, group: str = GROUP) -> str:
    return (
        f"announce evpn smet rd {INJ}:{rd} etag 0 source * group {group} originator {originator} "
        f"next-hop {INJ} flags v2 rt 65000:100"
    )


@pytest.fixture(scope="module")
def guard_rails(site: Site) -> dict[str, int]:
    """Inject the bad IMETs/SMETs first, then the positive control; wait until the control is in
    the kernel and every bad route was counted. Returns the rejected counters."""
    before = dict(site.show("summary")["rejected"])
    for i, (address, _reason) in enumerate(BAD_VTEPS, start=1):
        # An IPv6 PMSI endpoint hides the VNI in ExaBGP's JSON (DESIGN §4): keep the endpoint IPv4
        # so the route reaches the store and meets the guard rail on its originator.
        site.inject(imet(i, address, None if ":" not in address else INJ))
        site.inject(smet(100 + i, address))
        site.inject(smet(200 + i, address, BAD_ONLY_GROUP))
    site.inject(imet(99, GOOD))
    site.inject(smet(199, GOOD))
    expected: dict[str, int] = {}
    for _address, reason in BAD_VTEPS:
        expected[reason] = expected.get(reason, 0) + 3  # one IMET and two SMETs each

    def counted() -> dict[str, int] | None:
        rejected = site.show("summary")["rejected"]
        grown = {r: rejected.get(r, 0) - before.get(r, 0) for r in expected}
        return rejected if all(grown[r] >= n for r, n in expected.items()) else None

    rejected = poll(counted, 30, what=f"the refusals counted ({expected})")
    assert rejected is not None
    poll(
        lambda: GOOD in kernel_remotes(site.ns["leaf"])[0], 30, what="the good VTEP in vxlan100's flood list"
    )
    poll(
        lambda: (GROUP, GOOD) in kernel_remotes(site.ns["leaf"])[1],
        30,
        what="the good SMET in vxlan100's MDB",
    )
    return dict(rejected)


BAD = {address for address, _reason in BAD_VTEPS}
UNSPECIFIED = ("0.0.0.0", "::")


def test_refused_vteps_reach_neither_fdb_nor_mdb_while_the_good_vtep_does(
    site: Site, guard_rails: dict[str, int]
) -> None:
    """End to end through BGP: IMET/SMET whose originator is the agent's own VTEP, multicast
    (239.1.2.3, ff02::1), loopback (127.0.0.1, ::1) or unspecified (0.0.0.0, ::) never reach
    vxlan100's flood list or VXLAN MDB; the good VTEP (positive control) reaches both."""
    fdb, mdb = kernel_remotes(site.ns["leaf"])
    assert GOOD in fdb and (GROUP, GOOD) in mdb
    assert not fdb & BAD, fdb
    # The agent's own catch-all entries (grp 0.0.0.0 / grp ::) list the unspecified address on
    # purpose as their harmless target (the VXLAN driver drops it). Any other bad dst is a leak.
    leaks = {(g, d) for g, d in mdb if d in BAD and not (g in UNSPECIFIED and d in UNSPECIFIED)}
    assert not leaks, mdb
    assert not {g for g, _d in mdb} & {BAD_ONLY_GROUP}, mdb
    # ...and the views agree with the kernel.
    flood = {t["vtep"] for v in site.show("flood") for t in v["vteps"]}
    assert flood == {GOOD}, flood
    groups = {(g["group"], r["vtep"]) for g in site.show("groups") for r in g["receivers"]}
    assert groups == {(GROUP, GOOD)}, groups


def test_refusals_are_counted_by_reason_in_show_summary(site: Site, guard_rails: dict[str, int]) -> None:
    """`evpnctl show summary` names each refusal's reason: own-vtep, martian-vtep, multicast-vtep."""
    assert guard_rails.get("own-vtep", 0) >= 3
    assert guard_rails.get("martian-vtep", 0) >= 12
    assert guard_rails.get("multicast-vtep", 0) >= 6


def test_each_refusal_is_published_naming_the_route_the_vtep_and_the_reason(
    site: Site, guard_rails: dict[str, int]
) -> None:
    """The MQTT `error` events name the route kind, the VTEP, the peer and why it was refused."""
    if MQTT_PROBLEM:
        pytest.skip(MQTT_PROBLEM)
    # The positive control was injected after every bad route: once its flood event arrived, the
    # error events published before it have arrived too (one publisher queue, one session).
    poll(
        lambda: any(GOOD in e.get("vteps", ()) for e in site.mqtt_events("flood")),
        15,
        what="the positive control's flood event on MQTT",
    )
    want = {f"IMET vni 100 from VTEP {address} from peer {INJ}: " for address, _r in BAD_VTEPS} | {
        f"SMET vni 100 (*, {GROUP}) from VTEP {address} from peer {INJ}: " for address, _r in BAD_VTEPS
    }

    def missing() -> set[str]:
        messages = [str(e.get("message", "")) for e in site.mqtt_events("error")]
        return {w for w in want if not any(m.startswith(w) for m in messages)}

    poll(lambda: not missing(), 3, what="an MQTT error event per refused route")
    reasons = {str(e.get("reason")) for e in site.mqtt_events("error")}
    assert {"own-vtep", "martian-vtep", "multicast-vtep"} <= reasons


def test_each_refusal_is_logged_naming_the_route_and_the_reason(
    site: Site, guard_rails: dict[str, int]
) -> None:
    """Without a broker the log is the only place an operator sees which route was refused and why."""
    lines = site.agent_log().splitlines()
    for address, reason in BAD_VTEPS:
        hit = [ln for ln in lines if f"IMET vni 100 from VTEP {address} " in ln and reason in ln]
        assert hit, f"no log line for the IMET from {address} ({reason})"


def test_a_martian_pmsi_endpoint_is_never_used_as_a_vxlan_remote(
    site: Site, guard_rails: dict[str, int]
) -> None:
    """The agent takes the VXLAN remote from the IMET's originator (as FRR does), so a PMSI tunnel
    endpoint of 127.0.0.1 next to a good originator never reaches the kernel."""
    other = "10.0.0.78"
    site.inject(imet(98, other, "127.0.0.1"))
    poll(lambda: other in kernel_remotes(site.ns["leaf"])[0], 20, what=f"{other} in the flood list")
    fdb, _mdb = kernel_remotes(site.ns["leaf"])
    assert "127.0.0.1" not in fdb, fdb


def test_agent_and_its_sessions_survive_the_refused_routes(site: Site, guard_rails: dict[str, int]) -> None:
    """After all refusals the agent still runs, the injector's session never reset, and the agent
    logged no traceback."""
    assert site.agent is not None and site.agent.poll() is None
    assert site.peer_state(INJ) == "up"
    log = site.agent_log()
    assert "Traceback" not in log, log[-3000:]
    assert f"peer {INJ} down" not in log and "NOTIFICATION" not in log, log[-3000:]


# --------------------------------------------------------------------------- 5. TCP MD5


def md5_failures(netns: str) -> int:
    """TcpExt TCPMD5Failure + TCPMD5Unexpected + TCPMD5NotFound of a namespace's kernel."""
    with inside(netns):
        text = Path("/proc/thread-self/net/netstat").read_text()
    lines = text.splitlines()
    counters: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
    return sum(counters.get(k, 0) for k in ("TCPMD5Failure", "TCPMD5Unexpected", "TCPMD5NotFound"))


def frr_neighbor(site: Site) -> dict[str, Any]:
    assert site.frr is not None
    try:
        doc = json.loads(site.frr.vtysh(f"show bgp neighbors {LEAF_FRR} json") or "{}")
    except ValueError:
        return {}
    return dict(doc.get(LEAF_FRR, {}))


def test_a_neighbor_with_a_wrong_md5_password_never_gets_a_session(site: Site) -> None:
    """Agent `md5: secret-a`, FRR `password secret-b`: while both keep trying (at least 3 more
    connection attempts dropped by the kernels' MD5 check), neither side ever reaches
    Established; then, as a positive control, FRR gets secret-a and the session comes up."""
    if FRR_PROBLEM:
        pytest.skip(FRR_PROBLEM)
    if MD5_PROBLEM:
        pytest.skip(MD5_PROBLEM)
    start = md5_failures(site.ns["leaf"]) + md5_failures(site.ns["frr"])
    began = time.monotonic()
    states: set[tuple[str, str | None]] = set()

    def three_more_attempts() -> bool:
        states.add((str(frr_neighbor(site).get("bgpState")), site.peer_state(FRR_ADDR)))
        grown = md5_failures(site.ns["leaf"]) + md5_failures(site.ns["frr"]) - start
        return grown >= 3 and time.monotonic() - began >= 3.0

    poll(three_more_attempts, 30, 0.2, what="3 connection attempts refused by TCP MD5")
    assert all(frr != "Established" and agent != "up" for frr, agent in states), states
    # Over the site's whole life, not only the window above: FRR never established, the agent never up.
    assert frr_neighbor(site).get("connectionsEstablished", 0) == 0, frr_neighbor(site)
    assert f"peer {FRR_ADDR} up" not in site.agent_log()
    assert not [e for e in site.mqtt_events("peer") if e.get("peer") == FRR_ADDR and e.get("state") == "up"]

    # Positive control: the same password on both sides gives a session.
    assert site.frr is not None
    sh(
        f"ip netns exec {site.ns['frr']} vtysh --vty_socket {site.frr.workdir} -c 'configure terminal' "
        f"-c 'router bgp 65000' -c 'neighbor {LEAF_FRR} password {MD5_AGENT}'"
    )
    poll(
        lambda: frr_neighbor(site).get("bgpState") == "Established", 40, what="FRR Established with secret-a"
    )
    poll(lambda: site.peer_state(FRR_ADDR) == "up", 20, what="the agent's session with FRR up")
    # The counter read above is FRR's real one (so its 0 before meant something).
    assert frr_neighbor(site).get("connectionsEstablished", 0) >= 1, frr_neighbor(site)
