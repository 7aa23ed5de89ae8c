"""Head-end replication proven with packets: four VTEP namespaces A-D on one underlay switch,
``br100``/``vxlan100`` on each, a host h1 behind A. The reconciler runs on A, driven by a store
filled by hand; B, C and D capture the VXLAN packets that reach them.

Absence is proven without sleeping: after the probe packets h1 sends a broadcast "fence"
that the flood list takes to every VTEP along the same path, so once every VTEP has the
fence, any probe copy meant for it has arrived too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest

from agent.store import RemoteImet, RemoteSmet, Store
from bgp.evpn import IPAddress
from replication.kernel import Link, NetlinkSocket, RouteKernel
from replication.netlink import RTM_NEWMDB, mdb_message
from replication.reconciler import DEFAULT_PROTOCOL, PassReport, Reconciler, Settings, VniPorts
from tests.netns.netlab import Capture, Lab, inside, poll, sh

VTEPS = {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.4"}
VTEPS6 = {"a": "fd00::1", "b": "fd00::2", "c": "fd00::3", "d": "fd00::4"}
H1 = "192.168.100.1"
H1_OTHER = "192.168.100.2"
PORTS = [VniPorts(100, "br100", "vxlan100")]
_markers = itertools.count(1)


@dataclass
class Fabric:
    lab: Lab
    ns: dict[str, str]
    vteps: dict[str, str]
    captures: dict[str, Capture] = field(default_factory=dict)

    def reset_a(self) -> None:
        """A fresh vxlan100 on A: every test starts from an empty VXLAN FDB and MDB."""
        a = self.ns["a"]
        sh(f"ip -n {a} link del vxlan100", check=False)
        sh(
            f"ip -n {a} link add vxlan100 type vxlan id 100 local {self.vteps['a']} dstport 4789 "
            f"nolearning dev eth0"
        )
        sh(f"ip -n {a} link set vxlan100 master br100")
        sh(f"ip -n {a} link set vxlan100 up")

    def reconcile(self, reconciler: Reconciler, store: Store) -> PassReport:
        with inside(self.ns["a"]):
            return reconciler.reconcile(store)

    def send(self, group: str, payload: bytes, count: int = 3, source: str = H1) -> None:
        with inside(self.ns["h1"]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.bind((source, 0))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            for _ in range(count):
                s.sendto(payload, (group, 5000))

    def send6(self, group: str, payload: bytes, count: int) -> None:
        with inside(self.ns["h1"]):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            index = socket.if_nametoindex("eth0")
        with s:
            s.bind(("fd10::1", 0))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            for _ in range(count):
                s.sendto(payload, (group, 5000, 0, index))

    def deliveries(self, group: str, count: int = 3, source: str = H1) -> dict[str, int]:
        """Send ``count`` packets to ``group``; copies each remote VTEP received (fenced)."""
        marker = f"p{next(_markers)}-".encode()
        fence = marker + b"fence"
        if ":" in group:
            self.send6(group, marker + b"data", count)
        else:
            self.send(group, marker + b"data", count, source)
        self.send("192.168.100.255", fence, 1)
        poll(
            lambda: all(cap.with_payload(fence) for cap in self.captures.values()),
            10,
            what="the broadcast fence at every VTEP",
        )
        return {name: len(cap.with_payload(marker + b"data")) for name, cap in self.captures.items()}


def build(lab: Lab, vteps: dict[str, str]) -> Fabric:
    ns = {name: lab.ns(name) for name in ("sw", "a", "b", "c", "d", "h1")}
    sh(f"ip -n {ns['sw']} link add ul type bridge")
    sh(f"ip -n {ns['sw']} link set ul up")
    for name, addr in vteps.items():
        plen = 24 if "." in addr else 64
        lab.veth(ns[name], "eth0", "", ns["sw"], f"p{name}", "")
        sh(f"ip -n {ns[name]} addr add {addr}/{plen} dev eth0 nodad")
        sh(f"ip -n {ns['sw']} link set p{name} master ul")
        sh(
            f"ip -n {ns[name]} link add vxlan100 type vxlan id 100 local {addr} dstport 4789 "
            f"nolearning dev eth0"
        )
        sh(f"ip -n {ns[name]} link add br100 type bridge")
        sh(f"ip -n {ns[name]} link set vxlan100 master br100")
        sh(f"ip -n {ns[name]} link set vxlan100 up")
        sh(f"ip -n {ns[name]} link set br100 up")
    lab.veth(ns["h1"], "eth0", f"{H1}/24", ns["a"], "hp1", "")
    sh(f"ip -n {ns['h1']} addr add {H1_OTHER}/24 dev eth0")
    sh(f"ip -n {ns['h1']} addr add fd10::1/64 dev eth0 nodad")
    sh(f"ip -n {ns['a']} link set hp1 master br100")
    fab = Fabric(lab, ns, vteps)
    fab.captures = {name: Capture(ns[name], "eth0") for name in ("b", "c", "d")}
    return fab


@contextlib.contextmanager
def _fabric(tmp: Path, vteps: dict[str, str]) -> Iterator[Fabric]:
    lab = Lab(tmp)
    try:
        fab = build(lab, vteps)
        try:
            yield fab
        finally:
            for cap in fab.captures.values():
                cap.close()
    finally:
        lab.close()


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    with _fabric(tmp_path_factory.mktemp("replication"), VTEPS) as fab:
        yield fab


@pytest.fixture(scope="module")
def fabric6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    """The same fabric over an IPv6 underlay."""
    with _fabric(tmp_path_factory.mktemp("replication6"), VTEPS6) as fab:
        yield fab


def ip(text: str) -> IPAddress:
    return ip_address(text)


def fabric_store(igmp_proxy: dict[str, bool] | None = None, vteps: dict[str, str] = VTEPS) -> Store:
    """IMETs from B, C and D (with IGMP proxy unless told otherwise)."""
    proxy = {"b": True, "c": True, "d": True, **(igmp_proxy or {})}
    store = Store(own_vteps=[ip(vteps["a"])])
    for name in ("b", "c", "d"):
        store.announce("rr", f"imet-{name}".encode(), RemoteImet(100, ip(vteps[name]), proxy[name], True))
    return store


def smet(
    store: Store, vtep: str, group: str, source: str | None = None, vteps: dict[str, str] = VTEPS
) -> None:
    key = f"smet-{vtep}-{source}-{group}".encode()
    store.announce(
        "rr", key, RemoteSmet(100, ip(vteps[vtep]), None if source is None else ip(source), ip(group))
    )


def unsmet(store: Store, vtep: str, group: str, source: str | None = None) -> None:
    store.withdraw("rr", f"smet-{vtep}-{source}-{group}".encode())


@pytest.fixture
def reconciler(fabric: Fabric, tmp_path: Path) -> Reconciler:
    fabric.reset_a()
    with inside(fabric.ns["a"]):
        return Reconciler(RouteKernel(), PORTS, Settings(journal=tmp_path / "journal.json"))


def only(*names: str, count: int = 3) -> dict[str, int]:
    return {name: (count if name in names else 0) for name in ("b", "c", "d")}


# --------------------------------------------------------------------------- MDB mode


def test_group_reaches_only_its_receivers_and_moves_in_one_pass(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    store = fabric_store()
    smet(store, "b", "239.1.1.1")
    report = fabric.reconcile(reconciler, store)
    assert report.mode == "mdb" and not report.errors and report.failed == 0
    assert fabric.deliveries("239.1.1.1") == only("b")

    unsmet(store, "b", "239.1.1.1")
    smet(store, "c", "239.1.1.1")
    smet(store, "d", "239.1.1.1")
    report = fabric.reconcile(reconciler, store)
    assert (report.added, report.removed) == (2, 1)
    assert fabric.deliveries("239.1.1.1") == only("c", "d")


def test_source_group_and_any_source_entries_each_reach_their_own_lists(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    store = fabric_store()
    smet(store, "b", "239.2.2.2")  # (*,G) from B
    smet(store, "c", "239.2.2.2", source=H1)  # (S,G) from C
    fabric.reconcile(reconciler, store)
    # From S: the (S,G) entry, which carries the (*,G) receivers too.
    assert fabric.deliveries("239.2.2.2", source=H1) == only("b", "c")
    # From another source: only the (*,G) list.
    assert fabric.deliveries("239.2.2.2", source=H1_OTHER) == only("b")


def test_unregistered_multicast_goes_to_the_catch_all_vteps_and_link_local_to_the_flood_list(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    store = fabric_store(igmp_proxy={"d": False})  # D takes no part in RFC 9251: it gets all
    smet(store, "b", "239.1.1.1")
    fabric.reconcile(reconciler, store)
    assert fabric.deliveries("239.9.9.9") == only("d")
    assert fabric.deliveries("239.1.1.1") == only("b", "d")  # group entries list D themselves
    assert fabric.deliveries("224.0.0.251") == only("b", "c", "d")
    assert fabric.deliveries("192.168.100.255") == only("b", "c", "d")


def test_unregistered_multicast_reaches_nobody_when_every_vtep_is_a_proxy(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    store = fabric_store()
    fabric.reconcile(reconciler, store)
    assert fabric.deliveries("239.9.9.9") == only()
    assert fabric.deliveries("224.0.0.251") == only("b", "c", "d")
    # The catch-all lists the unspecified address, which the VXLAN driver drops.
    out = sh(f"bridge -n {fabric.ns['a']} mdb show dev vxlan100").stdout
    assert "grp 0.0.0.0" in out


def test_without_any_proxy_vtep_no_catch_all_is_written_and_the_flood_list_carries_the_rest(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    """Every VTEP wants all IPv4 multicast (no IGMP proxy, e.g. FRR leaves): a catch-all would
    list the flood list, so none is written and the VXLAN driver falls back to the FDB."""
    store = fabric_store(igmp_proxy={"b": False, "c": False, "d": False})
    smet(store, "b", "239.1.1.1")
    fabric.reconcile(reconciler, store)
    out = sh(f"bridge -n {fabric.ns['a']} mdb show dev vxlan100").stdout
    assert "grp 0.0.0.0" not in out and "grp 239.1.1.1" in out
    assert fabric.deliveries("239.9.9.9") == only("b", "c", "d")
    assert fabric.deliveries("239.1.1.1") == only("b", "c", "d")
    # C starts claiming IGMP proxy: the catch-all comes back without it
    store.announce("rr", b"imet-c", RemoteImet(100, ip(VTEPS["c"]), True, True))
    fabric.reconcile(reconciler, store)
    assert fabric.deliveries("239.9.9.9") == only("b", "d")


def test_ipv6_groups_follow_their_own_entries_and_catch_all(fabric: Fabric, reconciler: Reconciler) -> None:
    store = fabric_store()
    smet(store, "c", "ff0e::1:2")
    fabric.reconcile(reconciler, store)
    assert fabric.deliveries("ff0e::1:2") == only("c")
    assert fabric.deliveries("ff0e::9") == only()  # unregistered: the :: catch-all drops it
    assert fabric.deliveries("ff02::1") == only("b", "c", "d")  # link-local: the flood list


def test_bridge_side_makes_the_vxlan_port_a_permanent_router_port(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    fabric.reconcile(reconciler, fabric_store())
    out = sh(f"ip -n {fabric.ns['a']} -d link show vxlan100").stdout
    assert "mcast_router 2" in out


def test_ipv6_underlay_replicates_per_group_and_drops_unregistered(fabric6: Fabric, tmp_path: Path) -> None:
    fabric6.reset_a()
    with inside(fabric6.ns["a"]):
        rec = Reconciler(RouteKernel(), PORTS, Settings(journal=tmp_path / "j.json"))
    store = fabric_store(vteps=VTEPS6)
    smet(store, "c", "239.1.1.1", vteps=VTEPS6)
    smet(store, "b", "ff0e::1:2", vteps=VTEPS6)
    report = fabric6.reconcile(rec, store)
    assert report.mode == "mdb" and not report.errors
    assert rec.devices[100].family == 6
    assert fabric6.deliveries("239.1.1.1") == only("c")
    assert fabric6.deliveries("ff0e::1:2") == only("b")
    assert fabric6.deliveries("239.9.9.9") == only()
    assert fabric6.deliveries("224.0.0.251") == only("b", "c", "d")
    mdb = sh(f"bridge -n {fabric6.ns['a']} mdb show dev vxlan100").stdout
    assert "grp 0.0.0.0" in mdb and "grp ::" in mdb


def test_a_recreated_vxlan_device_is_set_up_and_programmed_again(
    fabric: Fabric, reconciler: Reconciler
) -> None:
    store = fabric_store()
    smet(store, "b", "239.1.1.1")
    first = fabric.reconcile(reconciler, store)
    fabric.reset_a()  # the operator deletes and re-creates vxlan100 under the running agent
    again = fabric.reconcile(reconciler, store)
    assert again.added == first.added == again.desired and not again.errors
    assert "mcast_router 2" in sh(f"ip -n {fabric.ns['a']} -d link show vxlan100").stdout
    assert fabric.deliveries("239.1.1.1") == only("b")


# --------------------------------------------------------------------------- MAC fallback


def test_mac_fallback_shares_receivers_between_colliding_groups(fabric: Fabric, tmp_path: Path) -> None:
    fabric.reset_a()
    with inside(fabric.ns["a"]):
        rec = Reconciler(RouteKernel(), PORTS, Settings(mode="mac", journal=tmp_path / "j.json"))
    store = fabric_store()
    smet(store, "b", "239.1.1.1")
    smet(store, "c", "239.129.1.1")  # same MAC 01:00:5e:01:01:01
    report = fabric.reconcile(rec, store)
    assert report.mode == "mac" and not report.errors
    fdb = sh(f"bridge -n {fabric.ns['a']} fdb show dev vxlan100").stdout
    assert "01:00:5e:01:01:01 dst 10.0.0.2" in fdb and "01:00:5e:01:01:01 dst 10.0.0.3" in fdb
    assert "grp" not in sh(f"bridge -n {fabric.ns['a']} mdb show dev vxlan100").stdout
    # Coarser than the MDB: both colliding groups reach the union, no source filtering...
    assert fabric.deliveries("239.1.1.1") == only("b", "c")
    assert fabric.deliveries("239.129.1.1") == only("b", "c")
    # ...and unregistered groups follow the flood list.
    assert fabric.deliveries("239.9.9.9") == only("b", "c", "d")
    assert fabric.deliveries("224.0.0.251") == only("b", "c", "d")


# --------------------------------------------------------------------------- restart


def _operator_mdb(netns: str, group: str, dst: str) -> None:
    """An operator's VXLAN MDB entry (protocol static), as `bridge mdb add ... dst` makes it."""
    with inside(netns), NetlinkSocket() as nl:
        seq = nl.next_seq()
        ifindex = socket.if_nametoindex("vxlan100")
        msg = mdb_message(RTM_NEWMDB, seq, ifindex, None, ip(group), ip(dst), None)
        assert nl.transact([(seq, msg)])[seq].errno == 0


