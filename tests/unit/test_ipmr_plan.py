"""Unit and property tests for the pure IPMR planning: ipmr.vifs (VIF budget) and ipmr.mfc
(memberships, who wants a group, desired routes and their diff against the kernel).

Nothing here touches the kernel: the store is the real ``agent.store.Store`` fed with facts,
time is passed in, and VIF plans are either built by ``plan_vifs`` or written out by hand.
"""

from __future__ import annotations

import random
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.store import RemoteImet, RemoteSmet, Store
from bgp.evpn import IPAddress
from ipmr.mfc import (
    EDGE_PORT_PREFIX,
    Flow,
    Memberships,
    StaticRoute,
    desired_routes,
    route_diff,
    static_outputs,
    svi_wants,
)
from ipmr.vifs import MAXVIFS, Budget, Candidate, Slot, plan_vifs

G1 = ip_address("239.1.1.1")
G2 = ip_address("239.1.1.2")
G6 = ip_address("ff0e::1")
S1 = ip_address("192.0.2.10")
S2 = ip_address("192.0.2.11")
S6 = ip_address("2001:db8:1::10")
VTEP_A = ip_address("10.0.0.2")
VTEP_B = ip_address("10.0.0.3")

EDGE = Candidate("eth1", edge=True)


def svi(i: int, problem: str | None = None) -> Candidate:
    return Candidate(f"br{i}", edge=False, vni=10000 + i, problem=problem)


def all_slots(budget: Budget) -> list[tuple[str, Slot]]:
    return [(name, slot) for name, slots in budget.slots.items() for slot in slots]


def slot_map(budget: Budget) -> dict[str, set[Slot]]:
    return {name: set(slots) for name, slots in budget.slots.items()}


# --------------------------------------------------------------------------- plan_vifs


def test_maxvifs_is_the_kernel_limit() -> None:
    assert MAXVIFS == 32


def test_one_table_gives_32_slots_and_refuses_the_33rd_svi() -> None:
    candidates = [EDGE, *(svi(i) for i in range(32))]
    budget = plan_vifs(candidates, (253,), {})

    assert len(all_slots(budget)) == 32
    assert budget.slots["eth1"] == [Slot(253, 0)]
    assert {s.vif for _n, s in all_slots(budget)} == set(range(32))
    assert list(budget.refused) == ["br31"]
    assert "br31" not in budget.slots
    assert budget.used == {253: 32}

    why = budget.refused["br31"]
    assert "br31" in why
    assert "VNI 10031" in why
    assert "253" in why
    assert "32" in why
    assert "MAXVIFS" in why
    assert "ipmr.tables" in why


def test_two_tables_give_every_candidate_a_slot() -> None:
    candidates = [EDGE, *(svi(i) for i in range(32))]
    budget = plan_vifs(candidates, (253, 100), {})

    assert budget.refused == {}
    assert set(budget.slots) == {c.name for c in candidates}
    # The edge is in every table, with the first free index of each.
    assert budget.slots["eth1"] == [Slot(253, 0), Slot(100, 0)]
    # SVIs fill table 253 (31 left after the edge), in configuration order, then go to 100.
    for i in range(31):
        assert budget.slots[f"br{i}"] == [Slot(253, i + 1)]
    assert budget.slots["br31"] == [Slot(100, 1)]
    assert budget.used == {253: 32, 100: 2}
    assert len({s for _n, s in all_slots(budget)}) == len(all_slots(budget))


def test_the_refusal_names_every_table_when_all_are_full() -> None:
    candidates = [EDGE, *(svi(i) for i in range(63))]
    budget = plan_vifs(candidates, (253, 100), {})
    assert budget.used == {253: 32, 100: 32}
    assert list(budget.refused) == ["br62"]
    why = budget.refused["br62"]
    assert "tables 253, 100" in why
    assert "ipmr.tables" in why


def test_candidates_with_a_problem_are_refused_with_it_and_use_no_slot() -> None:
    candidates = [
        Candidate("eth9", edge=True, problem="eth9 does not exist"),
        EDGE,
        svi(0, problem="br0 is down"),
        svi(1),
    ]
    budget = plan_vifs(candidates, (253, 100), {})
    assert budget.refused == {"eth9": "eth9 does not exist", "br0": "br0 is down"}
    assert set(budget.slots) == {"eth1", "br1"}
    assert budget.slots["eth1"] == [Slot(253, 0), Slot(100, 0)]
    assert budget.slots["br1"] == [Slot(253, 1)]
    assert budget.used == {253: 2, 100: 1}


