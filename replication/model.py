"""What the kernel should hold for head-end replication, computed from the store, and the diff.

Pure: the store and a device description in, sets of entries out. The reconciler compares
these sets with a kernel dump; nothing here knows about sockets.

Two forms of per-group state exist (DESIGN §6):

- ``mdb``: the VXLAN MDB, one remote list per (S,G) / (*,G), plus a catch-all entry per
  family (group 0.0.0.0 / ::) for unregistered multicast. The catch-all lists the VTEPs that
  want all multicast; when there are none it lists the unspecified address, which the VXLAN
  driver drops (``vxlan_xmit_one`` refuses an all-zeros remote). Without a catch-all the
  kernel would fall back to the whole flood list.
- ``mac``: multicast-MAC FDB entries for kernels without the VXLAN MDB. 32 IPv4 groups share
  a MAC, so an entry lists the union of the receivers of every group on it and sources are
  ignored. MACs shared with 224.0.0.0/24 are left alone (link-local control traffic must
  keep reaching the whole flood list), and IPv6 groups are not pruned at all: an IPv6 MAC
  keeps only 32 bits of the group and so is always shared with some ff02:: group (MLD
  reports, solicited-node addresses). Unregistered groups follow the flood list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, Literal, NamedTuple, Protocol, TypeAlias, TypeVar

from bgp.evpn import IPAddress

__all__ = [
    "ANY4",
    "ANY6",
    "ZERO_MAC",
    "Device",
    "FdbEntry",
    "MdbEntry",
    "Mode",
    "StoreSnapshot",
    "StoreView",
    "WrongFamily",
    "desired_flood",
    "desired_mac_groups",
    "desired_mdb",
    "group_mac",
    "plan",
]

Mode: TypeAlias = Literal["mdb", "mac"]
ZERO_MAC: Final = b"\x00" * 6
ANY4: Final = IPv4Address(0)
ANY6: Final = IPv6Address(0)


class FdbEntry(NamedTuple):
    """One remote of one MAC on a VXLAN device: a flood-list member or a multicast-MAC one."""

    device: str
    mac: bytes
    dst: IPAddress


class MdbEntry(NamedTuple):
    """One remote of one VXLAN MDB entry; ``group`` 0.0.0.0 / :: is the catch-all."""

    device: str
    source: IPAddress | None
    group: IPAddress
    dst: IPAddress


@dataclass(frozen=True, slots=True)
class Device:
    """A VNI's VXLAN device as the reconciler found it; ``family`` is its underlay's (4 or 6)."""

    vni: int
    name: str
    bridge: str
    family: int


@dataclass(frozen=True, slots=True)
class WrongFamily:
    """A VTEP the device cannot reach: its address family differs from the underlay's."""

    device: Device
    vtep: IPAddress
    what: str

    def __str__(self) -> str:
        return (
            f"vni {self.device.vni} {self.device.name}: skipped remote {self.vtep} for {self.what}: "
            f"IPv{self.vtep.version} address on an IPv{self.device.family} underlay"
        )


