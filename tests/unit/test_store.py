"""Unit and property tests for agent.store (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.store import (
    EMPTY,
    ChangeSet,
    GroupKey,
    Limits,
    Rejected,
    RemoteImet,
    RemoteSmet,
    Store,
)
from bgp.evpn import IPAddress

OWN = ip_address("10.0.0.1")
V2 = ip_address("10.0.0.2")
V3 = ip_address("10.0.0.3")
V4 = ip_address("10.0.0.4")
V6A = ip_address("2001:db8::2")
V6B = ip_address("2001:db8::3")
G1 = ip_address("239.1.1.1")
G2 = ip_address("239.1.1.2")
G6 = ip_address("ff0e::1")
S1 = ip_address("192.0.2.10")
S6 = ip_address("2001:db8:1::10")


def imet(vtep: IPAddress, vni: int = 100, igmp: bool = True, mld: bool = True) -> RemoteImet:
    return RemoteImet(vni=vni, vtep=vtep, igmp_proxy=igmp, mld_proxy=mld)


def smet(
    vtep: IPAddress, group: IPAddress = G1, source: IPAddress | None = None, vni: int = 100
) -> RemoteSmet:
    return RemoteSmet(vni=vni, vtep=vtep, source=source, group=group)


def assert_empty(store: Store) -> None:
    assert store.path_count() == 0
    assert store.vnis() == frozenset()
    assert store.peers() == {}
    assert store.next_deadline() is None
    assert all(size == 0 for size in store.index_sizes().values()), store.index_sizes()


# --------------------------------------------------------------------------- ChangeSet


def test_changeset_bool_merge_and_empty() -> None:
    assert not EMPTY
    assert ChangeSet.EMPTY is EMPTY
    a = ChangeSet(flood=frozenset({1}))
    b = ChangeSet(groups=frozenset({(2, None, G1)}), rejected=Rejected("x", "y"))
    merged = a.merge(b)
    assert merged.flood == {1}
    assert merged.groups == {(2, None, G1)}
    assert merged.rejected == Rejected("x", "y")
    assert a.merge(EMPTY) is a
    assert EMPTY.merge(b) is b
    # a refusal alone is not a change
    assert not ChangeSet(rejected=Rejected("own-vtep", "..."))


# --------------------------------------------------------------------------- flood list


def test_imet_puts_vtep_in_flood_list() -> None:
    store = Store(own_vteps=[OWN])
    cs = store.announce("rr1", b"a", imet(V2))
    assert cs.flood == {100}
    assert cs.all_multicast == frozenset()
    assert cs.groups == frozenset()
    assert cs.rejected is None
    assert store.flood_list(100) == {V2}
    assert store.flood_list(200) == frozenset()
    assert store.vnis() == {100}
    assert store.peers() == {"rr1": 1}
    assert store.path_count() == 1
    # a second VTEP changes the flood list again
    assert store.announce("rr1", b"b", imet(V3)).flood == {100}
    assert store.flood_list(100) == {V2, V3}


def test_same_fact_from_two_peers_counts_once() -> None:
    store = Store()
    assert store.announce("rr1", b"a", imet(V2)).flood == {100}
    # second path of the same fact: no view changes
    assert store.announce("rr2", b"a", imet(V2)) is EMPTY
    assert store.flood_list(100) == {V2}
    assert store.path_count() == 2
    assert store.peers() == {"rr1": 1, "rr2": 1}
    # the fact stays while one path remains
    assert store.withdraw("rr1", b"a") is EMPTY
    assert store.flood_list(100) == {V2}
    cs = store.withdraw("rr2", b"a")
    assert cs.flood == {100}
    assert store.flood_list(100) == frozenset()
    assert_empty(store)


def test_same_smet_from_two_peers_counts_once() -> None:
    store = Store()
    assert store.announce("rr1", b"s", smet(V2)).groups == {(100, None, G1)}
    assert store.announce("rr2", b"s", smet(V2)) is EMPTY
    assert store.withdraw("rr2", b"s") is EMPTY
    assert store.receivers(100, None, G1) == {V2}
    assert store.withdraw("rr1", b"s").groups == {(100, None, G1)}
    assert_empty(store)


def test_withdraw_unknown_is_empty() -> None:
    store = Store()
    assert store.withdraw("rr1", b"nope") is EMPTY
    store.announce("rr1", b"a", imet(V2))
    assert store.withdraw("rr1", b"nope") is EMPTY
    assert store.withdraw("rr2", b"a") is EMPTY
    assert store.withdraw("rr1", b"a").flood == {100}
    assert store.withdraw("rr1", b"a") is EMPTY
    assert_empty(store)


def test_reannounce_identical_is_noop() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    assert store.announce("rr1", b"a", imet(V2)) is EMPTY
    assert store.path_count() == 1


def test_reannounce_with_other_fact_replaces() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    # same key, different VTEP: implicit withdraw of the old one
    cs = store.announce("rr1", b"a", imet(V3))
    assert cs.flood == {100}
    assert store.flood_list(100) == {V3}
    assert store.path_count() == 1
    # same VTEP, flag change only: the flood list does not change, all-multicast does
    cs = store.announce("rr1", b"a", imet(V3, igmp=False))
    assert cs.flood == frozenset()
    assert cs.all_multicast == {100}
    assert store.all_multicast(100, 4) == {V3}
    # moving to another VNI changes both
    cs = store.announce("rr1", b"a", imet(V3, vni=200))
    assert cs.flood == {100, 200}
    assert cs.all_multicast == {100}
    assert store.vnis() == {200}
    assert store.all_multicast(200, 4) == frozenset()


def test_smet_replace_reports_both_groups() -> None:
    store = Store()
    store.announce("rr1", b"s", smet(V2, G1))
    cs = store.announce("rr1", b"s", smet(V2, G2))
    assert cs.groups == {(100, None, G1), (100, None, G2)}
    assert store.remote_groups(100) == {(None, G2)}
    # only the informational IE flag changes: no receivers change
    cs = store.announce("rr1", b"s", RemoteSmet(100, V2, None, G2, exclude=True))
    assert cs is EMPTY
    assert store.receivers(100, None, G2) == {V2}


def test_replace_imet_by_smet_under_same_key() -> None:
    store = Store()
    store.announce("rr1", b"k", imet(V2))
    cs = store.announce("rr1", b"k", smet(V2))
    assert cs.flood == {100}
    assert cs.groups == {(100, None, G1)}
    assert store.flood_list(100) == frozenset()
    assert store.receivers(100, None, G1) == {V2}


# --------------------------------------------------------------------------- receivers


def test_receivers_proxy_and_no_proxy_ipv4() -> None:
    store = Store()
    store.announce("rr1", b"2", imet(V2))  # RFC 9251 leaf
    store.announce("rr1", b"3", imet(V3))  # RFC 9251 leaf, not joined
    cs = store.announce("rr1", b"4", imet(V4, igmp=False, mld=False))  # plain FRR leaf
    assert cs.all_multicast == {100}
    store.announce("rr1", b"s2", smet(V2))
    assert store.receivers(100, None, G1) == {V2, V4}
    assert store.receivers(100, None, G2) == {V4}
    assert store.all_multicast(100, 4) == {V4}
    assert store.all_multicast(100, 6) == {V4}
    assert store.remote_groups(100) == {(None, G1)}


def test_receivers_ipv6_uses_mld_flag() -> None:
    store = Store()
    # IGMP proxy but no MLD proxy: all IPv6 multicast, IPv4 only by SMET
    store.announce("rr1", b"a", imet(V6A, igmp=True, mld=False))
    store.announce("rr1", b"b", imet(V6B, igmp=False, mld=True))
    store.announce("rr1", b"c", smet(V3, G6))
    assert store.all_multicast(100, 6) == {V6A}
    assert store.all_multicast(100, 4) == {V6B}
    assert store.receivers(100, None, G6) == {V6A, V3}
    assert store.receivers(100, None, G1) == {V6B}
    assert store.receivers(100, S6, G6) == {V6A, V3}
    with pytest.raises(ValueError):
        store.all_multicast(100, 5)


def test_vtep_without_proxy_if_any_imet_path_lacks_flag() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2, igmp=True))
    cs = store.announce("rr1", b"b", imet(V2, igmp=False))  # second IMET (other RD)
    assert cs.flood == frozenset()
    assert cs.all_multicast == {100}
    assert store.all_multicast(100, 4) == {V2}
    assert store.withdraw("rr1", b"a") is EMPTY
    assert store.all_multicast(100, 4) == {V2}
    cs = store.withdraw("rr1", b"b")
    assert cs.flood == {100}
    assert cs.all_multicast == {100}
    assert_empty(store)


def test_source_group_includes_any_source_receivers() -> None:
    store = Store()
    store.announce("rr1", b"a", smet(V2, G1, None))
    store.announce("rr1", b"b", smet(V3, G1, S1))
    assert store.receivers(100, S1, G1) == {V2, V3}
    assert store.receivers(100, None, G1) == {V2}
    assert store.receivers(100, ip_address("192.0.2.99"), G1) == {V2}
    assert store.remote_groups(100) == {(None, G1), (S1, G1)}


def test_smet_counts_without_imet() -> None:
    store = Store()
    store.announce("rr1", b"s", smet(V2))
    assert store.flood_list(100) == frozenset()
    assert store.receivers(100, None, G1) == {V2}
    assert store.vnis() == {100}


def test_reasons() -> None:
    store = Store()
    store.announce("rr1", b"i4", imet(V4, igmp=False))
    store.announce("rr1", b"s4", smet(V4, G1, None))
    store.announce("rr1", b"s2", smet(V2, G1, S1))
    store.announce("rr1", b"s3", smet(V3, G1, None))
    store.announce("rr1", b"i6", imet(V6A, mld=False))
    assert store.reasons(100, S1, G1) == {
        V2: {"smet"},
        V3: {"smet-any-source"},
        V4: {"smet-any-source", "no-igmp-proxy"},
    }
    assert store.reasons(100, None, G1) == {V3: {"smet"}, V4: {"smet", "no-igmp-proxy"}}
    assert store.reasons(100, None, G6) == {V6A: {"no-mld-proxy"}}
    assert store.reasons(999, None, G1) == {}
    assert set(store.reasons(100, S1, G1)) == store.receivers(100, S1, G1)


# --------------------------------------------------------------------------- local joins


def test_local_join_is_per_port_and_separate_from_remote() -> None:
    store = Store(own_vteps=[OWN])
    cs = store.local_join(100, None, G1, "eth1")
    assert cs.local == {(100, None, G1)}
    assert cs.flood == frozenset()
    assert cs.groups == frozenset()
    assert store.local_join(100, None, G1, "eth2") is EMPTY
    assert store.local_join(100, None, G1, "eth2") is EMPTY  # snooping refresh: idempotent
    assert store.local_ports(100, None, G1) == {"eth1", "eth2"}
    assert store.local_groups(100) == {(None, G1)}
    assert store.receivers(100, None, G1) == frozenset()
    assert store.remote_groups(100) == frozenset()
    assert store.vnis() == {100}
    assert store.local_leave(100, None, G1, "eth1") is EMPTY
    assert store.local_leave(100, None, G1, "eth9") is EMPTY
    assert store.local_leave(100, None, G2, "eth2") is EMPTY
    assert store.local_leave(300, None, G1, "eth2") is EMPTY
    assert store.local_leave(100, None, G1, "eth2").local == {(100, None, G1)}
    assert store.local_groups(100) == frozenset()
    assert store.local_ports(100, None, G1) == frozenset()
    assert_empty(store)


def test_local_source_specific_join() -> None:
    store = Store()
    assert store.local_join(100, S1, G1, "eth1").local == {(100, S1, G1)}
    assert store.local_join(100, None, G1, "eth1").local == {(100, None, G1)}
    assert store.local_groups(100) == {(S1, G1), (None, G1)}
    assert store.local_ports(100, S1, G1) == {"eth1"}


@pytest.mark.parametrize("group", ["224.0.0.1", "224.0.0.251", "ff02::1", "ff02::1:ff00:1"])
def test_local_join_refuses_link_local_groups(group: str) -> None:
    store = Store()
    cs = store.local_join(100, None, ip_address(group), "eth1")
    assert not cs
    assert cs.rejected is not None
    assert cs.rejected.reason == "link-local-group"
    assert group in cs.rejected.detail and "100" in cs.rejected.detail
    assert store.counters == {"link-local-group": 1}
    assert_empty(store)
    # 224.0.1.x is routable and fine
    assert store.local_join(100, None, ip_address("224.0.1.1"), "eth1").local


def test_local_join_refuses_unicast_group() -> None:
    store = Store()
    cs = store.local_join(100, None, ip_address("10.9.9.9"), "eth1")
    assert cs.rejected is not None and cs.rejected.reason == "bad-group"
    assert store.counters == {"bad-group": 1}
    assert_empty(store)


# --------------------------------------------------------------------------- peers, GR, refresh


def test_peer_down_without_gr_flushes_peer() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2, igmp=False))
    store.announce("rr1", b"b", smet(V3))
    store.announce("rr2", b"c", imet(V4))
    store.announce("rr2", b"b", smet(V3))
    cs = store.peer_down("rr1", now=10.0)
    assert cs.flood == {100}
    assert cs.all_multicast == {100}
    assert cs.groups == frozenset()  # rr2 still carries the SMET
    assert store.flood_list(100) == {V4}
    assert store.receivers(100, None, G1) == {V3}
    assert store.peers() == {"rr2": 1 + 1}
    assert store.peer_down("rr1", now=11.0) is EMPTY
    assert store.peer_down("nobody", now=11.0, restart_time=120) is EMPTY
    cs = store.peer_down("rr2", now=12.0)
    assert cs.flood == {100}
    assert cs.groups == {(100, None, G1)}
    assert_empty(store)


def test_graceful_restart_stale_reannounce_and_end_of_rib() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    store.announce("rr1", b"b", imet(V3))
    store.announce("rr1", b"c", smet(V3))
    assert store.peer_down("rr1", now=100.0, restart_time=120.0) is EMPTY
    # stale paths keep counting
    assert store.flood_list(100) == {V2, V3}
    assert store.receivers(100, None, G1) == {V3}
    assert store.next_deadline() == 220.0
    assert store.is_stale("rr1", b"a")
    # the session comes back: a re-announce makes the path fresh again, with no change
    assert store.announce("rr1", b"a", imet(V2)) is EMPTY
    assert not store.is_stale("rr1", b"a")
    assert store.is_stale("rr1", b"b")
    assert store.expire(219.9) is EMPTY
    cs = store.end_of_rib("rr1")
    assert cs.flood == {100}
    assert cs.groups == {(100, None, G1)}
    assert store.flood_list(100) == {V2}
    assert store.receivers(100, None, G1) == frozenset()
    assert store.next_deadline() is None
    assert store.end_of_rib("rr1") is EMPTY
    assert store.peers() == {"rr1": 1}


def test_graceful_restart_expires_at_deadline() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    store.announce("rr2", b"a", imet(V3))
    store.peer_down("rr1", now=0.0, restart_time=60.0)
    store.peer_down("rr2", now=10.0, restart_time=60.0)
    assert store.next_deadline() == 60.0
    assert store.expire(59.0) is EMPTY
    cs = store.expire(60.0)
    assert cs.flood == {100}
    assert store.flood_list(100) == {V3}
    assert store.next_deadline() == 70.0
    assert store.expire(1000.0).flood == {100}
    assert store.next_deadline() is None
    assert_empty(store)


def test_repeated_restart_keeps_earliest_deadline() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    store.peer_down("rr1", now=0.0, restart_time=60.0)
    store.peer_down("rr1", now=50.0, restart_time=60.0)
    assert store.next_deadline() == 60.0
    # a path announced after the first restart gets the later deadline
    store.announce("rr1", b"b", imet(V3))
    store.peer_down("rr1", now=55.0, restart_time=60.0)
    assert store.next_deadline() == 60.0
    assert store.expire(60.0).flood == {100}
    assert store.flood_list(100) == {V3}
    assert store.next_deadline() == 115.0


def test_peer_down_without_gr_drops_stale_paths_too() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    store.peer_down("rr1", now=0.0, restart_time=60.0)
    assert store.peer_down("rr1", now=5.0).flood == {100}
    assert_empty(store)


def test_route_refresh_mark_stale_and_end_of_rib() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    store.announce("rr1", b"b", smet(V2, G1))
    store.announce("rr1", b"c", smet(V2, G2))
    store.announce("rr2", b"d", imet(V3))
    store.mark_stale("rr1", deadline=300.0)
    store.mark_stale("nobody", deadline=300.0)
    assert store.next_deadline() == 300.0
    assert not store.is_stale("rr2", b"d")
    # the refresh resends a and b, not c
    assert store.announce("rr1", b"a", imet(V2)) is EMPTY
    assert store.announce("rr1", b"b", smet(V2, G1)) is EMPTY
    cs = store.end_of_rib("rr1")
    assert cs.groups == {(100, None, G2)}
    assert cs.flood == frozenset()
    assert store.remote_groups(100) == {(None, G1)}
    assert store.flood_list(100) == {V2, V3}
    assert store.next_deadline() is None
    assert store.index_sizes()["stale"] == 0


def test_withdraw_of_stale_path_clears_deadline() -> None:
    store = Store()
    store.announce("rr1", b"a", imet(V2))
    store.mark_stale("rr1", 5.0)
    store.withdraw("rr1", b"a")
    assert_empty(store)


# --------------------------------------------------------------------------- guard rails


@pytest.mark.parametrize(
    ("vtep", "reason"),
    [
        ("10.0.0.1", "own-vtep"),
        ("0.0.0.0", "martian-vtep"),
        ("0.1.2.3", "martian-vtep"),
        ("127.0.0.1", "martian-vtep"),
        ("127.1.2.3", "martian-vtep"),
        ("255.255.255.255", "martian-vtep"),
        ("169.254.1.1", "martian-vtep"),
        ("::", "martian-vtep"),
        ("::1", "martian-vtep"),
        ("fe80::1", "martian-vtep"),
        ("febf::1", "martian-vtep"),
        ("224.0.0.5", "multicast-vtep"),
        ("239.1.1.1", "multicast-vtep"),
        ("ff02::1", "multicast-vtep"),
    ],
)
def test_vtep_guard_rails(vtep: str, reason: str) -> None:
    store = Store(own_vteps=[OWN])
    address = ip_address(vtep)
    for key, fact in ((b"i", imet(address)), (b"s", smet(address))):
        cs = store.announce("rr1", key, fact)
        assert not cs
        assert cs.rejected is not None
        assert cs.rejected.reason == reason
        assert vtep in cs.rejected.detail and "100" in cs.rejected.detail
    assert store.counters == {reason: 2}
    assert_empty(store)


@pytest.mark.parametrize("vtep", ["1.0.0.1", "126.255.255.255", "169.253.0.1", "2001:db8::1", "fec0::1"])
def test_usable_vteps_are_accepted(vtep: str) -> None:
    store = Store(own_vteps=[OWN])
    assert store.announce("rr1", b"i", imet(ip_address(vtep))).flood == {100}
    assert store.counters == {}


def test_own_ipv6_vtep_is_rejected() -> None:
    store = Store(own_vteps=[OWN, V6A])
    rejected = store.announce("rr1", b"i", imet(V6A)).rejected
    assert rejected is not None and rejected.reason == "own-vtep"
    assert store.counters == {"own-vtep": 1}


@pytest.mark.parametrize(
    ("source", "group", "reason"),
    [
        (None, "10.1.1.1", "bad-group"),
        (None, "2001:db8::9", "bad-group"),
        ("192.0.2.1", "10.1.1.1", "bad-group"),
        ("2001:db8::9", "239.1.1.1", "bad-source"),
        ("239.2.2.2", "239.1.1.1", "bad-source"),
        ("0.0.0.0", "239.1.1.1", "bad-source"),
    ],
)
def test_smet_group_guard_rails(source: str | None, group: str, reason: str) -> None:
    store = Store()
    fact = smet(V2, ip_address(group), None if source is None else ip_address(source))
    cs = store.announce("rr1", b"s", fact)
    assert cs.rejected is not None and cs.rejected.reason == reason
    assert group in cs.rejected.detail
    assert store.counters == {reason: 1}
    assert_empty(store)


def test_rejected_reannounce_withdraws_old_fact() -> None:
    store = Store(own_vteps=[OWN])
    store.announce("rr1", b"a", imet(V2))
    cs = store.announce("rr1", b"a", imet(OWN))
    assert cs.rejected is not None and cs.rejected.reason == "own-vtep"
    assert cs.flood == {100}
    assert bool(cs)
    assert store.flood_list(100) == frozenset()
    assert_empty(store)


def test_vtep_cap() -> None:
    store = Store(limits=Limits(max_vteps_per_vni=2))
    store.announce("rr1", b"a", imet(V2))
    store.announce("rr1", b"b", imet(V3))
    cs = store.announce("rr1", b"c", imet(V4))
    assert cs.rejected is not None and cs.rejected.reason == "vtep-cap"
    assert str(V4) in cs.rejected.detail and "vni 100" in cs.rejected.detail
    assert store.flood_list(100) == {V2, V3}
    # existing VTEPs keep being accepted (another path, other flags)
    assert store.announce("rr2", b"a2", imet(V2, igmp=False)).all_multicast == {100}
    # another VNI has its own budget
    assert store.announce("rr1", b"d", imet(V4, vni=200)).flood == {200}
    # replacing the only path of a VTEP by another VTEP frees its slot
    assert store.announce("rr1", b"b", imet(V4)).flood == {100}
    assert store.flood_list(100) == {V2, V4}
    assert store.counters == {"vtep-cap": 1}
    # after a withdraw there is room again
    store.withdraw("rr1", b"b")
    assert store.announce("rr1", b"c", imet(V3)).flood == {100}


def test_group_cap() -> None:
    store = Store(limits=Limits(max_groups_per_vni=2))
    store.announce("rr1", b"a", smet(V2, G1))
    store.announce("rr1", b"b", smet(V2, G1, S1))
    cs = store.announce("rr1", b"c", smet(V2, G2))
    assert cs.rejected is not None and cs.rejected.reason == "group-cap"
    assert str(G2) in cs.rejected.detail
    assert store.remote_groups(100) == {(None, G1), (S1, G1)}
    # existing groups keep accepting more VTEPs
    assert store.announce("rr1", b"d", smet(V3, G1)).groups == {(100, None, G1)}
    # replacing the only path of a group frees its slot
    assert store.announce("rr1", b"b", smet(V2, G2)).groups == {(100, S1, G1), (100, None, G2)}
    assert store.counters == {"group-cap": 1}
    cs = store.announce("rr1", b"e", smet(V3, G6))
    assert cs.rejected is not None
    assert store.counters == {"group-cap": 2}


def test_zero_caps_refuse_everything() -> None:
    store = Store(limits=Limits(max_vteps_per_vni=0, max_groups_per_vni=0))
    for key, fact, reason in ((b"a", imet(V2), "vtep-cap"), (b"b", smet(V2), "group-cap")):
        rejected = store.announce("rr1", key, fact).rejected
        assert rejected is not None and rejected.reason == reason
    assert_empty(store)
    with pytest.raises(ValueError):
        Limits(max_vteps_per_vni=-1)


def test_counters_is_a_snapshot() -> None:
    store = Store(own_vteps=[OWN])
    store.announce("rr1", b"a", imet(OWN))
    counters = store.counters
    store.announce("rr1", b"a", imet(OWN))
    assert counters == {"own-vtep": 1}
    assert store.counters == {"own-vtep": 2}


# --------------------------------------------------------------------------- property tests

PEERS = ["rr1", "rr2"]
KEYS = [b"k0", b"k1", b"k2", b"k3", b"k4"]
VNIS = [100, 200]
VTEPS: list[IPAddress] = [V2, V3, V6A, OWN, ip_address("127.0.0.1")]
GROUPS: list[IPAddress] = [G1, G2, G6]
SOURCES: list[IPAddress | None] = [None, S1, S6]
LIMITS = Limits(max_vteps_per_vni=2, max_groups_per_vni=3)

facts = st.one_of(
    st.builds(
        RemoteImet,
        vni=st.sampled_from(VNIS),
        vtep=st.sampled_from(VTEPS),
        igmp_proxy=st.booleans(),
        mld_proxy=st.booleans(),
    ),
    st.builds(
        RemoteSmet,
        vni=st.sampled_from(VNIS),
        vtep=st.sampled_from(VTEPS),
        source=st.sampled_from(SOURCES),
        group=st.sampled_from(GROUPS),
        exclude=st.booleans(),
    ),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("announce"), st.sampled_from(PEERS), st.sampled_from(KEYS), facts),
        st.tuples(st.just("announce"), st.sampled_from(PEERS), st.sampled_from(KEYS), facts),
        st.tuples(st.just("withdraw"), st.sampled_from(PEERS), st.sampled_from(KEYS)),
        st.tuples(st.just("down"), st.sampled_from(PEERS), st.sampled_from([None, 5.0, 50.0])),
        st.tuples(st.just("stale"), st.sampled_from(PEERS), st.sampled_from([3.0, 30.0])),
        st.tuples(st.just("eor"), st.sampled_from(PEERS)),
        st.tuples(st.just("tick"), st.sampled_from([1.0, 10.0])),
    ),
    min_size=10,
    max_size=40,
)


@dataclass(frozen=True)
class Snapshot:
    flood: dict[int, frozenset[IPAddress]]
    all_mc: dict[int, tuple[frozenset[IPAddress], frozenset[IPAddress]]]
    smet: dict[GroupKey, frozenset[IPAddress]]  # exact (S,G) or (*,G) SMET senders


class Model:
    """Brute force: a list of live paths and views recomputed from scratch."""

    def __init__(self, own: set[IPAddress], limits: Limits) -> None:
        self.own = own
        self.limits = limits
        self.paths: dict[tuple[str, bytes], RemoteImet | RemoteSmet] = {}
        self.deadline: dict[tuple[str, bytes], float] = {}

    def facts(self) -> list[RemoteImet | RemoteSmet]:
        return list(self.paths.values())

    def flood(self, vni: int, without: tuple[str, bytes] | None = None) -> set[IPAddress]:
        return {
            f.vtep
            for k, f in self.paths.items()
            if k != without and isinstance(f, RemoteImet) and f.vni == vni
        }

    def groups(
        self, vni: int, without: tuple[str, bytes] | None = None
    ) -> set[tuple[IPAddress | None, IPAddress]]:
        return {
            (f.source, f.group)
            for k, f in self.paths.items()
            if k != without and isinstance(f, RemoteSmet) and f.vni == vni
        }

    def all_mc(self, vni: int, version: int) -> set[IPAddress]:
        return {
            f.vtep
            for f in self.facts()
            if isinstance(f, RemoteImet)
            and f.vni == vni
            and not (f.igmp_proxy if version == 4 else f.mld_proxy)
        }

    def receivers(self, vni: int, source: IPAddress | None, group: IPAddress) -> set[IPAddress]:
        out = {
            f.vtep
            for f in self.facts()
            if isinstance(f, RemoteSmet)
            and f.vni == vni
            and f.group == group
            and (f.source == source or f.source is None)
        }
        return out | self.all_mc(vni, group.version)

    def acceptable(self, key: tuple[str, bytes], fact: RemoteImet | RemoteSmet) -> bool:
        if fact.vtep in self.own or fact.vtep.is_loopback:
            return False
        if isinstance(fact, RemoteImet):
            flood = self.flood(fact.vni, without=key)
            return fact.vtep in flood or len(flood) < self.limits.max_vteps_per_vni
        if fact.source is not None and fact.source.version != fact.group.version:
            return False
        groups = self.groups(fact.vni, without=key)
        return (fact.source, fact.group) in groups or len(groups) < self.limits.max_groups_per_vni

    def remove(self, key: tuple[str, bytes]) -> None:
        self.paths.pop(key, None)
        self.deadline.pop(key, None)

    def apply(self, op: tuple[object, ...], now: float) -> None:
        kind = op[0]
        if kind == "announce":
            _, peer, nlri, fact = op
            key = (str(peer), bytes(nlri))  # type: ignore[call-overload]
            assert isinstance(fact, RemoteImet | RemoteSmet)
            self.deadline.pop(key, None)
            if self.acceptable(key, fact):
                self.paths[key] = fact
            else:
                self.remove(key)
        elif kind == "withdraw":
            self.remove((str(op[1]), bytes(op[2])))  # type: ignore[call-overload]
        elif kind == "down":
            peer, restart = op[1], op[2]
            if restart is None:
                for key in [k for k in self.paths if k[0] == peer]:
                    self.remove(key)
            else:
                self.mark(str(peer), now + float(restart))  # type: ignore[arg-type]
        elif kind == "stale":
            self.mark(str(op[1]), float(op[2]))  # type: ignore[arg-type]
        elif kind == "eor":
            for key in [k for k in self.deadline if k[0] == op[1]]:
                self.remove(key)
        elif kind == "tick":
            for key in [k for k, d in self.deadline.items() if d <= now]:
                self.remove(key)

    def peers(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for peer, _ in self.paths:
            out[peer] = out.get(peer, 0) + 1
        return out

    def snapshot(self) -> Snapshot:
        return Snapshot(
            flood={vni: frozenset(self.flood(vni)) for vni in VNIS},
            all_mc={vni: (frozenset(self.all_mc(vni, 4)), frozenset(self.all_mc(vni, 6))) for vni in VNIS},
            smet={
                (vni, s, g): frozenset(
                    f.vtep
                    for f in self.facts()
                    if isinstance(f, RemoteSmet) and (f.vni, f.source, f.group) == (vni, s, g)
                )
                for vni in VNIS
                for s in SOURCES
                for g in GROUPS
            },
        )

    def mark(self, peer: str, deadline: float) -> None:
        for key in self.paths:
            if key[0] == peer:
                self.deadline[key] = min(deadline, self.deadline.get(key, deadline))


def run(store: Store, op: tuple[object, ...], now: float) -> ChangeSet:
    kind = op[0]
    if kind == "announce":
        return store.announce(op[1], op[2], op[3])  # type: ignore[arg-type]
    if kind == "withdraw":
        return store.withdraw(op[1], op[2])  # type: ignore[arg-type]
    if kind == "down":
        return store.peer_down(op[1], now, op[2])  # type: ignore[arg-type]
    if kind == "stale":
        store.mark_stale(op[1], op[2])  # type: ignore[arg-type]
        return EMPTY
    if kind == "eor":
        return store.end_of_rib(op[1])  # type: ignore[arg-type]
    return store.expire(now)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.data())
def test_property_withdraw_everything_leaves_store_empty(
    operations: list[tuple[object, ...]], data: st.DataObject
) -> None:
    store = Store(own_vteps=[OWN], limits=LIMITS)
    now = 0.0
    announced: set[tuple[str, bytes]] = set()
    for op in operations:
        if op[0] == "tick":
            now += float(op[1])  # type: ignore[arg-type]
        run(store, op, now)
        if op[0] == "announce":
            announced.add((str(op[1]), bytes(op[2])))  # type: ignore[call-overload]
    order = data.draw(st.permutations(sorted(announced)))
    for peer, key in order:
        store.withdraw(peer, key)
    assert_empty(store)
    for vni in VNIS:
        assert store.flood_list(vni) == frozenset()
        for g in GROUPS:
            assert store.receivers(vni, None, g) == frozenset()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_property_views_match_brute_force(operations: list[tuple[object, ...]]) -> None:
    store = Store(own_vteps=[OWN], limits=LIMITS)
    model = Model({OWN}, LIMITS)
    now = 0.0
    for op in operations:
        if op[0] == "tick":
            now += float(op[1])  # type: ignore[arg-type]
        before = model.snapshot()
        cs = run(store, op, now)
        model.apply(op, now)
        after = model.snapshot()

        assert store.path_count() == len(model.paths)
        assert store.peers() == model.peers()
        for vni in VNIS:
            assert store.flood_list(vni) == model.flood(vni)
            for version in (4, 6):
                assert store.all_multicast(vni, version) == model.all_mc(vni, version)
            assert store.remote_groups(vni) == model.groups(vni)
            for s in SOURCES:
                for g in GROUPS:
                    expected = model.receivers(vni, s, g)
                    assert store.receivers(vni, s, g) == expected
                    assert set(store.reasons(vni, s, g)) == expected
        assert store.next_deadline() == min(model.deadline.values(), default=None)

        # the ChangeSet names exactly the views that changed, nothing more
        assert cs.flood == {vni for vni in VNIS if before.flood[vni] != after.flood[vni]}
        assert cs.all_multicast == {vni for vni in VNIS if before.all_mc[vni] != after.all_mc[vni]}
        assert cs.groups == {key for key in before.smet if before.smet[key] != after.smet[key]}
