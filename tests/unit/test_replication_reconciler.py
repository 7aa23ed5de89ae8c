"""Unit tests for replication.reconciler against an in-memory kernel (no namespaces, no netlink)."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Container, Mapping, Sequence
from ipaddress import ip_address
from pathlib import Path

import pytest

from agent.store import RemoteImet, RemoteSmet, Store
from bgp.evpn import IPAddress
from replication.kernel import Kernel, KernelError, Link, Op
from replication.model import ANY4, ANY6, ZERO_MAC, FdbEntry, MdbEntry, group_mac
from replication.netlink import Ack, FdbRecord, MdbRecord
from replication.reconciler import DEFAULT_PROTOCOL, Reconciler, Settings, VniPorts

V2 = ip_address("10.0.0.2")
V3 = ip_address("10.0.0.3")
V4 = ip_address("10.0.0.4")
V8 = ip_address("10.0.0.8")
V9 = ip_address("10.0.0.9")
V6A = ip_address("2001:db8::2")
G1 = ip_address("239.1.1.1")
G1_ALIAS = ip_address("239.129.1.1")
G2 = ip_address("239.1.1.2")
S1 = ip_address("192.0.2.10")
MAC_G1 = group_mac(G1)
PROTO = DEFAULT_PROTOCOL
FOREIGN_PROTO = 3  # RTPROT_BOOT: what `bridge mdb add` uses

VNI100 = VniPorts(100, "br100", "vx100")
VNI200 = VniPorts(200, "br200", "vx200")

FdbKey = tuple[bytes, IPAddress]
MdbKey = tuple[IPAddress | None, IPAddress, IPAddress]


class FakeKernel:
    """The Kernel protocol over dicts, with the kernel quirks the reconciler relies on.

    - VXLAN FDB dumps never report NDA_PROTOCOL (the real kernel drops it).
    - An MDB-capable kernel answers the MDB dump for every VXLAN device and bridge, with an
      empty marker record (dst None) for a device without entries, as RouteKernel does.
    - Appending an existing FDB remote succeeds; adding an existing MDB remote is EEXIST;
      deleting a missing entry of either kind is ENOENT.
    """

    def __init__(self, mdb: bool = True) -> None:
        self.mdb_capable = mdb
        self.links: dict[str, Link] = {}
        self.fdb: dict[int, dict[FdbKey, tuple[int, bool]]] = {}
        self.mdb: dict[int, dict[MdbKey, tuple[int, bool]]] = {}
        self.fail: dict[FdbEntry | MdbEntry, int] = {}
        self.writes: list[list[Op]] = []
        self.router_ports: list[int] = []
        self.queriers: list[tuple[str, IPAddress]] = []
        self.dump_error: KernelError | None = None
        self._seq = 0

    # ----------------------------------------------------------------- set-up helpers

    def add_bridge(self, name: str, ifindex: int) -> None:
        self.links[name] = Link(name, ifindex, "bridge", None, 4, None)

    def add_vxlan(
        self, name: str, ifindex: int, vni: int, bridge: str | None, family: int = 4, kind: str = "vxlan"
    ) -> None:
        master = None if bridge is None else self.links[bridge].ifindex
        self.links[name] = Link(name, ifindex, kind, vni, family, master)
        self.fdb[ifindex] = {}
        self.mdb[ifindex] = {}

    def remove(self, name: str) -> None:
        link = self.links.pop(name)
        self.fdb.pop(link.ifindex, None)
        self.mdb.pop(link.ifindex, None)

    def seed_fdb(self, device: str, mac: bytes, dst: IPAddress, plain: bool = True) -> None:
        self.fdb[self.links[device].ifindex][(mac, dst)] = (0, plain)

    def seed_mdb(
        self,
        device: str,
        source: IPAddress | None,
        group: IPAddress,
        dst: IPAddress,
        protocol: int,
        plain: bool = True,
    ) -> None:
        self.mdb[self.links[device].ifindex][(source, group, dst)] = (protocol, plain)

    # ----------------------------------------------------------------- views for assertions

    def fdb_entries(self, device: str) -> set[FdbEntry]:
        return {FdbEntry(device, mac, dst) for mac, dst in self.fdb[self.links[device].ifindex]}

    def mdb_entries(self, device: str) -> dict[MdbEntry, int]:
        table = self.mdb[self.links[device].ifindex]
        return {MdbEntry(device, s, g, d): proto for (s, g, d), (proto, _plain) in table.items()}

    def written(self) -> list[Op]:
        return [op for batch in self.writes for op in batch]

    # ----------------------------------------------------------------- the Kernel protocol

    def link(self, name: str) -> Link | None:
        return self.links.get(name)

    def ifindex(self, name: str) -> int | None:
        link = self.links.get(name)
        return None if link is None else link.ifindex

    def dump_fdb(self, ifindex: int) -> list[FdbRecord]:
        if self.dump_error is not None:
            raise self.dump_error
        return [
            FdbRecord(ifindex, mac, dst, 0, 0xC0, plain)
            for (mac, dst), (_proto, plain) in self.fdb.get(ifindex, {}).items()
        ]

    def dump_mdb(self, devices: Container[int] | None = None) -> list[MdbRecord]:
        if self.dump_error is not None:
            raise self.dump_error
        if not self.mdb_capable:
            return []
        out: list[MdbRecord] = []
        for link in self.links.values():
            if devices is not None and link.ifindex not in devices:
                continue
            table = self.mdb.get(link.ifindex, {})
            for (source, group, dst), (proto, plain) in table.items():
                out.append(MdbRecord(link.ifindex, link.ifindex, source, group, dst, proto, plain))
            if not table:
                out.append(MdbRecord(link.ifindex, 0, None, ANY4, None, 0, False))
        return out

    def write(self, ops: Sequence[Op], ifindexes: Mapping[str, int], protocol: int) -> list[Ack | None]:
        self.writes.append(list(ops))
        acks: list[Ack | None] = []
        for add, entry in ops:
            self._seq += 1
            code = self.fail.get(entry, 0) or self._apply(add, entry, ifindexes[entry.device], protocol)
            acks.append(Ack(self._seq, code, "injected" if entry in self.fail else ""))
        return acks

    def _apply(self, add: bool, entry: FdbEntry | MdbEntry, ifindex: int, protocol: int) -> int:
        if isinstance(entry, FdbEntry):
            fdb = self.fdb[ifindex]
            fkey = (entry.mac, entry.dst)
            if add:
                fdb.setdefault(fkey, (protocol, True))
                return 0
            return 0 if fdb.pop(fkey, None) is not None else errno.ENOENT
        mdb = self.mdb[ifindex]
        mkey = (entry.source, entry.group, entry.dst)
        if add:
            if mkey in mdb:
                return errno.EEXIST
            mdb[mkey] = (protocol, True)
            return 0
        return 0 if mdb.pop(mkey, None) is not None else errno.ENOENT

    def set_router_port(self, ifindex: int) -> Ack | None:
        self.router_ports.append(ifindex)
        return Ack(0, 0)

    def set_querier(self, bridge: str, address: IPAddress) -> None:
        self.queriers.append((bridge, address))


_typed: Kernel = FakeKernel()  # mypy: the fake satisfies the protocol


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kernel_with(*vnis: VniPorts, mdb: bool = True) -> FakeKernel:
    kernel = FakeKernel(mdb=mdb)
    for n, ports in enumerate(vnis):
        kernel.add_bridge(ports.bridge, 10 + 2 * n)
        kernel.add_vxlan(ports.vxlan, 11 + 2 * n, ports.vni, ports.bridge)
    return kernel


def imet(store: Store, vtep: IPAddress, vni: int = 100, igmp: bool = True, mld: bool = True) -> None:
    store.announce("rr1", f"imet {vni} {vtep}".encode(), RemoteImet(vni, vtep, igmp, mld))


def withdraw_imet(store: Store, vtep: IPAddress, vni: int = 100) -> None:
    assert store.withdraw("rr1", f"imet {vni} {vtep}".encode())


def smet(
    store: Store, vtep: IPAddress, group: IPAddress, source: IPAddress | None = None, vni: int = 100
) -> None:
    key = f"smet {vni} {vtep} {source} {group}".encode()
    assert not store.announce("rr1", key, RemoteSmet(vni, vtep, source, group)).rejected


def sample_store() -> Store:
    """V2 with proxies and a (*,G1) join; V3 without IGMP proxy (all IPv4 multicast)."""
    store = Store()
    imet(store, V2)
    imet(store, V3, igmp=False)
    smet(store, V2, G1)
    return store


SAMPLE_FDB = {FdbEntry("vx100", ZERO_MAC, V2), FdbEntry("vx100", ZERO_MAC, V3)}
SAMPLE_MDB = {
    MdbEntry("vx100", None, G1, V2),
    MdbEntry("vx100", None, G1, V3),
    MdbEntry("vx100", None, ANY4, V3),
    MdbEntry("vx100", None, ANY6, ANY4),
}


# --------------------------------------------------------------------------- programming


def test_first_pass_programs_flood_and_mdb_entries() -> None:
    kernel = kernel_with(VNI100)
    rec = Reconciler(kernel, [VNI100])
    report = rec.reconcile(sample_store())
    assert report.errors == ()
    assert report.mode == rec.mode == "mdb"
    assert (report.added, report.removed, report.failed, report.deferred) == (6, 0, 0, 0)
    assert report.desired == 6
    assert report.changed
    assert kernel.fdb_entries("vx100") == SAMPLE_FDB
    assert kernel.mdb_entries("vx100") == dict.fromkeys(SAMPLE_MDB, PROTO)
    assert kernel.router_ports == [11]
    assert rec.devices[100].name == "vx100"
    assert rec.devices[100].family == 4
    # adds only, in one batch
    assert len(kernel.writes) == 1
    assert all(add for add, _ in kernel.writes[0])
    assert report.event()["added"] == 6


def test_second_pass_is_a_noop() -> None:
    kernel = kernel_with(VNI100)
    rec = Reconciler(kernel, [VNI100])
    store = sample_store()
    rec.reconcile(store)
    writes = len(kernel.writes)
    report = rec.reconcile(store)
    assert (report.added, report.removed, report.failed, report.deferred) == (0, 0, 0, 0)
    assert report.desired == 6
    assert not report.changed
    assert report.errors == ()
    assert len(kernel.writes) == writes
    assert kernel.router_ports == [11]  # device set-up happens once


def test_withdrawn_imet_removes_exactly_that_remote() -> None:
    kernel = kernel_with(VNI100)
    rec = Reconciler(kernel, [VNI100])
    store = sample_store()
    smet(store, V3, G2)
    rec.reconcile(store)
    fdb_before = kernel.fdb_entries("vx100")
    mdb_before = set(kernel.mdb_entries("vx100"))
    withdraw_imet(store, V3)
    report = rec.reconcile(store)
    assert report.errors == ()
    fdb_after = kernel.fdb_entries("vx100")
    mdb_after = set(kernel.mdb_entries("vx100"))
    assert fdb_before - fdb_after == {FdbEntry("vx100", ZERO_MAC, V3)}
    assert fdb_after <= fdb_before
    # V3 lost its flood entry and its all-multicast memberships, but keeps its SMET (*,G2)
    assert mdb_before - mdb_after == {MdbEntry("vx100", None, G1, V3), MdbEntry("vx100", None, ANY4, V3)}
    # the IPv4 catch-all now has nobody and gets the sink
    assert mdb_after - mdb_before == {MdbEntry("vx100", None, ANY4, ANY4)}
    assert MdbEntry("vx100", None, G2, V3) in mdb_after
    assert (report.added, report.removed) == (1, 3)
    # adds go down before deletes
    adds = [add for add, _ in kernel.writes[-1]]
    assert adds == sorted(adds, reverse=True)


def test_ipv6_underlay_programs_ipv6_remotes_and_reports_wrong_family() -> None:
    kernel = FakeKernel()
    kernel.add_bridge("br100", 10)
    kernel.add_vxlan("vx100", 11, 100, "br100", family=6)
    store = Store()
    imet(store, V6A)
    imet(store, V2)
    rec = Reconciler(kernel, [VNI100])
    report = rec.reconcile(store)
    assert kernel.fdb_entries("vx100") == {FdbEntry("vx100", ZERO_MAC, V6A)}
    assert set(kernel.mdb_entries("vx100")) == {
        MdbEntry("vx100", None, ANY4, ANY6),
        MdbEntry("vx100", None, ANY6, ANY6),
    }
    assert report.failed == 0
    assert report.errors == (
        "vni 100 vx100: skipped remote 10.0.0.2 for the flood list: IPv4 address on an IPv6 underlay",
    )


# --------------------------------------------------------------------------- ownership


def test_foreign_entries_are_never_removed() -> None:
    kernel = kernel_with(VNI100)
    kernel.seed_fdb("vx100", ZERO_MAC, V9)  # not in the journal
    kernel.seed_fdb("vx100", MAC_G1, V9)
    kernel.seed_mdb("vx100", None, G2, V9, FOREIGN_PROTO)  # another protocol
    kernel.seed_mdb("vx100", S1, G2, V8, PROTO, plain=False)  # ours by number, but with a VNI of its own
    foreign_fdb = kernel.fdb_entries("vx100")
    foreign_mdb = kernel.mdb_entries("vx100")
    rec = Reconciler(kernel, [VNI100], Settings(mode="mdb"))
    store = Store()
    imet(store, V2)
    report = rec.reconcile(store)
    assert report.removed == 0
    assert foreign_fdb <= kernel.fdb_entries("vx100")
    assert foreign_mdb.items() <= kernel.mdb_entries("vx100").items()
    assert not [entry for add, entry in kernel.written() if not add]
    # and still untouched when the store changes again
    withdraw_imet(store, V2)
    assert rec.reconcile(store).removed == 3  # our flood remote for V2 and the 2 catch-all sinks
    assert kernel.fdb_entries("vx100") == foreign_fdb
    assert foreign_mdb.items() <= kernel.mdb_entries("vx100").items()


def test_desired_foreign_entry_is_not_adopted() -> None:
    kernel = kernel_with(VNI100)
    kernel.seed_fdb("vx100", ZERO_MAC, V2)
    kernel.seed_mdb("vx100", None, ANY6, ANY4, FOREIGN_PROTO)
    store = Store()
    imet(store, V2)
    rec = Reconciler(kernel, [VNI100])
    report = rec.reconcile(store)
    added = {entry for add, entry in kernel.written() if add}
    assert FdbEntry("vx100", ZERO_MAC, V2) not in added
    assert MdbEntry("vx100", None, ANY6, ANY4) not in added
    assert report.added == 1  # only the IPv4 catch-all sink
    withdraw_imet(store, V2)
    assert rec.reconcile(store).removed == 1  # our IPv4 catch-all sink: an empty VNI needs none
    assert FdbEntry("vx100", ZERO_MAC, V2) in kernel.fdb_entries("vx100")
    assert MdbEntry("vx100", None, ANY6, ANY4) in kernel.mdb_entries("vx100")


def test_stale_owned_entries_are_removed_at_startup(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    journal.write_text(
        json.dumps(
            {
                "version": 1,
                "fdb": [["vx100", "000000000000", "10.0.0.9"], ["vx100", MAC_G1.hex(), "10.0.0.9"]],
            }
        )
    )
    kernel = kernel_with(VNI100)
    kernel.seed_fdb("vx100", ZERO_MAC, V9)  # journalled: ours
    kernel.seed_fdb("vx100", MAC_G1, V9)  # journalled: ours
    kernel.seed_fdb("vx100", ZERO_MAC, V8)  # not journalled: foreign
    kernel.seed_mdb("vx100", None, G2, V9, PROTO)  # our protocol: ours
    kernel.seed_mdb("vx100", None, G2, V8, FOREIGN_PROTO)
    store = Store()
    imet(store, V2)
    rec = Reconciler(kernel, [VNI100], Settings(journal=journal))
    report = rec.reconcile(store)
    assert report.errors == ()
    assert report.removed == 3
    assert kernel.fdb_entries("vx100") == {FdbEntry("vx100", ZERO_MAC, V2), FdbEntry("vx100", ZERO_MAC, V8)}
    assert MdbEntry("vx100", None, G2, V9) not in kernel.mdb_entries("vx100")
    assert kernel.mdb_entries("vx100")[MdbEntry("vx100", None, G2, V8)] == FOREIGN_PROTO
    assert json.loads(journal.read_text())["fdb"] == [["vx100", "000000000000", "10.0.0.2"]]


def test_journal_is_written_and_reloaded(tmp_path: Path) -> None:
    journal = tmp_path / "state" / "journal.json"
    kernel = kernel_with(VNI100)
    store = sample_store()
    Reconciler(kernel, [VNI100], Settings(journal=journal)).reconcile(store)
    data = json.loads(journal.read_text())
    assert data["version"] == 1
    assert sorted(data["fdb"]) == [
        ["vx100", "000000000000", "10.0.0.2"],
        ["vx100", "000000000000", "10.0.0.3"],
    ]
    assert not journal.with_suffix(".json.tmp").exists()
    withdraw_imet(store, V2)
    # without the journal a restarted agent cannot tell its FDB entries from anyone else's
    blind = Reconciler(kernel, [VNI100], Settings(journal=None)).reconcile(store)
    assert blind.removed == 1  # the IPv4 catch-all (MDB entries carry their owner), now = the flood list
    assert FdbEntry("vx100", ZERO_MAC, V2) in kernel.fdb_entries("vx100")
    # with it, the restarted agent removes its own stale remote (V2 keeps its (*,G1) SMET)
    report = Reconciler(kernel, [VNI100], Settings(journal=journal)).reconcile(store)
    assert report.errors == ()
    assert (report.added, report.removed) == (0, 1)
    assert kernel.fdb_entries("vx100") == {FdbEntry("vx100", ZERO_MAC, V3)}
    assert json.loads(journal.read_text())["fdb"] == [["vx100", "000000000000", "10.0.0.3"]]


def test_unreadable_journal_leaves_fdb_entries_alone(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    journal.write_text("{not json")
    kernel = kernel_with(VNI100)
    kernel.seed_fdb("vx100", ZERO_MAC, V9)
    report = Reconciler(kernel, [VNI100], Settings(journal=journal)).reconcile(Store())
    assert report.removed == 0
    assert FdbEntry("vx100", ZERO_MAC, V9) in kernel.fdb_entries("vx100")


def test_journal_keeps_entries_of_devices_outside_the_pass(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    kernel = kernel_with(VNI100, VNI200)
    store = Store()
    imet(store, V2, vni=100)
    imet(store, V3, vni=200)
    rec = Reconciler(kernel, [VNI100, VNI200], Settings(journal=journal))
    rec.reconcile(store)
    assert len(json.loads(journal.read_text())["fdb"]) == 2
    withdraw_imet(store, V2, vni=100)
    rec.reconcile(store, vnis=[100])
    assert json.loads(journal.read_text())["fdb"] == [["vx200", "000000000000", "10.0.0.3"]]
    assert kernel.fdb_entries("vx200") == {FdbEntry("vx200", ZERO_MAC, V3)}


# --------------------------------------------------------------------------- failures and backoff


@pytest.mark.parametrize(
    ("entry", "code", "name", "what"),
    [
        (FdbEntry("vx100", ZERO_MAC, V3), errno.EAFNOSUPPORT, "EAFNOSUPPORT", "flood remote 10.0.0.3"),
        (MdbEntry("vx100", None, G1, V2), errno.ENOBUFS, "ENOBUFS", "group *,239.1.1.1 remote 10.0.0.2"),
    ],
)
def test_failed_write_is_reported_deferred_and_retried(
    entry: FdbEntry | MdbEntry, code: int, name: str, what: str
) -> None:
    kernel = kernel_with(VNI100)
    kernel.fail[entry] = code
    clock = Clock(1000.0)
    rec = Reconciler(kernel, [VNI100], Settings(retry_initial=1.0, retry_max=60.0), clock=clock)
    store = sample_store()

    report = rec.reconcile(store)
    assert report.failed == 1
    assert report.added == 5
    (line,) = report.errors
    assert line.startswith(f"vni 100 vx100: cannot add {what}: {name} (")
    assert line.endswith("injected (retry in 1s)")
    assert rec.next_retry() == 1001.0

    # before the deadline: not written again, counted as deferred
    clock.now = 1000.5
    writes = len(kernel.writes)
    report = rec.reconcile(store)
    assert (report.deferred, report.failed, report.added) == (1, 0, 0)
    assert len(kernel.writes) == writes
    assert rec.next_retry() == 1001.0

    # at the deadline: retried, fails again, the delay doubles
    clock.now = 1001.0
    report = rec.reconcile(store)
    assert (report.deferred, report.failed) == (0, 1)
    assert report.errors[0].endswith("(retry in 2s)")
    assert kernel.written()[-1] == (True, entry)
    assert rec.next_retry() == 1003.0

    del kernel.fail[entry]
    clock.now = 1002.5
    assert rec.reconcile(store).deferred == 1
    clock.now = 1003.0
    report = rec.reconcile(store)
    assert (report.added, report.failed, report.deferred, report.errors) == (1, 0, 0, ())
    assert rec.next_retry() is None
    assert entry in kernel.fdb_entries("vx100") | set(kernel.mdb_entries("vx100"))


def test_backoff_is_capped_at_retry_max() -> None:
    kernel = kernel_with(VNI100)
    entry = FdbEntry("vx100", ZERO_MAC, V2)
    kernel.fail[entry] = errno.EINVAL
    clock = Clock(0.0)
    rec = Reconciler(kernel, [VNI100], Settings(retry_initial=1.0, retry_max=5.0), clock=clock)
    store = Store()
    imet(store, V2)
    delays = []
    for _ in range(5):
        rec.reconcile(store)
        deadline = rec.next_retry()
        assert deadline is not None
        delays.append(deadline - clock.now)
        clock.now = deadline
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_is_dropped_when_entry_no_longer_wanted() -> None:
    kernel = kernel_with(VNI100)
    kernel.fail[FdbEntry("vx100", ZERO_MAC, V3)] = errno.EAFNOSUPPORT
    clock = Clock()
    rec = Reconciler(kernel, [VNI100], clock=clock)
    store = sample_store()
    assert rec.reconcile(store).failed == 1
    assert rec.next_retry() is not None
    withdraw_imet(store, V3)
    report = rec.reconcile(store)
    assert report.failed == 0
    assert report.deferred == 0
    assert rec.next_retry() is None


def test_failed_fdb_add_is_not_journalled(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    kernel = kernel_with(VNI100)
    kernel.fail[FdbEntry("vx100", ZERO_MAC, V3)] = errno.EAFNOSUPPORT
    Reconciler(kernel, [VNI100], Settings(journal=journal)).reconcile(sample_store())
    assert json.loads(journal.read_text())["fdb"] == [["vx100", "000000000000", "10.0.0.2"]]


# --------------------------------------------------------------------------- devices


def test_missing_device_reports_error_and_other_vnis_continue() -> None:
    kernel = kernel_with(VNI100)
    store = sample_store()
    imet(store, V4, vni=200)
    rec = Reconciler(kernel, [VNI100, VNI200])
    report = rec.reconcile(store)
    assert report.errors == ("vni 200: VXLAN device vx200 not found; nothing programmed",)
    assert kernel.fdb_entries("vx100") == SAMPLE_FDB
    assert set(kernel.mdb_entries("vx100")) == SAMPLE_MDB
    assert set(rec.devices) == {100}


def test_link_with_other_vni_is_refused() -> None:
    kernel = FakeKernel()
    kernel.add_bridge("br100", 10)
    kernel.add_vxlan("vx100", 11, 101, "br100")
    rec = Reconciler(kernel, [VNI100])
    report = rec.reconcile(sample_store())
    assert report.errors == ("vni 100: vx100 carries VNI 101, not 100",)
    assert kernel.writes == []
    assert kernel.router_ports == []
    assert rec.devices == {}


def test_non_vxlan_device_is_refused() -> None:
    kernel = FakeKernel()
    kernel.add_bridge("br100", 10)
    kernel.add_vxlan("vx100", 11, 100, "br100", kind="dummy")
    report = Reconciler(kernel, [VNI100]).reconcile(sample_store())
    assert report.errors == ("vni 100: vx100 is a dummy device, not VXLAN",)
    assert kernel.writes == []


def test_vxlan_outside_bridge_is_reported_but_programmed() -> None:
    kernel = FakeKernel()
    kernel.add_bridge("br100", 10)
    kernel.add_vxlan("vx100", 11, 100, None)
    report = Reconciler(kernel, [VNI100]).reconcile(sample_store())
    assert report.errors == (
        "vni 100: vx100 is not a port of bridge br100; multicast from local hosts will not reach it",
    )
    assert kernel.router_ports == []
    assert kernel.fdb_entries("vx100") == SAMPLE_FDB


def test_recreated_device_is_set_up_and_programmed_again() -> None:
    kernel = kernel_with(VNI100)
    rec = Reconciler(kernel, [VNI100])
    store = sample_store()
    rec.reconcile(store)
    kernel.remove("vx100")
    report = rec.reconcile(store)
    assert report.errors == ("vni 100: VXLAN device vx100 not found; nothing programmed",)
    kernel.add_vxlan("vx100", 42, 100, "br100")
    report = rec.reconcile(store)
    assert report.errors == ()
    assert report.added == 6
    assert kernel.router_ports == [11, 42]
    assert kernel.fdb_entries("vx100") == SAMPLE_FDB


def test_kernel_error_aborts_the_pass_with_a_report() -> None:
    kernel = kernel_with(VNI100)
    kernel.dump_error = KernelError("dump kept changing under us (5 attempts)")
    report = Reconciler(kernel, [VNI100]).reconcile(sample_store())
    assert report.errors == (
        "replication pass aborted: dump kept changing under us (5 attempts); "
        "the next pass re-reads the kernel",
    )
    assert kernel.writes == []


# --------------------------------------------------------------------------- MAC mode


def mac_store() -> Store:
    store = Store()
    imet(store, V2)
    imet(store, V3)
    smet(store, V2, G1)
    smet(store, V3, G1_ALIAS, S1)
    return store


MAC_FDB = {
    FdbEntry("vx100", ZERO_MAC, V2),
    FdbEntry("vx100", ZERO_MAC, V3),
    FdbEntry("vx100", MAC_G1, V2),
    FdbEntry("vx100", MAC_G1, V3),
}


def test_mode_mac_programs_multicast_mac_fdb_and_removes_owned_mdb() -> None:
    kernel = kernel_with(VNI100)
    kernel.seed_mdb("vx100", None, G1, V2, PROTO)  # left by an mdb-mode run
    kernel.seed_mdb("vx100", None, ANY4, ANY4, PROTO)
    kernel.seed_mdb("vx100", None, G2, V9, FOREIGN_PROTO)
    rec = Reconciler(kernel, [VNI100], Settings(mode="mac"))
    report = rec.reconcile(mac_store())
    assert report.mode == "mac"
    assert report.errors == ()
    assert kernel.fdb_entries("vx100") == MAC_FDB
    assert kernel.mdb_entries("vx100") == {MdbEntry("vx100", None, G2, V9): FOREIGN_PROTO}
    assert (report.added, report.removed) == (4, 2)
    assert not [e for add, e in kernel.written() if add and isinstance(e, MdbEntry)]


def test_mode_auto_detects_mac_when_mdb_dump_does_not_answer() -> None:
    kernel = kernel_with(VNI100, mdb=False)
    rec = Reconciler(kernel, [VNI100])
    assert rec.mode is None
    report = rec.reconcile(mac_store())
    assert report.mode == rec.mode == "mac"
    assert kernel.fdb_entries("vx100") == MAC_FDB
    assert not [e for _, e in kernel.written() if isinstance(e, MdbEntry)]
    assert rec.reconcile(mac_store()).added == 0


def test_mode_auto_detects_mdb_for_an_empty_device() -> None:
    kernel = kernel_with(VNI100)
    report = Reconciler(kernel, [VNI100]).reconcile(mac_store())
    assert report.mode == "mdb"
    assert MAC_G1 not in {e.mac for e in kernel.fdb_entries("vx100")}


def test_mac_mode_then_mdb_mode_removes_journalled_mac_entries(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    kernel = kernel_with(VNI100)
    Reconciler(kernel, [VNI100], Settings(mode="mac", journal=journal)).reconcile(mac_store())
    assert kernel.fdb_entries("vx100") == MAC_FDB
    report = Reconciler(kernel, [VNI100], Settings(mode="mdb", journal=journal)).reconcile(mac_store())
    assert report.errors == ()
    assert kernel.fdb_entries("vx100") == {FdbEntry("vx100", ZERO_MAC, V2), FdbEntry("vx100", ZERO_MAC, V3)}
    assert MdbEntry("vx100", S1, G1_ALIAS, V3) in kernel.mdb_entries("vx100")


def test_delete_of_an_entry_already_gone_counts_as_removed() -> None:
    kernel = kernel_with(VNI100)
    stale = MdbEntry("vx100", None, G2, V9)
    kernel.seed_mdb("vx100", None, G2, V9, PROTO)
    kernel.fail[stale] = errno.ENOENT  # someone removed it between our dump and our write
    rec = Reconciler(kernel, [VNI100], clock=Clock())
    report = rec.reconcile(Store())
    assert (False, stale) in kernel.written()
    assert (report.removed, report.failed, report.errors) == (1, 0, ())
    assert rec.next_retry() is None


def test_a_failed_journal_write_is_retried_on_the_next_pass(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the journal's directory should be")
    journal = blocker / "journal.json"
    kernel = kernel_with(VNI100)
    store = sample_store()
    rec = Reconciler(kernel, [VNI100], Settings(journal=journal))
    rec.reconcile(store)
    assert not journal.exists()
    blocker.unlink()
    assert rec.reconcile(store).changed is False
    assert sorted(json.loads(journal.read_text())["fdb"]) == [
        ["vx100", "000000000000", "10.0.0.2"],
        ["vx100", "000000000000", "10.0.0.3"],
    ]


def test_a_device_that_turned_bad_is_no_longer_listed() -> None:
    kernel = kernel_with(VNI100)
    rec = Reconciler(kernel, [VNI100])
    rec.reconcile(sample_store())
    assert 100 in rec.devices
    kernel.remove("vx100")
    kernel.add_vxlan("vx100", 99, 999, "br100")
    report = rec.reconcile(sample_store())
    assert "carries VNI 999" in "\n".join(report.errors)
    assert 100 not in rec.devices


def test_the_log_says_which_mode_runs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="evpn.replication")
    Reconciler(kernel_with(VNI100), [VNI100]).reconcile(sample_store())
    Reconciler(kernel_with(VNI100, mdb=False), [VNI100]).reconcile(sample_store())
    text = caplog.text
    assert "replication mode mdb: the kernel has a VXLAN MDB" in text
    assert "replication mode mac: the kernel has no VXLAN MDB" in text


def test_a_forced_mode_is_logged_and_mdb_without_kernel_support_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="evpn.replication")
    report = Reconciler(kernel_with(VNI100, mdb=False), [VNI100], Settings(mode="mdb")).reconcile(
        sample_store()
    )
    assert "replication mode mdb (set in the config)" in caplog.text
    assert any(
        "replication.mode is mdb but the kernel shows no VXLAN MDB on vx100" in e for e in report.errors
    )


def test_held_deletes_keep_stale_entries_until_released() -> None:
    """After a restart the store starts empty: adds go in, deletes wait for convergence."""
    kernel = kernel_with(VNI100)
    store = sample_store()
    Reconciler(kernel, [VNI100]).reconcile(store)
    programmed = (kernel.fdb_entries("vx100"), set(kernel.mdb_entries("vx100")))
    restarted = Reconciler(kernel, [VNI100])  # the MDB entries carry our protocol: ours
    held = restarted.reconcile(Store(), hold_deletes=True)
    assert held.removed == 0 and held.deferred > 0
    assert set(kernel.mdb_entries("vx100")) >= programmed[1]
    released = restarted.reconcile(Store())
    assert released.removed == held.deferred