def test_a_problem_frees_the_slot_the_interface_held() -> None:
    current = {"eth1": [Slot(253, 0)], "br0": [Slot(253, 1)], "br1": [Slot(253, 2)]}
    budget = plan_vifs([EDGE, svi(0, problem="br0 is down"), svi(1)], (253,), current)
    assert slot_map(budget) == {"eth1": {Slot(253, 0)}, "br1": {Slot(253, 2)}}
    assert budget.refused == {"br0": "br0 is down"}
    assert budget.used == {253: 2}


def test_problems_do_not_count_against_the_budget() -> None:
    broken = [svi(100 + i, problem="down") for i in range(40)]
    budget = plan_vifs([*broken, EDGE, *(svi(i) for i in range(31))], (253,), {})
    assert budget.used == {253: 32}
    assert set(budget.refused) == {c.name for c in broken}


def test_replanning_after_removing_one_keeps_every_other_slot_and_reuses_the_freed_index() -> None:
    tables = (253, 100)
    candidates = [EDGE, Candidate("eth2", edge=True), *(svi(i) for i in range(40))]
    first = plan_vifs(candidates, tables, {})
    assert first.refused == {}
    freed = first.slots["br5"]
    assert freed == [Slot(253, 7)]

    # br5 goes away (or is removed from the configuration); nobody else moves.
    without = [c for c in candidates if c.name != "br5"]
    second = plan_vifs(without, tables, first.slots)
    assert second.refused == {}
    assert slot_map(second) == {n: s for n, s in slot_map(first).items() if n != "br5"}
    assert second.used == {253: 31, 100: first.used[100]}

    # A newcomer configured *first* still does not push anyone: it takes the freed index.
    newcomer = svi(99)
    third = plan_vifs([newcomer, *without], tables, second.slots)
    assert third.slots["br99"] == freed
    assert {n: s for n, s in slot_map(third).items() if n != "br99"} == slot_map(second)
    assert third.used == first.used


def test_replanning_with_the_current_plan_changes_nothing() -> None:
    candidates = [EDGE, *(svi(i) for i in range(50))]
    first = plan_vifs(candidates, (253, 100), {})
    again = plan_vifs(list(reversed(candidates)), (253, 100), first.slots)
    assert slot_map(again) == slot_map(first)
    assert again.used == first.used
    assert again.refused == first.refused


def test_current_slots_in_tables_no_longer_configured_are_dropped() -> None:
    current = {"eth1": [Slot(253, 0), Slot(100, 0)], "br0": [Slot(100, 1)]}
    budget = plan_vifs([EDGE, svi(0)], (253,), current)
    assert slot_map(budget) == {"eth1": {Slot(253, 0)}, "br0": {Slot(253, 1)}}
    assert budget.used == {253: 2}


def test_stale_current_entries_of_unknown_interfaces_are_ignored() -> None:
    budget = plan_vifs([EDGE], (253,), {"gone0": [Slot(253, 0)], "eth1": [Slot(253, 3)]})
    assert slot_map(budget) == {"eth1": {Slot(253, 3)}}
    assert budget.used == {253: 1}


def test_a_slot_claimed_twice_in_current_goes_to_the_first_candidate_only() -> None:
    current = {"eth1": [Slot(253, 0)], "br0": [Slot(253, 0)], "br1": [Slot(253, 5)]}
    budget = plan_vifs([EDGE, svi(0), svi(1)], (253,), current)
    assert slot_map(budget) == {"eth1": {Slot(253, 0)}, "br0": {Slot(253, 1)}, "br1": {Slot(253, 5)}}
    assert budget.used == {253: 3}