class StoreView(Protocol):
    """The part of ``agent.store.Store`` the replication side reads."""

    def flood_list(self, vni: int) -> frozenset[IPAddress]: ...
    def all_multicast(self, vni: int, version: int) -> frozenset[IPAddress]: ...
    def receivers(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[IPAddress]: ...
    def remote_groups(self, vni: int) -> frozenset[tuple[IPAddress | None, IPAddress]]: ...


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """A frozen copy of what replication reads for some VNIs.

    The store belongs to the daemon's event loop; a reconcile pass runs in a worker thread so
    kernel I/O never stalls BGP. The loop takes this snapshot (cheap: plain sets) and hands it
    over, so the thread never reads a store that is being changed.
    """

    flood: Mapping[int, frozenset[IPAddress]]
    all_mc: Mapping[tuple[int, int], frozenset[IPAddress]]
    groups: Mapping[int, frozenset[tuple[IPAddress | None, IPAddress]]]
    receivers_of: Mapping[tuple[int, IPAddress | None, IPAddress], frozenset[IPAddress]]

    @classmethod
    def of(cls, store: StoreView, vnis: Iterable[int]) -> StoreSnapshot:
        flood, all_mc, groups, receivers_of = {}, {}, {}, {}
        for vni in vnis:
            flood[vni] = store.flood_list(vni)
            all_mc[(vni, 4)] = store.all_multicast(vni, 4)
            all_mc[(vni, 6)] = store.all_multicast(vni, 6)
            groups[vni] = store.remote_groups(vni)
            for source, group in groups[vni]:
                receivers_of[(vni, source, group)] = store.receivers(vni, source, group)
        return cls(flood, all_mc, groups, receivers_of)

    def flood_list(self, vni: int) -> frozenset[IPAddress]:
        return self.flood.get(vni, frozenset())

    def all_multicast(self, vni: int, version: int) -> frozenset[IPAddress]:
        return self.all_mc.get((vni, version), frozenset())

    def receivers(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[IPAddress]:
        return self.receivers_of.get((vni, source, group), frozenset())

    def remote_groups(self, vni: int) -> frozenset[tuple[IPAddress | None, IPAddress]]:
        return self.groups.get(vni, frozenset())


def _reachable(
    device: Device, vteps: Iterable[IPAddress], what: Callable[[], str], problems: list[WrongFamily]
) -> list[IPAddress]:
    """The VTEPs of the device's address family; ``what`` names the entry, made only when a
    VTEP is skipped (a pass would otherwise format every group for nothing)."""
    out = []
    for vtep in vteps:
        if vtep.version == device.family:
            out.append(vtep)
        else:
            problems.append(WrongFamily(device, vtep, what()))
    return out


def desired_flood(store: StoreView, device: Device, problems: list[WrongFamily]) -> set[FdbEntry]:
    """``00:00:00:00:00:00 dst VTEP`` for exactly the VNI's flood list."""
    name = device.name
    return {
        FdbEntry(name, ZERO_MAC, vtep)
        for vtep in _reachable(device, store.flood_list(device.vni), lambda: "the flood list", problems)
    }


def desired_mdb(store: StoreView, device: Device, problems: list[WrongFamily]) -> set[MdbEntry]:
    """Per (S,G)/(*,G) the receivers, and a catch-all per group family unless it would list
    exactly the flood list."""
    vni, name = device.vni, device.name
    sink = ANY4 if device.family == 4 else ANY6
    out: set[MdbEntry] = set()
    for source, group in store.remote_groups(vni):
        what = lambda s=source, g=group: f"group {'*' if s is None else s},{g}"  # noqa: E731
        for vtep in _reachable(device, store.receivers(vni, source, group), what, problems):
            out.add(MdbEntry(name, source, group, vtep))
    flood = {vtep for vtep in store.flood_list(vni) if vtep.version == device.family}
    for version, any_group in ((4, ANY4), (6, ANY6)):
        family_text = lambda v=version: f"unregistered IPv{v} multicast"  # noqa: E731
        wanting = _reachable(device, store.all_multicast(vni, version), family_text, problems)
        if set(wanting) == flood:
            # Without a catch-all the VXLAN driver sends unregistered multicast by the FDB, to
            # the flood list: the same VTEPs, so no entry is needed. This is the usual case
            # next to leaves that claim no IGMP/MLD proxy (FRR), and halves what they cost.
            continue
        for vtep in wanting or (sink,):
            out.add(MdbEntry(name, None, any_group, vtep))
    return out


def group_mac(group: IPAddress) -> bytes:
    """RFC 1112 / RFC 2464 mapping: 01:00:5e + low 23 bits, or 33:33 + low 32 bits."""
    if isinstance(group, IPv4Address):
        return b"\x01\x00\x5e" + (int(group) & 0x7FFFFF).to_bytes(3, "big")
    return b"\x33\x33" + (int(group) & 0xFFFFFFFF).to_bytes(4, "big")


def _mac_is_link_local(mac: bytes) -> bool:
    """Shared with 224.0.0.0/24 (01:00:5e:00:00:xx); every IPv6 MAC counts as shared."""
    return mac[0] == 0x33 or mac[:5] == b"\x01\x00\x5e\x00\x00"


def desired_mac_groups(store: StoreView, device: Device, problems: list[WrongFamily]) -> set[FdbEntry]:
    """Multicast-MAC entries: per MAC the union of the receivers of all its groups."""
    vni, name = device.vni, device.name
    out: set[FdbEntry] = set()
    for source, group in store.remote_groups(vni):
        mac = group_mac(group)
        if _mac_is_link_local(mac):
            continue
        what = lambda s=source, g=group: f"group {'*' if s is None else s},{g} (MAC mode)"  # noqa: E731
        for vtep in _reachable(device, store.receivers(vni, source, group), what, problems):
            out.add(FdbEntry(name, mac, vtep))
    return out


E = TypeVar("E", FdbEntry, MdbEntry)


def plan(desired: set[E], present: set[E], owned: set[E]) -> tuple[list[E], list[E]]:
    """(adds, deletes) so the kernel matches ``desired`` while touching only ``owned`` entries.

    ``present`` is everything the kernel holds (anyone's). A desired entry someone else
    already installed is left as theirs: it forwards the same, and adopting it would make us
    delete an operator's entry later. Callers apply adds before deletes, so a remote that
    moves gets its new copy before the old one stops.
    """
    return list(desired - present), list(owned - desired)
