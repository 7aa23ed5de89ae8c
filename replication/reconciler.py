"""Level-triggered head-end replication: store -> desired entries -> diff vs kernel -> batches.

One pass: make sure each configured VNI's devices exist and are set up (VXLAN port as a
permanent multicast-router port), dump the FDB of each VXLAN
device and the MDB, compute what the store wants, and write only the difference, adds
before deletes so forwarding for unchanged and moving entries never stops. Nothing is
flushed, at start-up included: a restart only removes what is stale.

Ownership (docs/replication.md): MDB remotes carry the agent's protocol number
(MDBE_ATTR_RTPROT), which the kernel keeps and reports. VXLAN FDB remotes do not keep
NDA_PROTOCOL (checked on 6.18: sent, accepted, never reported), so the agent records the FDB
remotes it wrote in a journal file, written *before* the kernel write (intent) and pruned to
what the kernel still holds after it. Anything else in the kernel is someone else's and is
never changed or removed.

A write the kernel refuses stays pending: the next pass recomputes the diff anyway, and a
per-entry backoff (doubling from ``retry_initial`` to ``retry_max`` seconds) keeps a
persistent refusal from being hammered. Every pass returns a ``PassReport``.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal

from bgp.evpn import IPAddress
from replication.kernel import Kernel, KernelError, Op
from replication.model import (
    ZERO_MAC,
    Device,
    FdbEntry,
    MdbEntry,
    Mode,
    StoreView,
    WrongFamily,
    desired_flood,
    desired_mac_groups,
    desired_mdb,
    plan,
)
from replication.netlink import Ack

__all__ = ["DEFAULT_PROTOCOL", "PassReport", "Reconciler", "Settings", "VniPorts"]

log = logging.getLogger("evpn.replication")

DEFAULT_PROTOCOL = 232
"""Protocol number marking the agent's MDB entries (unassigned in /etc/iproute2/rt_protos)."""