def test_budget_report_shape() -> None:
    candidates = [EDGE, *(svi(i) for i in range(33)), Candidate("eth9", True, problem="eth9 does not exist")]
    budget = plan_vifs(candidates, (253, 100), {})
    # eth9 is configured but missing: each table keeps one VIF free for it.
    assert budget.used == {253: 31, 100: 4}
    report = budget.report()
    assert report == {
        "tables": {"100": {"used": 4, "max": 32}, "253": {"used": 31, "max": 32}},
        "refused": {"eth9": "eth9 does not exist"},
    }
    assert list(report["tables"]) == ["100", "253"]  # type: ignore[call-overload]
    # A copy: the caller may keep or mutate the report without touching the budget.
    report["refused"]["x"] = "y"  # type: ignore[index]
    assert "x" not in budget.refused


def test_empty_plan_report() -> None:
    assert plan_vifs([], (253,), {}).report() == {"tables": {"253": {"used": 0, "max": 32}}, "refused": {}}


def test_an_edge_listed_after_the_svis_still_gets_every_table() -> None:
    candidates = [*(svi(i) for i in range(32)), EDGE]
    budget = plan_vifs(candidates, (253, 100), {})
    assert budget.refused == {}
    assert {s.table for s in budget.slots["eth1"]} == {253, 100}


def test_an_edge_that_misses_a_full_table_is_refused_but_keeps_its_other_slots() -> None:
    # SVIs sticky in a full table 253 (the edge was down when they were placed): the edge can
    # only get table 100. It keeps that slot, and is reported for the table it misses.
    current = {f"br{i}": [Slot(253, i)] for i in range(32)}
    candidates = [EDGE, *(svi(i) for i in range(32))]
    budget = plan_vifs(candidates, (253, 100), current)
    assert budget.slots["eth1"] == [Slot(100, 0)]
    assert set(budget.refused) == {"eth1"}
    assert "eth1" in budget.refused["eth1"]
    assert "edge interface" in budget.refused["eth1"]
    assert budget.used == {253: 32, 100: 1}
    assert (
        "no VIF for eth1 (edge interface): multicast routing table 253 already uses" in budget.refused["eth1"]
    )


def test_room_is_kept_for_an_edge_that_is_down_so_it_gets_every_table_when_it_comes_up() -> None:
    down = Candidate("eth1", True, None, "eth1 is down")
    first = plan_vifs([down, *(svi(i) for i in range(32))], (253, 100), {})
    assert first.used == {253: 31, 100: 1} and "br31" in {
        n for n, s in first.slots.items() if s[0].table == 100
    }
    again = plan_vifs([EDGE, *(svi(i) for i in range(32))], (253, 100), first.slots)
    assert again.refused == {}
    assert {s.table for s in again.slots["eth1"]} == {253, 100}
    assert all(again.slots[f"br{i}"] == first.slots[f"br{i}"] for i in range(32))


NAMES = [f"if{i}" for i in range(120)]


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[Candidate]:
    # Sizes around and beyond one and two tables' worth, so that tables do fill up.
    size = draw(st.one_of(st.integers(0, 20), st.integers(25, 70), st.integers(60, 110)))
    names = draw(st.permutations(NAMES))[:size]
    out = []
    for name in names:
        edge = draw(st.integers(0, 9)) == 0  # a few edges among many SVIs, as on a leaf
        problem = draw(st.sampled_from([None, None, None, None, f"{name} does not exist"]))
        out.append(Candidate(name, edge, None if edge else 1000 + NAMES.index(name), problem))
    return out


table_lists = st.lists(st.sampled_from([253, 100, 101, 102]), unique=True, min_size=1, max_size=3)


