"""The leaf agent: one asyncio loop that ties BGP, the store, both reconcilers, local joins,
the control socket and MQTT together.

The loop owns the store. Everything that changes it (ExaBGP lines, bridge MDB events, IGMP
reports on IPMR edges) runs in the loop and returns a ChangeSet; ``_changed`` fans a
ChangeSet out: VNIs to the replication task, groups to the IPMR driver, local groups to
origination, and events to MQTT. Kernel work that can be large (a replication pass) runs in
a worker thread on a frozen snapshot of the store, so ExaBGP is never kept waiting.

After a restart the kernel still holds the previous run's FDB/MDB entries. Replication adds
at once but holds its deletes until every neighbor has sent End-of-RIB (or
``replication.startup_hold`` has passed): an empty store must not sweep forwarding that BGP
is about to confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, load_config
from agent.control import ControlError, serve
from agent.intake import Intake
from agent.store import ChangeSet, Store
from agent.views import Snapshot, view
from bgp.evpn import IPAddress
from bgp.exabgp_json import EndOfRib, Event, Notification, PeerState
from bgp.speaker import ExabgpProcess
from ipmr.driver import IpmrDriver
from ipmr.mrt import MrtError
from replication.kernel import KernelError, RouteKernel
from replication.model import StoreSnapshot
from replication.reconciler import PassReport, Reconciler

__all__ = ["EXIT_CONFIG", "EXIT_CONFLICT", "EXIT_OK", "EXIT_START", "Agent"]

log = logging.getLogger("evpn.agent")

EOR_GRACE = 5.0  # seconds a session must be up before its peer counts as sent without End-of-RIB
REFUSALS_SHOWN = 20  # refused routes logged and published per reason and minute
PASS_DUTY = 0.33  # at most this share of the time in replication passes while changes keep coming
PASS_GAP_S = 0.025  # ... and passes at least this far apart while they do
FIRST_PASS_WAIT_S = 10.0  # BGP starts after the first replication pass, or after this long
QUIET_S = 0.01  # no store change for this long: the burst is over, no reason to wait
BACKLOG_POLL_S = 0.005
RESPAWN_STABLE_S = 60.0  # an ExaBGP that ran this long before dying is restarted at once
RESPAWN_MAX_S = 30.0  # the longest pause before starting an ExaBGP that keeps dying again
EXIT_OK = 0
EXIT_CONFIG = 2  # the config is invalid, or names devices that do not exist
EXIT_START = 3  # a part could not start (ExaBGP, control socket)
EXIT_CONFLICT = 4  # another multicast router owns the IPMR table


class _StoreHook:
    """The store as the IPMR driver sees it: its local joins also reach ``_changed``."""

    def __init__(self, store: Store, changed: Callable[[ChangeSet], None]) -> None:
        self._store = store
        self._changed = changed

    def receivers(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[IPAddress]:
        return self._store.receivers(vni, source, group)

    def local_ports(self, vni: int, source: IPAddress | None, group: IPAddress) -> frozenset[str]:
        return self._store.local_ports(vni, source, group)

    def local_join(self, vni: int, source: IPAddress | None, group: IPAddress, port: str) -> ChangeSet:
        change = self._store.local_join(vni, source, group, port)
        self._changed(change)
        return change

    def local_leave(self, vni: int, source: IPAddress | None, group: IPAddress, port: str) -> ChangeSet:
        change = self._store.local_leave(vni, source, group, port)
        self._changed(change)
        return change


class Agent:
    def __init__(self, config: AgentConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.started = time.monotonic()
        self._hold_began = self.started  # deletes are held from here until BGP has converged
        self._converged_latched = False
        self._exabgp_since = self.started
        self._respawn_delay = 0.0
        self.store = Store([config.local_vtep], config.store_limits())
        self.intake = Intake(self.store, config.import_policy(), config.graceful_restart_times())
        workdir = config.workdir
        # ExaBGP at INFO logs a statistics line per message received: only when debugging.
        exabgp_level = "INFO" if config.log_level == "debug" else "WARNING"
        self.process = ExabgpProcess(config.speaker(), workdir / "exabgp", log_level=exabgp_level)
        self.process.on_connect = self._api_connected
        self.process.on_exit = self._exabgp_exited
        from agent.bgpside import BgpSide

        self.bgp = BgpSide(self.process, self.intake, config.origin(), on_change=self._changed)
        self.bgp.on_event = self._bgp_event
        self.reconciler = Reconciler(RouteKernel(), config.vni_ports(), config.replication_settings())
        self.driver: IpmrDriver | None = None
        self.watcher: Any = None
        self.publisher: Any = None
        self.last_pass: PassReport | None = None
        self.errors: list[str] = []
        self._dirty: set[int] | None = None  # None: every VNI
        self._kick = asyncio.Event()
        self._first_pass = asyncio.Event()
        self._origination_due = asyncio.Event()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._eor: set[str] = set()
        self._up_since: dict[str, float] = {}
        self._peer_shown: dict[str, str] = {}  # peer -> the state last logged and published
        self._vni_by_bridge_before: dict[str, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        # Coalesced by _changed until the loop is idle (None: every group for the driver).
        self._driver_groups: set[IPAddress] | None = set()
        self._driver_due = False
        self._pending_flood: set[int] = set()
        self._pending_members: set[tuple[int, IPAddress | None, IPAddress]] = set()
        self._flush_scheduled = False
        self._refusals: dict[str, tuple[float, int]] = {}  # reason -> (minute began, count)
        self._last_pass_end = 0.0
        self._last_pass_s = 0.0
        self._last_change = 0.0

    # ----------------------------------------------------------------- change fan-out

    def _changed(self, change: ChangeSet) -> None:
        """Fan a store change out: replication passes, the IPMR driver, origination, MQTT.

        Replication only marks VNIs dirty, and the IPMR driver and the MQTT events are
        coalesced until the loop is next idle: a burst of 10,000 routes arrives as lines that
        are handled back to back, and per-route work there (a flood event listing every VTEP
        of the VNI, a driver pass per group) would make the agent, not the sender, the
        bottleneck. Events then carry the state after the burst, which is what they describe.
        """
        if change.rejected is not None:
            self._refused(change.rejected.reason, change.rejected.detail)
        if not change:
            return
        self._last_change = time.monotonic()
        vnis = set(change.flood) | set(change.all_multicast) | {vni for vni, _s, _g in change.groups}
        if vnis:
            if self._dirty is not None:
                self._dirty |= vnis
            self._kick.set()
        if change.local:
            self._origination_due.set()
        due = False
        if self.driver is not None and (change.groups or change.local or change.all_multicast):
            if change.all_multicast:
                self._driver_groups = None
            elif self._driver_groups is not None:
                self._driver_groups |= {g for _v, _s, g in change.groups | change.local}
            self._driver_due = due = True
        if self.publisher is not None and (change.flood or change.groups or change.local):
            self._pending_flood |= change.flood
            self._pending_members |= change.groups | change.local
            due = True
        if due and not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside the agent's loop (tools, tests): at once
                self._flush_changes()
                return
            self._flush_scheduled = True
            loop.call_soon(self._flush_changes)

    def _refused(self, reason: str, detail: str) -> None:
        """A refused route: logged and published, at most REFUSALS_SHOWN per reason and minute
        so that a peer sending thousands cannot flood the log or the broker; all are counted
        (``evpnctl show summary``, ``rejected``)."""
        now = time.monotonic()
        began, count = self._refusals.get(reason, (now, 0))
        if now - began >= 60.0:
            began, count = now, 0
        count += 1
        self._refusals[reason] = (began, count)
        if count <= REFUSALS_SHOWN:
            log.warning("refused %s (%s)", detail, reason)
            self._publish("error", {"message": detail, "reason": reason})
        elif count == REFUSALS_SHOWN + 1:
            text = f"more {reason} refusals this minute are counted (evpnctl show summary), not shown"
            log.warning("%s", text)
            self._publish("error", {"message": text, "reason": reason})

    def _flush_changes(self) -> None:
        """The coalesced part of ``_changed``: one driver pass and one event per VNI or group."""
        self._flush_scheduled = False
        if self._driver_due and self.driver is not None:
            groups, self._driver_groups, self._driver_due = self._driver_groups, set(), False
            for line in self.driver.reconcile(groups):
                self._publish("error", {"message": line})
        flood, self._pending_flood = self._pending_flood, set()
        members, self._pending_members = self._pending_members, set()
        if self.publisher is None:
            return
        for vni in sorted(flood):
            self._publish("flood", {"vni": vni, "vteps": sorted(map(str, self.store.flood_list(vni)))})
        for vni, source, group in sorted(members, key=str):
            self._publish(
                "membership",
                {
                    "vni": vni,
                    "source": "*" if source is None else str(source),
                    "group": str(group),
                    "receivers": sorted(map(str, self.store.receivers(vni, source, group))),
                    "local_ports": sorted(self.store.local_ports(vni, source, group)),
                },
            )

    def _bgp_event(self, event: Event) -> None:
        if isinstance(event, PeerState):
            if event.state == "down":
                self._eor.discard(event.peer)
                self._up_since.pop(event.peer, None)
            elif event.state == "up":
                self._up_since.setdefault(event.peer, time.monotonic())
            # ExaBGP may report one loss twice ("notification received", then "closing
            # connection"): log and publish a peer's state only when it changes.
            if self._peer_shown.get(event.peer) == event.state:
                return
            self._peer_shown[event.peer] = event.state
            self._publish("peer", {"peer": event.peer, "state": event.state, "reason": event.reason})
            if self.publisher is not None:  # the retained summary follows session changes at once
                self.publisher.state(view("summary", self.snapshot()))
            log.info("peer %s %s%s", event.peer, event.state, f" ({event.reason})" if event.reason else "")
        elif isinstance(event, EndOfRib):
            self._eor.add(event.peer)
            if self._converged():
                self._kick.set()
        elif isinstance(event, Notification):
            log.warning("peer %s sent a NOTIFICATION: %s", event.peer, event)

    def _exabgp_exited(self, status: int) -> None:
        """ExaBGP died (killed, crashed): every session went with it. Its peers' paths go as
        for any lost session (kept stale with graceful restart), the routes the agent announced
        are gone from its RIB, and deletes are held again as at start-up, so the kernel keeps
        forwarding until the peers are back and have sent their routes again (End-of-RIB, or
        EOR_GRACE seconds up). Then a new ExaBGP is started, with a growing pause if they keep
        dying."""
        now = time.monotonic()
        text = f"ExaBGP exited (status {status}): restarting it; kernel entries are kept meanwhile"
        log.error("%s", text)
        self._publish("error", {"message": text})
        self._converged_latched = False
        self._hold_began = now
        for peer, state in list(self.bgp.peer_states.items()):
            if state != "down":
                self.bgp.apply(PeerState(peer, "down", "ExaBGP exited"))
        self.bgp.announced.clear()
        self._origination_due.set()
        quick = now - self._exabgp_since < RESPAWN_STABLE_S
        self._respawn_delay = min(RESPAWN_MAX_S, self._respawn_delay * 2 or 1.0) if quick else 0.0
        self._tasks.append(asyncio.get_running_loop().create_task(self._respawn_exabgp()))

    async def _respawn_exabgp(self) -> None:
        while True:
            if self._respawn_delay:
                log.warning("starting ExaBGP again in %.0f s", self._respawn_delay)
                await asyncio.sleep(self._respawn_delay)
            try:
                await self.process.respawn()
            except RuntimeError as exc:
                log.error("ExaBGP did not start: %s", str(exc).splitlines()[0])
                self._respawn_delay = min(RESPAWN_MAX_S, self._respawn_delay * 2 or 1.0)
                continue
            self._exabgp_since = time.monotonic()
            if self.process.pid is not None:
                (self.config.workdir / "exabgp.pid").write_text(str(self.process.pid))
            log.warning("ExaBGP started again (pid %s)", self.process.pid)
            return

    def _api_connected(self, count: int) -> None:
        if count > 1:  # ExaBGP restarted our API process: ask peers for everything again
            log.warning("ExaBGP restarted the API process; asking peers for a route refresh")
            self._tasks.append(asyncio.get_running_loop().create_task(self.bgp.route_refresh()))
            self._origination_due.set()

    def _converged(self) -> bool:
        """Every neighbor has sent End-of-RIB, or has been up for EOR_GRACE seconds (FRR sends
        End-of-RIB only to peers that negotiated graceful restart), or the hold is over."""
        if self._converged_latched:  # later losses are churn, not a start-up to wait out
            return True
        now = time.monotonic()
        if now - self._hold_began < self.config.replication.startup_hold:
            for n in self.config.neighbors:
                peer = str(n.address)
                since = self._up_since.get(peer)
                if peer not in self._eor and (since is None or now - since < EOR_GRACE):
                    return False
        self._converged_latched = True
        return True

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        if self.publisher is not None:
            self.publisher.event(kind, payload)

    # ----------------------------------------------------------------- tasks

    async def _replication_loop(self) -> None:
        """One pass at a time; passes coalesce the VNIs changed meanwhile."""
        while True:
            retry = self.reconciler.next_retry()
            timeout = None if retry is None else max(0.05, retry - time.monotonic())
            held = not self._converged()
            if held:  # look again each second: the hold ends with End-of-RIB, grace or time
                timeout = min(timeout or 1.0, 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)
            # While changes keep coming, space the passes so that they take at most PASS_DUTY of
            # the time and start at least PASS_GAP_S apart: the changes meanwhile join the next
            # pass (one dump, one diff, one batch of writes) and the loop keeps the rest for
            # reading routes. Once the input is quiet (every line read handled, no change for
            # QUIET_S), or for a lone change, the pass runs at once.
            until = self._last_pass_end + max(PASS_GAP_S, self._last_pass_s * (1 / PASS_DUTY - 1))
            while time.monotonic() < until and (
                self.process.backlog or time.monotonic() - self._last_change < QUIET_S
            ):
                await asyncio.sleep(BACKLOG_POLL_S)
            self._kick.clear()
            dirty, self._dirty = self._dirty, set()
            vnis = sorted(self.reconciler.devices) if dirty is None else sorted(dirty)
            configured = [p.vni for p in self.config.vni_ports()]
            scope = configured if dirty is None else [v for v in vnis if v in configured]
            snapshot = StoreSnapshot.of(self.store, scope)
            hold = not self._converged()
            began = time.monotonic()
            report = await asyncio.to_thread(
                self.reconciler.reconcile, snapshot, None if dirty is None else scope, hold
            )
            self._last_pass_end = time.monotonic()
            # A full pass (the first, at start-up: devices found, the journal adopted, every
            # VNI dumped) says nothing about what the next change costs: it does not stretch
            # the gap before the passes of a burst that follows, such as a session coming up.
            self._last_pass_s = 0.0 if dirty is None else self._last_pass_end - began
            self.last_pass = report
            self._first_pass.set()
            if report.changed or report.failed or report.errors:
                self._publish("replication", report.event())
            for line in report.errors:
                self._publish("error", {"message": line})
            if not hold and held:
                log.info("BGP converged: stale replication entries may now be removed")
                self._dirty = None
                self._kick.set()

    async def _origination_loop(self) -> None:
        while True:
            await self._origination_due.wait()
            self._origination_due.clear()
            local = {vni: self.store.local_groups(vni) for vni in self.store.vnis()}
            refused = await self.bgp.sync_origination(local)
            if refused:
                log.warning("ExaBGP refused %d route commands; retrying", refused)
                await asyncio.sleep(1.0)  # back off before the retry, not synchronisation
                self._origination_due.set()

    async def _ipmr_loop(self) -> None:
        assert self.driver is not None
        loop = asyncio.get_running_loop()
        for sock in self.driver.sockets():
            loop.add_reader(sock.fileno(), self.driver.handle, sock)
        next_refresh = time.monotonic() + 2.0
        while True:
            deadline = self.driver.next_deadline()
            now = time.monotonic()
            wait = min(x for x in (deadline, next_refresh, now + 1.0) if x is not None) - now
            await asyncio.sleep(max(0.05, wait))  # the driver's timers, not synchronisation
            self.driver.tick()
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + 2.0
                self.driver.refresh()  # in the loop: it reads and writes the store

    async def _state_loop(self) -> None:
        while True:
            if self.publisher is not None:
                self.publisher.state(view("summary", self.snapshot()))
            await asyncio.sleep(5.0)  # the retained summary's refresh period

    # ----------------------------------------------------------------- control

    def snapshot(self) -> Snapshot:
        vnis = [{"vni": p.vni, "bridge": p.bridge, "device": p.vxlan} for p in self.config.vni_ports()]
        peers: dict[str, dict[str, Any]] = {
            str(n.address): {"state": self.bgp.peer_states.get(str(n.address), "idle"), "asn": n.asn}
            for n in self.config.neighbors
        }
        ipmr: dict[str, Any] = {"enabled": self.driver is not None}
        if self.driver is not None:
            ipmr["budget"] = self.driver.budget()
            ipmr["errors"] = list(self.driver.errors)
        rep: dict[str, Any] = {"mode": self.reconciler.mode, "converged": self._converged()}
        if self.last_pass is not None:
            rep.update(self.last_pass.event())
        return Snapshot(
            router_id=str(self.config.router_id),
            local_vtep=str(self.config.local_vtep),
            asn=self.config.asn,
            uptime=time.monotonic() - self.started,
            store=self.store,
            vnis=vnis,
            peers=peers,
            replication=rep,
            ipmr=ipmr,
            mqtt=None if self.publisher is None else self.publisher.stats,
            errors=list(self.errors),
        )

    async def _control(self, request: dict[str, Any]) -> Any:
        what = request.get("show")
        if what is None:
            raise ValueError('unknown request: expected {"show": VIEW}')
        if what in ("mroutes", "vifs"):
            snap = self.snapshot()
            if self.driver is not None:
                families = self.config.ipmr.families
                if what == "mroutes":
                    routes = []
                    for family in families:
                        names = self.driver.interface_names()
                        for r in self.driver.kernel_routes(family):
                            routes.append(
                                {
                                    "family": family,
                                    "table": r.table,
                                    "source": "*" if r.source is None else str(r.source),
                                    "group": "*" if r.group is None else str(r.group),
                                    "iif": names.get(r.iif or -1, r.iif),
                                    "oifs": [names.get(i, i) for i, _t in r.oifs],
                                    "packets": r.packets,
                                    "bytes": r.bytes,
                                    "wrong_if": r.wrong_if,
                                    "unresolved": r.unresolved,
                                }
                            )
                    return routes
                vifs = []
                for family in families:
                    for row in self.driver.show_vifs(family):
                        vifs.append({"family": family, **row})
                return {"budget": self.driver.budget(), "vifs": vifs}
            return view(what, snap)
        if what not in ("summary", "vnis", "flood", "groups", "peers"):
            raise ValueError(f"unknown view {what!r}: summary, vnis, flood, groups, peers, mroutes, vifs")
        return view(what, self.snapshot())

    # ----------------------------------------------------------------- life cycle

    def _kill_stale_exabgp(self) -> None:
        """A previous run killed with SIGKILL leaves its ExaBGP (own session) behind."""
        pidfile = self.config.workdir / "exabgp.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"bgp.launcher" in cmdline and str(self.process.config_path).encode() in cmdline:
                log.warning("stopping ExaBGP (pid %d) left behind by a previous run", pid)
                os.killpg(pid, signal.SIGTERM)
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.05)  # waiting for a process to exit, bounded
                else:
                    os.killpg(pid, signal.SIGKILL)

    async def run(self) -> int:
        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.workdir, 0o700)
        loop = asyncio.get_running_loop()
        for sig, event in (
            (signal.SIGTERM, self._stop),
            (signal.SIGINT, self._stop),
            (signal.SIGHUP, self._reload),
        ):
            loop.add_signal_handler(sig, event.set)
        if cfg.ipmr.enabled:
            self.driver = IpmrDriver(cfg.ipmr_settings(), _StoreHook(self.store, self._changed))
            try:
                self.errors += self.driver.start()
            except MrtError as exc:
                log.error("%s", exc)
                print(f"evpn-agent: {exc}", file=sys.stderr)
                return EXIT_CONFLICT
        try:
            server = await serve(cfg.control_path(), self._control)
        except ControlError as exc:
            print(f"evpn-agent: {exc}", file=sys.stderr)
            if self.driver is not None:
                self.driver.close()
            return EXIT_START
        await self._start_local_joins()
        self._start_mqtt()
        self._kill_stale_exabgp()
        # Replication is ready before BGP, as zebra is before bgpd: the first pass (devices
        # found, the journal adopted, the kernel read) is over when the sessions start, so the
        # routes of a session that comes up loaded are written from the first one on.
        self._tasks.append(loop.create_task(self._replication_loop()))
        self._kick.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_pass.wait(), FIRST_PASS_WAIT_S)
        try:
            await self.process.start()
        except RuntimeError as exc:
            print(f"evpn-agent: ExaBGP did not start: {str(exc).splitlines()[0]}", file=sys.stderr)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            server.close()
            if self.driver is not None:
                self.driver.close()
            return EXIT_START
        if self.process.pid is not None:
            (cfg.workdir / "exabgp.pid").write_text(str(self.process.pid))
        self._tasks += [
            loop.create_task(self.bgp.run()),
            loop.create_task(self._origination_loop()),
            loop.create_task(self._state_loop()),
        ]
        if self.driver is not None:
            self._tasks.append(loop.create_task(self._ipmr_loop()))
        if self.publisher is not None:
            self._tasks.append(loop.create_task(self.publisher.run()))
        self._origination_due.set()
        log.info("agent %s up: %d VNIs, %d neighbors", cfg.router_id, len(cfg.vnis), len(cfg.neighbors))
        print(f"evpn-agent: running (control socket {cfg.control_path()})", file=sys.stderr, flush=True)
        while not self._stop.is_set():
            reload_wait = loop.create_task(self._reload.wait())
            stop_wait = loop.create_task(self._stop.wait())
            await asyncio.wait({reload_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            reload_wait.cancel()
            stop_wait.cancel()
            if self._reload.is_set() and not self._stop.is_set():
                self._reload.clear()
                self._reload_config()
        await self._shutdown(server)
        return EXIT_OK

    def _reload_config(self) -> None:
        """SIGHUP: re-read the config; apply VNI and origination changes without touching BGP."""
        if self.config_path is None:
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        old = self.config
        if new.speaker() != old.speaker():
            log.warning("reload: neighbor/session changes need a restart; applying the rest")
        self.config = new
        self.intake.policy = new.import_policy()
        self.bgp.origin = new.origin()
        self.reconciler.set_vnis(new.vni_ports(), new.replication_settings())
        self._dirty = None
        self._kick.set()
        self._origination_due.set()
        if {p.bridge for p in new.vni_ports()} != {p.bridge for p in old.vni_ports()}:
            self._tasks.append(asyncio.get_running_loop().create_task(self._rewatch()))
        log.info("reloaded %s", self.config_path)

    async def _rewatch(self) -> None:
        """After a reload that changed the VNIs: set up the new bridges and watch exactly the
        configured ones; joins of bridges no longer watched leave the store."""
        before: set[Any] = set()
        old_vnis = dict(self._vni_by_bridge_before)
        if self.watcher is not None:
            asyncio.get_running_loop().remove_reader(self.watcher.fileno())
            before = set(self.watcher.joins)
            self.watcher.close()
            self.watcher = None
        after = await self._start_local_joins()
        for join in before - after:
            self._local(False, join, old_vnis.get(join.bridge))

    async def _shutdown(self, server: asyncio.AbstractServer) -> None:
        log.info("stopping: withdrawing routes")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bgp.withdraw_all(), 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.process.stop()
        with contextlib.suppress(OSError):
            (self.config.workdir / "exabgp.pid").unlink()
        if self.driver is not None:
            self.driver.close()
        if self.watcher is not None:
            self.watcher.close()
        if self.config.replication.on_exit == "remove":
            empty = StoreSnapshot.of(Store(), [])
            report = await asyncio.to_thread(self.reconciler.reconcile, empty, None, False)
            log.info("removed the agent's replication entries: %d", report.removed)
        server.close()
        with contextlib.suppress(OSError):
            self.config.control_path().unlink()

    # ----------------------------------------------------------------- optional parts

    async def _start_local_joins(self) -> set[Any]:
        from agent.localjoins import MdbWatcher, bridge_problems, setup_bridge

        ports = self.config.vni_ports()
        for port in ports:
            try:  # pyroute2 inside: not in the event loop's thread
                await asyncio.to_thread(setup_bridge, port.bridge, port.querier)
            except Exception as exc:  # pyroute2 raises its own; say it and go on
                self.errors.append(f"vni {port.vni}: cannot set up {port.bridge} for snooping: {exc}")
            for line in await asyncio.to_thread(bridge_problems, port.bridge):
                self.errors.append(f"vni {port.vni}: {line}")
                log.warning("vni %d: %s", port.vni, line)
        try:
            self.watcher = MdbWatcher({p.bridge: p.vni for p in ports}, {p.bridge: p.vxlan for p in ports})
            joins = self.watcher.snapshot()
        except (OSError, KernelError) as exc:
            self.errors.append(f"cannot watch bridge multicast joins: {exc}")
            return set()
        self._vni_by_bridge_before = {p.bridge: p.vni for p in ports}
        for join in joins:
            self._local(True, join)
        asyncio.get_running_loop().add_reader(self.watcher.fileno(), self._local_events)
        return set(joins)

    def _local_events(self) -> None:
        from agent.localjoins import MdbOverrunError

        try:
            events = self.watcher.read()
        except MdbOverrunError:
            log.warning("bridge MDB notifications were lost (ENOBUFS): re-reading the MDB")
            try:
                events = self.watcher.resync()
            except KernelError as exc:
                log.error("cannot re-read the bridge MDB: %s", exc)
                return
        for joined, join in events:
            self._local(joined, join)

    def _local(self, joined: bool, join: Any, vni: int | None = None) -> None:
        if vni is None:
            vni = {p.bridge: p.vni for p in self.config.vni_ports()}.get(join.bridge)
        if vni is None:
            return
        if joined:
            self._changed(self.store.local_join(vni, join.source, join.group, join.port))
        else:
            self._changed(self.store.local_leave(vni, join.source, join.group, join.port))

    def _start_mqtt(self) -> None:
        settings = self.config.mqtt_settings()
        if settings is None:
            return
        from agent.mqtt import Publisher

        self.publisher = Publisher(settings)


class _JsonFormatter(logging.Formatter):
    """One JSON object per log line (``log_json: true``)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def run_agent(config_path: Path) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"evpn-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if config.log_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    return asyncio.run(Agent(config, config_path).run())