@dataclass(frozen=True, slots=True)
class VniPorts:
    """Configured devices of one VNI; ``querier`` (the bridge's querier address) is applied by
    the daemon's bridge set-up (``agent.localjoins.setup_bridge``), not here."""

    vni: int
    bridge: str
    vxlan: str
    querier: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    mode: Literal["auto", "mdb", "mac"] = "auto"
    protocol: int = DEFAULT_PROTOCOL
    journal: Path | None = None
    retry_initial: float = 1.0
    retry_max: float = 60.0


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did, for logs, MQTT events and ``evpnctl``."""

    mode: Mode | None
    added: int = 0
    removed: int = 0
    failed: int = 0
    deferred: int = 0
    desired: int = 0
    errors: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def event(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "added": self.added,
            "removed": self.removed,
            "failed": self.failed,
            "deferred": self.deferred,
            "desired": self.desired,
            "errors": list(self.errors),
            "seconds": round(self.seconds, 6),
        }


@dataclass
class _Backoff:
    failures: int
    retry_at: float


@dataclass
class _Pass:
    """Mutable bookkeeping of one pass."""

    errors: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    failed: int = 0
    deferred: int = 0
    desired: int = 0


def _errname(code: int) -> str:
    return errno_mod.errorcode.get(code, str(code))


def _describe(add: bool, entry: FdbEntry | MdbEntry, vni: int) -> str:
    verb = "add" if add else "remove"
    if isinstance(entry, FdbEntry):
        if entry.mac == ZERO_MAC:
            what = f"flood remote {entry.dst}"
        else:
            what = f"multicast MAC {entry.mac.hex(':')} remote {entry.dst}"
    else:
        group = "catch-all" if int(entry.group) == 0 else f"group {entry.source or '*'},{entry.group}"
        what = f"{group} remote {entry.dst}"
    return f"vni {vni} {entry.device}: cannot {verb} {what}"


class Reconciler:
    """Keeps the VXLAN FDB/MDB of the configured VNIs equal to what the store wants."""

    def __init__(
        self,
        kernel: Kernel,
        vnis: Sequence[VniPorts],
        settings: Settings = Settings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kernel = kernel
        self._vnis = {v.vni: v for v in vnis}
        self._settings = settings
        self._clock = clock
        self._devices: dict[int, Device] = {}
        self._ifindex: dict[str, int] = {}
        self._mode: Mode | None = None if settings.mode == "auto" else settings.mode
        self._mode_logged = False
        self._journal: set[FdbEntry] = self._load_journal()
        self._journal_on_disk: set[FdbEntry] | None = None  # unknown until first written
        self._backoff: dict[FdbEntry | MdbEntry, _Backoff] = {}

    # ----------------------------------------------------------------- public

    @property
    def mode(self) -> Mode | None:
        """``mdb`` or ``mac`` once decided (config, or detected on the first pass)."""
        return self._mode

    @property
    def devices(self) -> dict[int, Device]:
        return dict(self._devices)

    def set_vnis(self, vnis: Sequence[VniPorts], settings: Settings | None = None) -> None:
        """Reload: manage these VNIs from the next pass on (a dropped VNI's entries stay put)."""
        self._vnis = {v.vni: v for v in vnis}
        for vni in [v for v in self._devices if v not in self._vnis]:
            del self._devices[vni]
        if settings is not None:
            self._settings = settings

    def next_retry(self) -> float | None:
        """When a deferred write becomes due; the daemon schedules a pass for then."""
        return min((b.retry_at for b in self._backoff.values()), default=None)

    def reconcile(
        self, store: StoreView, vnis: Iterable[int] | None = None, hold_deletes: bool = False
    ) -> PassReport:
        """One pass over ``vnis`` (default: all configured VNIs).

        ``hold_deletes``: add what is missing but remove nothing yet (counted as deferred).
        The daemon holds deletes after a restart until BGP has re-learned the fabric, so
        entries the kernel kept keep forwarding instead of being swept by an empty store.
        """
        started = time.perf_counter()
        state = _Pass()
        wanted = self._vnis.keys() if vnis is None else [v for v in vnis if v in self._vnis]
        try:
            devices = [d for d in (self._device(vni, state) for vni in sorted(wanted)) if d is not None]
            if devices:
                with _collector_paused():
                    self._sync(store, devices, state, hold_deletes)
        except KernelError as exc:
            state.errors.append(f"replication pass aborted: {exc}; the next pass re-reads the kernel")
        for line in state.errors:
            log.warning("%s", line)
        report = PassReport(
            self._mode,
            state.added,
            state.removed,
            state.failed,
            state.deferred,
            state.desired,
            tuple(state.errors),
            time.perf_counter() - started,
        )
        if report.changed or report.failed:
            log.info("replication pass: %s", report.event())
        return report

    # ----------------------------------------------------------------- devices

    def _device(self, vni: int, state: _Pass) -> Device | None:
        """The VNI's VXLAN device, checked and set up when first seen (or re-created)."""
        ports = self._vnis[vni]
        ifindex = self._kernel.ifindex(ports.vxlan)
        known = self._devices.get(vni)
        if ifindex is None:
            state.errors.append(f"vni {vni}: VXLAN device {ports.vxlan} not found; nothing programmed")
            self._devices.pop(vni, None)
            return None
        if known is not None and self._ifindex.get(known.name) == ifindex:
            return known
        self._devices.pop(vni, None)  # re-created or new: check it again before using it
        link = self._kernel.link(ports.vxlan)
        if link is None:
            state.errors.append(f"vni {vni}: VXLAN device {ports.vxlan} not found; nothing programmed")
            return None
        if link.kind != "vxlan":
            state.errors.append(f"vni {vni}: {ports.vxlan} is a {link.kind or 'plain'} device, not VXLAN")
            return None
        if link.vni != vni:
            state.errors.append(f"vni {vni}: {ports.vxlan} carries VNI {link.vni}, not {vni}")
            return None
        bridge_index = self._kernel.ifindex(ports.bridge)
        if bridge_index is None or link.master != bridge_index:
            state.errors.append(
                f"vni {vni}: {ports.vxlan} is not a port of bridge {ports.bridge}; "
                "multicast from local hosts will not reach it"
            )
        else:
            ack = self._kernel.set_router_port(link.ifindex)
            if ack is None or ack.errno:
                state.errors.append(
                    f"vni {vni}: cannot make {ports.vxlan} a permanent multicast router port of "
                    f"{ports.bridge}: {_ack_text(ack)}"
                )
        device = Device(vni, link.name, ports.bridge, link.family)
        self._devices[vni] = device
        self._ifindex[link.name] = link.ifindex
        log.info("vni %d: managing %s (IPv%d underlay) on %s", vni, link.name, link.family, ports.bridge)
        return device

    # ----------------------------------------------------------------- the pass

    def _sync(self, store: StoreView, devices: list[Device], state: _Pass, hold_deletes: bool) -> None:
        protocol = self._settings.protocol
        ifindex_to_name = {self._ifindex[d.name]: d.name for d in devices}
        mdb_records = self._kernel.dump_mdb(ifindex_to_name.keys())
        answering = {r.device for r in mdb_records}
        if self._mode is None:
            self._detect_mode(devices, answering)
        elif not self._mode_logged:
            log.info("replication mode %s (set in the config)", self._mode)
            if self._mode == "mdb" and not all(self._ifindex[d.name] in answering for d in devices):
                state.errors.append(
                    "replication.mode is mdb but the kernel shows no VXLAN MDB on "
                    + ", ".join(d.name for d in devices if self._ifindex[d.name] not in answering)
                    + ": group entries will be refused (use mode auto or mac)"
                )
        self._mode_logged = True
        present_mdb: set[MdbEntry] = set()
        owned_mdb: set[MdbEntry] = set()
        for r in mdb_records:
            name = ifindex_to_name.get(r.device)
            if name is None or r.dst is None or r.port != r.device:
                continue
            # The MDB keys remotes by address alone, so even a remote with its own port or
            # VNI occupies that address: it counts as present, and as ours only if plain.
            group_entry = MdbEntry(name, r.source, r.group, r.dst)
            present_mdb.add(group_entry)
            if r.protocol == protocol and r.plain:
                owned_mdb.add(group_entry)
        present_fdb: set[FdbEntry] = set()
        owned_fdb: set[FdbEntry] = set()
        journal = self._journal
        for device in devices:
            name = device.name
            for f in self._kernel.dump_fdb(self._ifindex[name]):
                # A remote with a port, VNI or ifindex of its own is a different remote to the
                # kernel (the FDB keys remotes by all four), so it neither satisfies a plain
                # one of ours nor is ever ours.
                if f.dst is None or not f.plain or not (f.mac == ZERO_MAC or f.mac[0] & 1):
                    continue
                flood_entry = FdbEntry(name, f.mac, f.dst)
                present_fdb.add(flood_entry)
                if flood_entry in journal or f.protocol == protocol:
                    owned_fdb.add(flood_entry)
        problems: list[WrongFamily] = []
        want_fdb: set[FdbEntry] = set()
        want_mdb: set[MdbEntry] = set()
        for device in devices:
            want_fdb |= desired_flood(store, device, problems)
            if self._mode == "mac":
                want_fdb |= desired_mac_groups(store, device, problems)
            else:
                want_mdb |= desired_mdb(store, device, problems)
        state.errors.extend(str(p) for p in problems[:20])
        if len(problems) > 20:
            state.errors.append(f"... and {len(problems) - 20} more remotes skipped for their address family")
        state.desired = len(want_fdb) + len(want_mdb)
        add_fdb, del_fdb = plan(want_fdb, present_fdb, owned_fdb)
        add_mdb, del_mdb = plan(want_mdb, present_mdb, owned_mdb)
        ops: list[Op] = [(True, e) for e in add_fdb]
        ops += [(True, e) for e in add_mdb]
        if hold_deletes:
            state.deferred += len(del_fdb) + len(del_mdb)
        else:
            ops += [(False, e) for e in del_fdb]
            ops += [(False, e) for e in del_mdb]
        ops = self._due(ops, state)
        names = set(ifindex_to_name.values())
        # Journal entries of devices outside this pass stay as they are.
        others = {e for e in journal if e.device not in names}
        if not ops:
            self._forget_backoff(names, want_fdb, want_mdb, owned_fdb, owned_mdb)
            self._save_journal(others | owned_fdb)
            return
        intent = others | owned_fdb | {e for add, e in ops if add and isinstance(e, FdbEntry)}
        self._save_journal(intent)
        acks = self._kernel.write(ops, self._ifindex, protocol)
        now = self._clock()
        for (add, entry), ack in zip(ops, acks, strict=True):
            ok = ack is not None and (
                ack.errno == 0
                or (not add and ack.errno == errno_mod.ENOENT)  # already gone
                or (add and isinstance(entry, MdbEntry) and ack.errno == errno_mod.EEXIST)
            )
            if ok:
                self._backoff.pop(entry, None)
                if add:
                    state.added += 1
                    if isinstance(entry, FdbEntry):
                        owned_fdb.add(entry)
                else:
                    state.removed += 1
                    if isinstance(entry, FdbEntry):
                        owned_fdb.discard(entry)
                continue
            state.failed += 1
            previous = self._backoff.get(entry)
            failures = 1 if previous is None else previous.failures + 1
            delay = min(self._settings.retry_initial * 2 ** (failures - 1), self._settings.retry_max)
            self._backoff[entry] = _Backoff(failures, now + delay)
            if len(state.errors) < 50:
                state.errors.append(
                    f"{_describe(add, entry, self._vni_of(entry.device))}: {_ack_text(ack)} "
                    f"(retry in {delay:g}s)"
                )
        self._forget_backoff(names, want_fdb, want_mdb, owned_fdb, owned_mdb)
        self._save_journal(others | owned_fdb)

    def _due(self, ops: list[Op], state: _Pass) -> list[Op]:
        if not self._backoff:
            return ops
        now = self._clock()
        out = []
        for op in ops:
            backoff = self._backoff.get(op[1])
            if backoff is not None and backoff.retry_at > now:
                state.deferred += 1
            else:
                out.append(op)
        return out

    def _forget_backoff(self, names: set[str], *still_relevant: set[FdbEntry] | set[MdbEntry]) -> None:
        """Drop backoff of this pass's devices for entries no longer wanted nor owned."""
        if self._backoff:
            keep: set[FdbEntry | MdbEntry] = set().union(*still_relevant)
            for entry in [e for e in self._backoff if e.device in names and e not in keep]:
                del self._backoff[entry]

    def _vni_of(self, device: str) -> int:
        for d in self._devices.values():
            if d.name == device:
                return d.vni
        return 0

    def _detect_mode(self, devices: list[Device], answering: set[int]) -> None:
        """VXLAN MDB if the MDB dump answers for our VXLAN devices (kernel 6.3+), else MACs."""
        if all(self._ifindex[d.name] in answering for d in devices):
            self._mode = "mdb"
            log.info("replication mode mdb: the kernel has a VXLAN MDB")
        else:
            self._mode = "mac"
            log.warning(
                "replication mode mac: the kernel has no VXLAN MDB; groups sharing a multicast MAC "
                "share receivers and unregistered multicast follows the flood list"
            )

    # ----------------------------------------------------------------- journal

    def _load_journal(self) -> set[FdbEntry]:
        path = self._settings.journal
        if path is None or not path.exists():
            return set()
        try:
            data = json.loads(path.read_text())
            return {
                FdbEntry(str(name), bytes.fromhex(mac), ip_address(dst)) for name, mac, dst in data["fdb"]
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error(
                "replication journal %s unreadable (%s): FDB entries of a previous run are left alone",
                path,
                exc,
            )
            return set()

    def _save_journal(self, entries: set[FdbEntry]) -> None:
        """Record ``entries`` as ours, in memory at once and on disk (retried next pass if it fails)."""
        self._journal = set(entries)
        path = self._settings.journal
        if path is None or entries == self._journal_on_disk:
            return
        rows = [[e.device, _mac_text(e.mac), _addr_text(e.dst)] for e in entries]
        text = json.dumps({"version": 1, "fdb": rows})  # dumps uses the C encoder, dump does not
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # No fsync: the journal must survive the agent (a crash, SIGKILL), and a written
            # file does; what it would add is surviving the machine, but a reboot empties the
            # kernel's FDB as well, and entries the kernel lacks are pruned from the journal.
            # Syncing a file per pass would cost more than the pass in a burst of small ones.
            with open(tmp, "w") as out:
                out.write(text)
            os.replace(tmp, path)
            self._journal_on_disk = set(entries)
        except OSError as exc:
            log.error("cannot write replication journal %s: %s", path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A pass allocates hundreds of thousands of tuples and sets and makes no reference cycles;
    the cyclic collector's generation-2 runs meanwhile walk the whole store and cost a quarter
    of the pass (bench/smet_scale.py). Paused for the pass (process-wide, so the loop's cyclic
    garbage waits until it ends: under a second)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# The journal is rewritten after each pass that changes it; a burst makes many, so the text of
# each address and MAC is made once (ipaddress's str() is slow) rather than once per write.
_addr_text: Callable[[IPAddress], str] = lru_cache(maxsize=1 << 17)(str)
_mac_text: Callable[[bytes], str] = lru_cache(maxsize=1 << 12)(bytes.hex)


def _ack_text(ack: Ack | None) -> str:
    if ack is None:
        return "no answer from the kernel"
    text = f"{_errname(ack.errno)} ({os.strerror(ack.errno)})"
    if ack.text:
        text += f": {ack.text}"
    return text
