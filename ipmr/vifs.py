"""The VIF budget: which interface gets which VIF index in which table, within MAXVIFS.

Pure planning: interfaces and their readiness in, an assignment and refusals out. The kernel
gives each multicast routing table 32 VIFs (MAXVIFS; the 33rd add fails with ENFILE), so a
leaf with many VNIs either stays within 32 or spreads its VNIs over several tables:

- every table gets every edge interface (an edge receiver must be reachable from each VNI),
- VNI SVIs are dealt out over the tables in configuration order, filling the first table
  before the next,
- traffic is steered to a table by the interface it arrives on (``ip mrule iif brN lookup T``),
  so an SVI's sources reach the edge and the SVIs of the same table. Traffic that arrives on
  an edge interface is looked up in the first table only.

Assignments are sticky: an interface keeps its VIF index while it stays usable, so a change
elsewhere never renumbers (and so never interrupts) existing routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MAXVIFS", "Budget", "Candidate", "Slot", "plan_vifs"]

MAXVIFS: Final = 32


@dataclass(frozen=True, slots=True)
class Candidate:
    """An interface IPMR should reach; ``problem`` says why it cannot have a VIF now."""

    name: str
    edge: bool
    vni: int | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    table: int
    vif: int


@dataclass
class Budget:
    """Result of planning: who has which slot, who was refused and why, use per table."""

    slots: dict[str, list[Slot]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    used: dict[int, int] = field(default_factory=dict)

    def report(self) -> dict[str, object]:
        return {
            "tables": {str(t): {"used": n, "max": MAXVIFS} for t, n in sorted(self.used.items())},
            "refused": dict(self.refused),
        }


def _free(taken: set[int]) -> int | None:
    for vif in range(MAXVIFS):
        if vif not in taken:
            return vif
    return None


def plan_vifs(
    candidates: Sequence[Candidate],
    tables: Sequence[int],
    current: Mapping[str, Sequence[Slot]],
) -> Budget:
    """Assign VIF slots: edges in every table, SVIs to the first table with room.

    ``current`` is what is installed now; those slots are kept for interfaces that are still
    usable candidates. A refusal names the interface, the tables and the limit.
    """
    if not tables or len(set(tables)) != len(tables):
        raise ValueError(f"tables must be distinct and at least one: {list(tables)}")
    budget = Budget(used={t: 0 for t in tables})
    taken: dict[int, set[int]] = {t: set() for t in tables}
    usable = [c for c in candidates if c.problem is None]
    for c in candidates:
        if c.problem is not None:
            budget.refused[c.name] = c.problem
    # Keep existing slots first, so nothing is renumbered.
    for c in usable:
        for slot in current.get(c.name, ()):
            if slot.table in taken and slot.vif not in taken[slot.table]:
                taken[slot.table].add(slot.vif)
                budget.slots.setdefault(c.name, []).append(slot)
    # Room is held back for every configured edge not yet in a table, even one that is down
    # now: an edge must reach every table, and a full table cannot take it back later
    # without renumbering someone.
    reserved = {
        t: sum(1 for c in candidates if c.edge and t not in {s.table for s in budget.slots.get(c.name, [])})
        for t in tables
    }
    # Edges first: an edge must be in every table, so SVIs only get what the edges leave.
    for c in sorted(usable, key=lambda c: not c.edge):
        have = {s.table for s in budget.slots.get(c.name, [])}
        if c.edge:
            missing = []
            for table in (t for t in tables if t not in have):
                vif = _free(taken[table])
                if vif is None:
                    missing.append(table)
                    continue
                taken[table].add(vif)
                reserved[table] -= 1
                budget.slots.setdefault(c.name, []).append(Slot(table, vif))
            if missing:
                budget.refused[c.name] = _full(c, missing)
        elif not have:
            room = [t for t in tables if len(taken[t]) + reserved[t] < MAXVIFS]
            if not room:
                budget.refused[c.name] = _full(c, tables)
                continue
            vif = _free(taken[room[0]])
            assert vif is not None
            taken[room[0]].add(vif)
            budget.slots.setdefault(c.name, []).append(Slot(room[0], vif))
    for table in tables:
        budget.used[table] = len(taken[table])
    return budget


def _full(c: Candidate, tables: Sequence[int]) -> str:
    """Why ``c`` has no VIF in ``tables`` (for an edge: the tables it is missing from)."""
    what = "edge interface" if c.edge else f"SVI of VNI {c.vni}"
    where = ", ".join(str(t) for t in tables)
    return (
        f"no VIF for {c.name} ({what}): multicast routing table{'s' if len(tables) > 1 else ''} {where} "
        f"already use{'' if len(tables) > 1 else 's'} all {MAXVIFS} VIFs (MAXVIFS); configure another "
        "table in ipmr.tables to spread VNIs"
    )
