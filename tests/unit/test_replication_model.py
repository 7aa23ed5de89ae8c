"""Unit and property tests for replication.model: desired kernel state and the diff."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from hypothesis import given
from hypothesis import strategies as st

from agent.store import RemoteImet, RemoteSmet, Store
from bgp.evpn import IPAddress
from replication.model import (
    ANY4,
    ANY6,
    ZERO_MAC,
    Device,
    FdbEntry,
    MdbEntry,
    WrongFamily,
    desired_flood,
    desired_mac_groups,
    desired_mdb,
    group_mac,
    plan,
)

V2 = ip_address("10.0.0.2")
V3 = ip_address("10.0.0.3")
V4 = ip_address("10.0.0.4")
V5 = ip_address("10.0.0.5")
V6A = ip_address("2001:db8::2")
V6B = ip_address("2001:db8::3")
G1 = ip_address("239.1.1.1")
G1_ALIAS = ip_address("239.129.1.1")  # same low 23 bits as G1
G2 = ip_address("239.1.1.2")
G_LL_ALIAS = ip_address("225.0.0.1")  # shares 01:00:5e:00:00:01 with 224.0.0.1
G6 = ip_address("ff0e::1")
S1 = ip_address("192.0.2.10")
DEV4 = Device(100, "vx100", "br100", 4)
DEV6 = Device(100, "vx100", "br100", 6)
MAC_G1 = bytes.fromhex("01005e010101")


def imet(store: Store, vtep: IPAddress, vni: int = 100, igmp: bool = True, mld: bool = True) -> None:
    store.announce("rr1", f"imet {vni} {vtep}".encode(), RemoteImet(vni, vtep, igmp, mld))


def smet(
    store: Store, vtep: IPAddress, group: IPAddress, source: IPAddress | None = None, vni: int = 100
) -> None:
    key = f"smet {vni} {vtep} {source} {group}".encode()
    assert not store.announce("rr1", key, RemoteSmet(vni, vtep, source, group)).rejected


# --------------------------------------------------------------------------- flood


def test_desired_flood_is_exactly_the_flood_list() -> None:
    store = Store()
    imet(store, V2)
    imet(store, V3, igmp=False)
    imet(store, V4, vni=200)
    smet(store, V5, G1)  # SMET alone does not put a VTEP in the flood list
    problems: list[WrongFamily] = []
    assert desired_flood(store, DEV4, problems) == {
        FdbEntry("vx100", ZERO_MAC, V2),
        FdbEntry("vx100", ZERO_MAC, V3),
    }
    assert problems == []
    assert desired_flood(Store(), DEV4, problems) == set()


def test_desired_flood_ipv6_underlay_skips_ipv4_vteps() -> None:
    store = Store()
    imet(store, V6A)
    imet(store, V2)
    problems: list[WrongFamily] = []
    assert desired_flood(store, DEV6, problems) == {FdbEntry("vx100", ZERO_MAC, V6A)}
    assert problems == [WrongFamily(DEV6, V2, "the flood list")]


# --------------------------------------------------------------------------- MDB


def test_desired_mdb_receivers_include_star_g_and_all_multicast() -> None:
    store = Store()
    imet(store, V2)
    imet(store, V3)
    imet(store, V4, igmp=False)  # wants all IPv4 multicast, has MLD proxy
    smet(store, V2, G1)  # (*,G1)
    smet(store, V3, G1, S1)  # (S1,G1)
    smet(store, V3, G2)
    problems: list[WrongFamily] = []
    name = "vx100"
    assert desired_mdb(store, DEV4, problems) == {
        MdbEntry(name, None, G1, V2),
        MdbEntry(name, None, G1, V4),
        MdbEntry(name, S1, G1, V3),
        MdbEntry(name, S1, G1, V2),  # from (*,G1)
        MdbEntry(name, S1, G1, V4),  # all-multicast
        MdbEntry(name, None, G2, V3),
        MdbEntry(name, None, G2, V4),
        MdbEntry(name, None, ANY4, V4),  # catch-all IPv4: the all-multicast VTEP
        MdbEntry(name, None, ANY6, ANY4),  # catch-all IPv6: nobody, so the unspecified sink
    }
    assert problems == []


def test_desired_mdb_catch_all_lists_all_multicast_vteps_per_family() -> None:
    store = Store()
    imet(store, V2, igmp=False, mld=True)
    imet(store, V3, igmp=True, mld=False)
    imet(store, V4, igmp=False, mld=False)
    imet(store, V5)
    entries = desired_mdb(store, DEV4, [])
    assert {e.dst for e in entries if e.group == ANY4} == {V2, V4}
    assert {e.dst for e in entries if e.group == ANY6} == {V3, V4}
    assert all(e.source is None for e in entries)
    assert len(entries) == 4


def test_desired_mdb_catch_all_sink_is_the_underlay_unspecified_address() -> None:
    store = Store()
    imet(store, V2)
    assert desired_mdb(store, DEV4, []) == {
        MdbEntry("vx100", None, ANY4, ANY4),
        MdbEntry("vx100", None, ANY6, ANY4),
    }
    store6 = Store()
    imet(store6, V6A)
    assert desired_mdb(store6, DEV6, []) == {
        MdbEntry("vx100", None, ANY4, ANY6),
        MdbEntry("vx100", None, ANY6, ANY6),
    }
    # an empty VNI needs no catch-all: the kernel's fall-back, the flood list, is empty too
    assert desired_mdb(Store(), DEV6, []) == set()


def test_no_catch_all_when_it_would_list_exactly_the_flood_list() -> None:
    """Leaves without IGMP/MLD proxy (FRR) want all multicast; so does the flood list."""
    store = Store()
    imet(store, V2, igmp=False, mld=False)
    imet(store, V3, igmp=False, mld=False)
    smet(store, V2, G1)
    assert desired_mdb(store, DEV4, []) == {MdbEntry("vx100", None, G1, V2), MdbEntry("vx100", None, G1, V3)}
    # one proxy-capable VTEP more: the catch-alls come back, listing the others
    imet(store, V4)
    assert desired_mdb(store, DEV4, []) >= {
        MdbEntry("vx100", None, ANY4, V2),
        MdbEntry("vx100", None, ANY4, V3),
        MdbEntry("vx100", None, ANY6, V2),
        MdbEntry("vx100", None, ANY6, V3),
    }
    # IGMP proxy but no MLD proxy: only the IPv4 catch-all is needed (nobody), IPv6 follows the flood
    only_igmp = Store()
    imet(only_igmp, V2, mld=False)
    assert desired_mdb(only_igmp, DEV4, []) == {MdbEntry("vx100", None, ANY4, ANY4)}


def test_desired_mdb_skips_wrong_family_and_reports_it() -> None:
    store = Store()
    imet(store, V2)
    imet(store, V6A, igmp=False, mld=False)
    smet(store, V6A, G1)
    smet(store, V2, G1)
    problems: list[WrongFamily] = []
    entries = desired_mdb(store, DEV4, problems)
    assert V6A not in {e.dst for e in entries}
    assert entries == {
        MdbEntry("vx100", None, G1, V2),
        # the only all-multicast VTEP is unreachable: both catch-alls fall back to the sink
        MdbEntry("vx100", None, ANY4, ANY4),
        MdbEntry("vx100", None, ANY6, ANY4),
    }
    assert {p.what for p in problems} == {
        "group *,239.1.1.1",
        "unregistered IPv4 multicast",
        "unregistered IPv6 multicast",
    }
    assert all(p.vtep == V6A and p.device == DEV4 for p in problems)
    text = str(next(p for p in problems if p.what.startswith("group")))
    assert text == (
        "vni 100 vx100: skipped remote 2001:db8::2 for group *,239.1.1.1: IPv6 address on an IPv4 underlay"
    )


def test_wrong_family_str_for_ipv4_vtep_on_ipv6_underlay() -> None:
    problem = WrongFamily(Device(7, "vx7", "br7", 6), V2, "the flood list")
    assert str(problem) == (
        "vni 7 vx7: skipped remote 10.0.0.2 for the flood list: IPv4 address on an IPv6 underlay"
    )


def test_desired_mdb_is_per_device() -> None:
    store = Store()
    imet(store, V2, vni=200, igmp=False)
    smet(store, V3, G1, vni=200)
    # VNI 100 sees none of VNI 200's state
    assert desired_mdb(store, DEV4, []) == set()
    other = Device(200, "vx200", "br200", 4)
    assert MdbEntry("vx200", None, G1, V3) in desired_mdb(store, other, [])


# --------------------------------------------------------------------------- MAC mode


def test_group_mac_ipv4() -> None:
    assert group_mac(G1) == MAC_G1
    assert group_mac(G1_ALIAS) == MAC_G1
    assert group_mac(ip_address("224.0.0.1")) == bytes.fromhex("01005e000001")
    assert group_mac(G_LL_ALIAS) == bytes.fromhex("01005e000001")
    assert group_mac(ip_address("239.255.255.250")) == bytes.fromhex("01005e7ffffa")


def test_group_mac_ipv6() -> None:
    assert group_mac(G6) == bytes.fromhex("333300000001")
    assert group_mac(ip_address("ff02::1:ff12:3456")) == bytes.fromhex("3333ff123456")
    assert group_mac(ip_address("ff0e::dead:beef")) == bytes.fromhex("3333deadbeef")


@given(st.integers(0xE0000000, 0xEFFFFFFF))
def test_group_mac_ipv4_property(n: int) -> None:
    mac = group_mac(IPv4Address(n))
    assert len(mac) == 6
    assert mac[:3] == b"\x01\x00\x5e"
    assert mac[3] & 0x80 == 0
    assert int.from_bytes(mac[3:], "big") == n & 0x7FFFFF


@given(st.integers(0xFF << 120, 2**128 - 1))
def test_group_mac_ipv6_property(n: int) -> None:
    mac = group_mac(IPv6Address(n))
    assert mac[:2] == b"\x33\x33"
    assert mac[2:] == IPv6Address(n).packed[-4:]


def test_desired_mac_groups_union_of_colliding_groups() -> None:
    store = Store()
    imet(store, V2)
    imet(store, V3)
    imet(store, V5, igmp=False)  # all-multicast: receives every IPv4 group
    smet(store, V2, G1)
    smet(store, V3, G1_ALIAS, S1)  # (S,G): the source is ignored, the MAC is shared with G1
    smet(store, V4, G2)
    problems: list[WrongFamily] = []
    assert desired_mac_groups(store, DEV4, problems) == {
        FdbEntry("vx100", MAC_G1, V2),
        FdbEntry("vx100", MAC_G1, V3),
        FdbEntry("vx100", MAC_G1, V5),
        FdbEntry("vx100", group_mac(G2), V4),
        FdbEntry("vx100", group_mac(G2), V5),
    }
    assert problems == []


def test_desired_mac_groups_skips_link_local_macs_and_ipv6() -> None:
    store = Store()
    imet(store, V2)
    smet(store, V2, G_LL_ALIAS)  # 01:00:5e:00:00:01 is 224.0.0.1's MAC
    smet(store, V3, ip_address("238.128.0.200"))  # 01:00:5e:00:00:c8 too
    smet(store, V2, G6)
    smet(store, V3, ip_address("ff05::1:3"))
    assert desired_mac_groups(store, DEV4, []) == set()
    smet(store, V4, G1)
    assert desired_mac_groups(store, DEV4, []) == {FdbEntry("vx100", MAC_G1, V4)}


def test_desired_mac_groups_reports_wrong_family() -> None:
    store = Store()
    smet(store, V6A, G1)
    smet(store, V2, G1)
    problems: list[WrongFamily] = []
    assert desired_mac_groups(store, DEV4, problems) == {FdbEntry("vx100", MAC_G1, V2)}
    assert problems == [WrongFamily(DEV4, V6A, "group *,239.1.1.1 (MAC mode)")]


# --------------------------------------------------------------------------- plan


def fdb(n: int, device: str = "vx100") -> FdbEntry:
    return FdbEntry(device, ZERO_MAC, IPv4Address(0x0A000000 + n))


def test_plan_adds_missing_and_deletes_owned_undesired_only() -> None:
    a, b, c, d, e = (fdb(n) for n in range(1, 6))
    desired = {a, b, e}
    present = {b, c, d, e}  # b: someone else's, c: ours, d: someone else's, e: ours and wanted
    owned = {c, e}
    adds, deletes = plan(desired, present, owned)
    assert adds == [a]  # b is present (foreign): not added, not adopted
    assert deletes == [c]  # d is foreign, e is still wanted


def test_plan_works_for_mdb_entries() -> None:
    keep = MdbEntry("vx100", None, G1, V2)
    gone = MdbEntry("vx100", S1, G1, V3)
    new = MdbEntry("vx100", None, ANY4, ANY4)
    foreign = MdbEntry("vx100", None, G2, V4)
    adds, deletes = plan({keep, new}, {keep, gone, foreign}, {keep, gone})
    assert adds == [new]
    assert deletes == [gone]


def test_plan_nothing_to_do() -> None:
    entries = {fdb(1), fdb(2)}
    assert plan(entries, set(entries), set(entries)) == ([], [])
    assert plan(set(), set(), set()) == ([], [])


universe = st.builds(
    FdbEntry,
    st.sampled_from(("vx100", "vx200")),
    st.sampled_from((ZERO_MAC, MAC_G1)),
    st.sampled_from((V2, V3, V4, V6A)),
)


@given(st.sets(universe), st.sets(universe), st.data())
def test_plan_property(desired: set[FdbEntry], present: set[FdbEntry], data: st.DataObject) -> None:
    owned = data.draw(st.sets(st.sampled_from(sorted(present, key=repr))) if present else st.just(set()))
    adds, deletes = plan(desired, present, owned)
    assert len(adds) == len(set(adds))
    assert len(deletes) == len(set(deletes))
    assert not set(adds) & present  # only what is missing, whoever's it is
    assert set(deletes) <= owned  # only ours
    after = (present | set(adds)) - set(deletes)
    assert desired <= after
    assert not (owned - desired) & after
    for entry in present - owned:
        assert entry in after
        assert entry not in deletes