def check_budget(candidates: list[Candidate], tables: list[int], budget: Budget) -> None:
    by_name = {c.name: c for c in candidates}
    placed = all_slots(budget)
    # No (table, vif) twice, all within the kernel's range and the configured tables.
    assert len({slot for _n, slot in placed}) == len(placed)
    for name, slot in placed:
        assert name in by_name
        assert by_name[name].problem is None
        assert 0 <= slot.vif < MAXVIFS
        assert slot.table in tables
    # used is exactly the slots placed per table.
    assert budget.used == {t: sum(1 for _n, s in placed if s.table == t) for t in tables}
    for name, c in by_name.items():
        got = {s.table for s in budget.slots.get(name, [])}
        if c.problem is not None:
            assert budget.refused[name] == c.problem
            assert not got
        elif c.edge:
            # An edge is in every table, except one that is full; and is refused iff it misses one.
            assert len(got) == len(budget.slots.get(name, []))
            for t in tables:
                assert t in got or budget.used[t] == MAXVIFS
            assert (name in budget.refused) == (got != set(tables))
        else:
            # An SVI has one slot, or is refused because every table is full once the room
            # held back for configured edges without a slot there is counted.
            assert len(budget.slots.get(name, [])) <= 1
            assert (name in budget.refused) == (not got)
            if not got:
                held = {
                    t: sum(
                        1
                        for e in by_name.values()
                        if e.edge and t not in {s.table for s in budget.slots.get(e.name, [])}
                    )
                    for t in tables
                }
                assert all(budget.used[t] + held[t] >= MAXVIFS for t in tables)
                assert name in budget.refused[name]
                assert "ipmr.tables" in budget.refused[name]
    assert set(budget.refused) <= set(by_name)


@settings(max_examples=300, deadline=None)
@given(candidate_lists(), table_lists)
def test_plan_vifs_properties(candidates: list[Candidate], tables: list[int]) -> None:
    budget = plan_vifs(candidates, tables, {})
    check_budget(candidates, tables, budget)
    # An edge preceded by fewer than MAXVIFS usable candidates found room in every table.
    usable = [c for c in candidates if c.problem is None]
    for c in usable[:MAXVIFS]:
        if c.edge:
            assert {s.table for s in budget.slots[c.name]} == set(tables)
            assert c.name not in budget.refused
    # All usable candidates fit when they and the edges held room for number at most MAXVIFS.
    held_for_down_edges = sum(1 for c in candidates if c.edge and c.problem is not None)
    if len(usable) + held_for_down_edges <= MAXVIFS:
        assert not set(budget.refused) - {c.name for c in candidates if c.problem is not None}
    # An interface with no problem that is refused got no slot, except an edge that got some tables.
    for name in budget.refused:
        c = next(c for c in candidates if c.name == name)
        assert name not in budget.slots or (c.edge and c.problem is None)


@settings(max_examples=200, deadline=None)
@given(candidate_lists(), candidate_lists(), table_lists, st.randoms(use_true_random=False))
def test_plan_vifs_replanning_is_sticky(
    before: list[Candidate], extra: list[Candidate], tables: list[int], rnd: random.Random
) -> None:
    first = plan_vifs(before, tables, {})
    # Keep a random subset of the old candidates (same names, possibly a problem now), add new ones.
    kept = [c for c in before if rnd.random() < 0.7]
    names = {c.name for c in kept}
    after = kept + [c for c in extra if c.name not in names and c.name not in first.slots]
    rnd.shuffle(after)
    second = plan_vifs(after, tables, first.slots)
    check_budget(after, tables, second)
    for c in after:
        if c.problem is None:
            # Nobody loses or moves a slot it had.
            assert set(first.slots.get(c.name, [])) <= set(second.slots.get(c.name, []))


# --------------------------------------------------------------------------- Memberships


def test_join_is_new_only_the_first_time() -> None:
    m = Memberships(gmi=260.0, lmqt=2.0)
    assert m.join("eth1", None, G1, now=0.0) is True
    assert m.join("eth1", None, G1, now=10.0) is False
    assert m.join("eth1", S1, G1, now=10.0) is True  # (S,G) is another membership
    assert m.join("eth2", None, G1, now=10.0) is True
    assert m.join("eth1", None, G2, now=10.0) is True
    # A re-join refreshes the timer.
    assert m.next_deadline() == 270.0
    assert ("eth1", None, G1, 270.0) in m.entries()


def test_join_after_expiry_is_new_again() -> None:
    m = Memberships(gmi=10.0, lmqt=1.0)
    m.join("eth1", None, G1, now=0.0)
    assert m.expire(10.0) == [("eth1", None, G1)]
    assert m.join("eth1", None, G1, now=11.0) is True