def test_restart_removes_stale_entries_keeps_operator_entries_and_never_interrupts(
    fabric: Fabric, tmp_path: Path
) -> None:
    fabric.reset_a()
    a = fabric.ns["a"]
    journal = tmp_path / "journal.json"
    # The previous run: also a VTEP E (10.0.0.9) and C's interest in 239.5.5.5.
    before = fabric_store()
    before.announce("rr", b"imet-e", RemoteImet(100, ip("10.0.0.9"), True, True))
    smet(before, "b", "239.1.1.1")
    smet(before, "c", "239.5.5.5")
    with inside(a):
        first = Reconciler(RouteKernel(), PORTS, Settings(journal=journal))
    assert fabric.reconcile(first, before).failed == 0
    del first
    # Operator entries, made by hand while the agent was away.
    sh(f"bridge -n {a} fdb append 00:00:00:00:00:00 dev vxlan100 dst 10.0.0.99 self permanent")
    _operator_mdb(a, "239.7.7.7", VTEPS["d"])

    # A steady stream to the unchanged group across the restart.
    stop = threading.Event()
    sent: list[int] = []

    def stream() -> None:
        with inside(fabric.ns["h1"]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(H1))
            for n in itertools.count():
                if stop.is_set():
                    return
                s.sendto(f"stream-{n:06d}".encode(), ("239.1.1.1", 5000))
                sent.append(n)
                time.sleep(0.001)  # pacing of the stream, not synchronisation

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    poll(lambda: len(fabric.captures["b"].with_payload(b"stream-")) >= 50, 10, what="stream under way")

    after = fabric_store()  # E is gone and nobody wants 239.5.5.5 any more
    smet(after, "b", "239.1.1.1")
    with inside(a):
        second = Reconciler(RouteKernel(), PORTS, Settings(journal=journal))
    report = fabric.reconcile(second, after)
    mark = len(sent)
    poll(lambda: len(fabric.captures["b"].with_payload(b"stream-")) >= mark + 50, 10, what="more stream")
    stop.set()
    sender.join()

    assert report.added == 0 and report.failed == 0
    assert report.removed == 2  # E's flood entry and C's 239.5.5.5 remote
    fdb = sh(f"bridge -n {a} fdb show dev vxlan100").stdout
    mdb = sh(f"bridge -n {a} mdb show dev vxlan100").stdout
    assert "dst 10.0.0.9 " not in fdb + " "
    assert "dst 10.0.0.99 " in fdb + " "  # the operator's flood entry stays
    assert "239.5.5.5" not in mdb
    assert "239.7.7.7" in mdb  # the operator's MDB entry stays
    fence = f"p{next(_markers)}-fence".encode()
    fabric.send("192.168.100.255", fence, 1)
    poll(lambda: fabric.captures["b"].with_payload(fence), 10, what="fence")
    seen = sorted(int(p.payload[7:13]) for p in fabric.captures["b"].with_payload(b"stream-"))
    assert seen == list(range(len(sent))), "packets lost or duplicated across the restart"
    assert not fabric.captures["c"].with_payload(b"stream-")


