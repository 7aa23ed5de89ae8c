"""The BGP half of the daemon: drains ExaBGP's lines into the store and keeps ExaBGP's
announced routes equal to the desired ones.

The relay reader in bgp.speaker only queues lines; this task parses them and owns the store,
so ExaBGP is never blocked on parsing or kernel work. Change sets are handed to a callback
(reconcilers, events) without waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from agent.intake import Intake
from agent.store import ChangeSet
from bgp.commands import EvpnCommand
from bgp.evpn import IPAddress
from bgp.exabgp_json import Event, PeerState, parse_line
from bgp.originate import OriginSettings, RouteKey, desired_routes, route_commands
from bgp.speaker import ExabgpProcess


@dataclass
class BgpSide:
    process: ExabgpProcess
    intake: Intake
    origin: OriginSettings | None = None
    on_change: Callable[[ChangeSet], None] = lambda _cs: None
    on_event: Callable[[Event], None] = lambda _ev: None
    on_line: Callable[[str], object] = lambda _line: None
    clock: Callable[[], float] = time.monotonic
    announced: dict[RouteKey, EvpnCommand] = field(default_factory=dict)
    peer_states: dict[str, str] = field(default_factory=dict)
    lines_seen: int = 0
    command_errors: int = 0
    _sync_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self) -> None:
        """Until ExaBGP is stopped. Waiting for a line never outlasts the next stale-path
        deadline, so graceful-restart sweeps happen on time even when every peer is silent."""
        while True:
            store = self.intake.store
            deadline = store.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            try:
                line = await self.process.next_line(timeout)
            except EOFError:
                return
            if line is not None:
                self._handle(line)
            if deadline is not None and deadline <= self.clock():
                expired = store.expire(self.clock())
                if expired:
                    self.on_change(expired)

    def _handle(self, line: str) -> None:
        self.lines_seen += 1
        self.on_line(line)
        for event in parse_line(line):
            self.apply(event)

    def apply(self, event: Event) -> None:
        """One event, from ExaBGP or the agent's own (its sessions lost with a dead ExaBGP)."""
        if isinstance(event, PeerState):
            self.peer_states[event.peer] = event.state
        change = self.intake.apply(event, self.clock())
        self.on_event(event)
        if change or change.rejected is not None:  # a refusal changes nothing but is reported
            self.on_change(change)

    async def sync_origination(
        self, local_groups: Mapping[int, Iterable[tuple[IPAddress | None, IPAddress]]]
    ) -> int:
        """Announce/withdraw until ExaBGP holds exactly the desired routes; returns the number
        of commands ExaBGP refused (they stay pending and are retried on the next sync)."""
        if self.origin is None:
            return 0
        async with self._sync_lock:
            desired = desired_routes(self.origin, local_groups)
            failures = 0
            steps = route_commands(self.announced, desired)
            futures = [(key, new, self.process.send(line)) for key, new, line in steps]
            for key, new, fut in futures:
                if not await fut:
                    failures += 1
                    continue
                if new is None:
                    self.announced.pop(key, None)
                else:
                    self.announced[key] = new
            self.command_errors += failures
            return failures

    async def withdraw_all(self) -> int:
        """Withdraw every route the agent announced (shutdown); returns refusals."""
        async with self._sync_lock:
            steps = route_commands(self.announced, {})
            futures = [(key, self.process.send(line)) for key, _new, line in steps]
            failures = 0
            for key, fut in futures:
                if await fut:
                    self.announced.pop(key, None)
                else:
                    failures += 1
            return failures

    async def route_refresh(self) -> bool:
        """Ask peers to resend everything (after our API process was restarted)."""
        return await self.process.command("announce route-refresh l2vpn evpn")