def test_leave_lowers_the_timer_to_lmqt_but_never_raises_it() -> None:
    m = Memberships(gmi=260.0, lmqt=2.0)
    m.join("eth1", None, G1, now=0.0)
    m.leave("eth1", None, G1, now=100.0)
    assert m.next_deadline() == 102.0
    # A second leave later must not push the deadline out.
    m.leave("eth1", None, G1, now=101.0)
    assert m.next_deadline() == 102.0
    # A leave when the timer is already closer than lmqt does not raise it either.
    m2 = Memberships(gmi=5.0, lmqt=2.0)
    m2.join("eth1", None, G1, now=0.0)
    m2.leave("eth1", None, G1, now=4.0)
    assert m2.next_deadline() == 5.0
    # A report after the leave keeps the membership (another host answered the query).
    m.join("eth1", None, G1, now=101.5)
    assert m.next_deadline() == 361.5
    assert m.expire(102.0) == []


def test_leave_of_unknown_membership_does_nothing() -> None:
    m = Memberships(gmi=260.0, lmqt=2.0)
    m.leave("eth1", None, G1, now=0.0)
    assert m.next_deadline() is None
    m.join("eth1", None, G1, now=0.0)
    m.leave("eth1", S1, G1, now=0.0)  # an (S,G) leave does not end a (*,G) membership
    m.leave("eth2", None, G1, now=0.0)
    assert m.next_deadline() == 260.0


def test_expire_returns_exactly_the_expired_keys() -> None:
    m = Memberships(gmi=100.0, lmqt=2.0)
    m.join("eth1", None, G1, now=0.0)  # 100
    m.join("eth1", S1, G2, now=10.0)  # 110
    m.join("eth2", None, G1, now=20.0)  # 120
    m.leave("eth2", None, G1, now=30.0)  # 32
    assert m.expire(31.9) == []
    assert m.expire(32.0) == [("eth2", None, G1)]  # the deadline itself is expired
    assert m.next_deadline() == 100.0
    assert sorted(m.expire(110.0), key=str) == sorted([("eth1", None, G1), ("eth1", S1, G2)], key=str)
    assert m.next_deadline() is None
    assert m.expire(1000.0) == []
    assert m.groups() == set()


def test_interfaces_include_any_source_and_matching_source_members_only() -> None:
    m = Memberships()
    m.join("eth1", None, G1, now=0.0)
    m.join("eth2", S1, G1, now=0.0)
    m.join("eth3", S2, G1, now=0.0)
    m.join("eth4", None, G2, now=0.0)
    m.join("eth5", S1, G2, now=0.0)
    assert m.interfaces(S1, G1) == {"eth1", "eth2"}
    assert m.interfaces(S2, G1) == {"eth1", "eth3"}
    assert m.interfaces(ip_address("192.0.2.99"), G1) == {"eth1"}
    assert m.interfaces(S1, G2) == {"eth4", "eth5"}
    assert m.interfaces(S1, ip_address("239.9.9.9")) == set()
    assert m.groups() == {G1, G2}


def test_next_deadline_is_the_earliest_timer() -> None:
    m = Memberships(gmi=100.0, lmqt=2.0)
    assert m.next_deadline() is None
    m.join("eth1", None, G1, now=50.0)
    m.join("eth2", None, G1, now=10.0)
    assert m.next_deadline() == 110.0
    m.leave("eth1", None, G1, now=60.0)
    assert m.next_deadline() == 62.0


def test_drop_interface_forgets_only_that_interface() -> None:
    m = Memberships()
    m.join("eth1", None, G1, now=0.0)
    m.join("eth1", S1, G2, now=0.0)
    m.join("eth10", None, G1, now=0.0)
    gone = m.drop_interface("eth1")
    assert sorted(gone, key=str) == sorted([("eth1", None, G1), ("eth1", S1, G2)], key=str)
    assert m.interfaces(S1, G1) == {"eth10"}
    assert m.interfaces(S1, G2) == set()
    assert m.drop_interface("eth1") == []
    assert m.join("eth1", None, G1, now=1.0) is True


# --------------------------------------------------------------------------- svi_wants

SVIS = {"br100": 100, "br200": 200}


def test_nobody_wants_anything_in_an_empty_store() -> None:
    assert svi_wants(Store(), SVIS, S1, G1) == set()


def test_remote_smet_makes_the_svi_of_its_vni_wanted() -> None:
    store = Store()
    store.announce("rr1", b"k1", RemoteSmet(100, VTEP_A, S1, G1))
    assert svi_wants(store, SVIS, S1, G1) == {"br100"}
    assert svi_wants(store, SVIS, S2, G1) == set()  # another source
    assert svi_wants(store, SVIS, S1, G2) == set()  # another group