# --------------------------------------------------------------------------- refusals


class _WrongFamilyKernel(RouteKernel):
    """Claims an IPv6 underlay so that IPv6 remotes reach the kernel, which must refuse them."""

    def link(self, name: str) -> Link | None:
        link = super().link(name)
        return None if link is None else Link(link.name, link.ifindex, link.kind, link.vni, 6, link.master)


def test_kernel_refusal_is_one_clear_line_and_does_not_stop_the_batch(fabric: Fabric, tmp_path: Path) -> None:
    fabric.reset_a()
    now = [0.0]
    ports = [*PORTS, VniPorts(200, "br200", "vxlan200")]  # VNI 200's devices do not exist
    with inside(fabric.ns["a"]):
        rec = Reconciler(
            _WrongFamilyKernel(), ports, Settings(journal=tmp_path / "j.json"), clock=lambda: now[0]
        )
    store = fabric_store()
    store.announce("rr", b"imet-v6", RemoteImet(100, ip("fd00::9"), True, True))
    report = fabric.reconcile(rec, store)
    errors = "\n".join(report.errors)
    assert "vni 200: VXLAN device vxlan200 not found" in errors
    assert "vni 100 vxlan100: cannot add flood remote fd00::9: EAFNOSUPPORT" in errors
    # The IPv4 remotes never reach the kernel: the reconciler's own family check names them.
    assert f"vni 100 vxlan100: skipped remote {VTEPS['b']} for the flood list" in errors
    # The refusal cost one entry: the two catch-all entries of the same batch went in.
    assert report.failed == 1 and report.added == 2
    mdb = sh(f"bridge -n {fabric.ns['a']} mdb show dev vxlan100").stdout
    assert "grp 0.0.0.0" in mdb and "grp ::" in mdb
    # The refused write stays pending with backoff, and is retried once it is due.
    again = fabric.reconcile(rec, store)
    assert again.deferred == 1 and again.failed == 0
    now[0] = rec.next_retry() or 0.0
    assert fabric.reconcile(rec, store).failed == 1


def test_without_cap_net_admin_the_errors_say_eperm(fabric: Fabric, tmp_path: Path) -> None:
    fabric.reset_a()
    script = (
        "import json\n"
        "from ipaddress import ip_address as ip\n"
        "from agent.store import Store, RemoteImet\n"
        "from replication.kernel import RouteKernel\n"
        "from replication.reconciler import Reconciler, Settings, VniPorts\n"
        "s = Store()\n"
        "s.announce('rr', b'1', RemoteImet(100, ip('10.0.0.2'), True, True))\n"
        "r = Reconciler(RouteKernel(), [VniPorts(100, 'br100', 'vxlan100')], Settings(journal=None))\n"
        "print(json.dumps(r.reconcile(s).event()))\n"
    )
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            fabric.ns["a"],
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-net_admin",
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    event = json.loads(out.stdout.strip().splitlines()[-1])
    assert event["failed"] >= 1
    assert any("EPERM" in line and "vxlan100" in line for line in event["errors"])
    assert DEFAULT_PROTOCOL == 232