def test_remote_any_source_smet_wants_every_source() -> None:
    store = Store()
    store.announce("rr1", b"k1", RemoteSmet(200, VTEP_A, None, G1))
    assert svi_wants(store, SVIS, S1, G1) == {"br200"}
    assert svi_wants(store, SVIS, S2, G1) == {"br200"}
    assert svi_wants(store, SVIS, S1, G2) == set()


def test_the_svi_is_no_longer_wanted_after_the_withdraw() -> None:
    store = Store()
    store.announce("rr1", b"k1", RemoteSmet(100, VTEP_A, S1, G1))
    store.withdraw("rr1", b"k1")
    assert svi_wants(store, SVIS, S1, G1) == set()


def test_an_imet_without_igmp_proxy_wants_every_ipv4_group_of_its_vni() -> None:
    store = Store()
    store.announce("rr1", b"i1", RemoteImet(100, VTEP_A, igmp_proxy=False, mld_proxy=True))
    store.announce("rr1", b"i2", RemoteImet(200, VTEP_B, igmp_proxy=True, mld_proxy=True))
    assert svi_wants(store, SVIS, S1, G1) == {"br100"}
    assert svi_wants(store, SVIS, S2, G2) == {"br100"}
    # It has the MLD proxy flag: IPv6 groups are pruned by SMET as usual.
    assert svi_wants(store, SVIS, S6, G6) == set()


def test_an_imet_without_mld_proxy_wants_every_ipv6_group() -> None:
    store = Store()
    store.announce("rr1", b"i1", RemoteImet(200, VTEP_A, igmp_proxy=True, mld_proxy=False))
    assert svi_wants(store, SVIS, S6, G6) == {"br200"}
    assert svi_wants(store, SVIS, S1, G1) == set()


def test_a_local_bridge_port_join_makes_the_svi_wanted() -> None:
    store = Store()
    store.local_join(100, S1, G1, "vm1")
    store.local_join(200, None, G1, "vm2")
    assert svi_wants(store, SVIS, S1, G1) == {"br100", "br200"}
    assert svi_wants(store, SVIS, S2, G1) == {"br200"}
    store.local_leave(200, None, G1, "vm2")
    assert svi_wants(store, SVIS, S2, G1) == set()
    assert svi_wants(store, SVIS, S1, G1) == {"br100"}


def test_edge_ports_in_the_store_do_not_make_the_svi_wanted() -> None:
    store = Store()
    store.local_join(100, S1, G1, EDGE_PORT_PREFIX + "eth1")
    store.local_join(100, None, G1, EDGE_PORT_PREFIX + "eth2")
    assert svi_wants(store, SVIS, S1, G1) == set()
    # A real bridge port next to the edge port does.
    store.local_join(100, None, G1, "vm1")
    assert svi_wants(store, SVIS, S1, G1) == {"br100"}
    store.local_leave(100, None, G1, "vm1")
    assert svi_wants(store, SVIS, S1, G1) == set()


def test_only_configured_svis_are_considered() -> None:
    store = Store()
    store.announce("rr1", b"k1", RemoteSmet(300, VTEP_A, None, G1))
    store.local_join(300, None, G1, "vm1")
    assert svi_wants(store, SVIS, S1, G1) == set()
    assert svi_wants(store, {"br300": 300}, S1, G1) == {"br300"}


# --------------------------------------------------------------------------- static_outputs


def test_static_outputs_match_iif_group_and_source() -> None:
    routes = [
        StaticRoute(S1, G1, "eth1", ("br100",)),
        StaticRoute(None, G1, "eth1", ("br200", "eth2")),
        StaticRoute(S2, G1, "eth1", ("br300",)),
        StaticRoute(None, G1, "eth3", ("br400",)),
        StaticRoute(None, G2, "eth1", ("br500",)),
    ]
    assert static_outputs(routes, S1, G1, "eth1") == {"br100", "br200", "eth2"}
    assert static_outputs(routes, S2, G1, "eth1") == {"br200", "eth2", "br300"}
    assert static_outputs(routes, ip_address("192.0.2.99"), G1, "eth1") == {"br200", "eth2"}
    assert static_outputs(routes, S1, G1, "eth3") == {"br400"}
    assert static_outputs(routes, S1, G2, "eth1") == {"br500"}
    assert static_outputs(routes, S1, G2, "eth3") == set()
    assert static_outputs(routes, S1, G1, "eth9") == set()
    assert static_outputs([], S1, G1, "eth1") == set()


# --------------------------------------------------------------------------- desired_routes / route_diff

# Table 253: eth1=0, br100=1, br200=2; table 100: eth1=0, br300=1.
SLOTS: dict[str, list[Slot]] = {
    "eth1": [Slot(253, 0), Slot(100, 0)],
    "br100": [Slot(253, 1)],
    "br200": [Slot(253, 2)],
    "br300": [Slot(100, 1)],
}
NAMES_BY_VIF = {(s.table, s.vif): name for name, slots in SLOTS.items() for s in slots}


def flow(table: int, iif: int, source: IPAddress = S1, group: IPAddress = G1) -> Flow:
    return Flow(table, source, group, iif)


def test_desired_oifs_are_wanted_vifs_of_the_flows_table_without_the_input() -> None:
    from_svi = flow(253, 1)  # arrives on br100
    from_edge = flow(253, 0, S2)  # arrives on eth1
    in_100 = flow(100, 1)  # arrives on br300
    wanted = {
        from_svi: {"eth1", "br100", "br200", "br300"},
        from_edge: {"eth1", "br200", "br300", "unknown0"},
        in_100: {"eth1", "br100", "br300"},
    }
    desired = desired_routes([from_svi, from_edge, in_100], NAMES_BY_VIF, SLOTS, wanted)
    assert desired == {
        from_svi: frozenset({0, 2}),  # br300 is in table 100 only; br100 is the input
        from_edge: frozenset({2}),  # eth1 is the input; br300 not in 253; unknown0 has no VIF
        in_100: frozenset({0}),  # eth1's VIF in table 100; br100 is not in 100; br300 is the input
    }


def test_a_flow_nobody_wants_gets_an_empty_route() -> None:
    f = flow(253, 2)
    assert desired_routes([f], NAMES_BY_VIF, SLOTS, {}) == {f: frozenset()}
    assert desired_routes([f], NAMES_BY_VIF, SLOTS, {f: {"br200"}}) == {f: frozenset()}


def test_flows_with_an_unknown_input_vif_are_dropped() -> None:
    known = flow(253, 1)
    unknown_vif = flow(253, 7)
    unknown_table = flow(101, 0)
    vif_of_other_table = flow(100, 2)  # VIF 2 exists in 253 only
    flows = [known, unknown_vif, unknown_table, vif_of_other_table]
    wanted = {f: {"eth1", "br200"} for f in flows}
    desired = desired_routes(flows, NAMES_BY_VIF, SLOTS, wanted)
    assert desired == {known: frozenset({0, 2})}


def test_route_diff_puts_changed_and_new_routes_and_deletes_unwanted_ones() -> None:
    same = flow(253, 1)
    changed = flow(253, 2)
    new = flow(253, 0, S2)
    new_empty = flow(100, 0, S2)
    gone = flow(253, 1, S2)
    emptied = flow(100, 1)
    desired = {
        same: frozenset({0, 2}),
        changed: frozenset({0, 1}),
        new: frozenset({1}),
        new_empty: frozenset(),
        emptied: frozenset(),
    }
    installed = {
        same: frozenset({2, 0}),
        changed: frozenset({0}),
        gone: frozenset({0}),
        emptied: frozenset({0}),
    }
    put, delete = route_diff(desired, installed)
    assert put == {
        changed: frozenset({0, 1}),
        new: frozenset({1}),
        new_empty: frozenset(),
        emptied: frozenset(),
    }
    assert delete == [gone]


def test_route_diff_of_equal_maps_is_empty() -> None:
    routes = {flow(253, 1): frozenset({0}), flow(100, 0): frozenset()}
    assert route_diff(routes, dict(routes)) == ({}, [])
    assert route_diff({}, {}) == ({}, [])
    assert route_diff({}, routes) == ({}, list(routes))
