"""Run ExaBGP 5.0.15 with API commands that originate EVPN IMET and SMET routes.

ExaBGP cannot originate EVPN routes from its configuration or its stock API, but its command
table is open: this module registers ``announce evpn`` and ``withdraw evpn`` (grammar in
bgp.commands), builds the NLRI with the project's codec, and hands them to ExaBGP's RIB the way
its own ``announce route`` does. Usage: ``python -m bgp.launcher [exabgp arguments] CONFIG``.
These are ExaBGP internals, hence the exact version pin in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

from bgp.commands import EvpnCommand, parse_command
from bgp.evpn import CodecError
from bgp.exabgp_config import RAW_UPDATES_ENV

EXABGP_VERSION = "5.0.15"


def _build_change(cmd: EvpnCommand) -> Any:
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.attribute import Attributes
    from exabgp.bgp.message.update.attribute.community.extended.communities import (
        ExtendedCommunities,
    )
    from exabgp.bgp.message.update.attribute.community.extended.community import ExtendedCommunity
    from exabgp.bgp.message.update.attribute.origin import Origin
    from exabgp.bgp.message.update.attribute.pmsi import PMSI
    from exabgp.bgp.message.update.nlri.evpn.nlri import GenericEVPN
    from exabgp.protocol.ip import IP
    from exabgp.rib.change import Change

    packed = cmd.route.pack()
    nlri = GenericEVPN(packed[0], packed[2:])
    nlri.nexthop = IP.create(str(cmd.attributes.next_hop))
    nlri.action = Action.ANNOUNCE if cmd.action == "announce" else Action.WITHDRAW
    attributes = Attributes()
    attributes.add(Origin(Origin.IGP))
    if cmd.attributes.pmsi is not None:
        attributes.add(PMSI.unpack(cmd.attributes.pmsi.pack(), None, None))
    communities = cmd.attributes.communities()
    if communities:
        ext = ExtendedCommunities()
        for raw in communities:
            ext.add(ExtendedCommunity.unpack(raw))
        attributes.add(ext)
    return Change(nlri, attributes)


def _handler(self: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
    from exabgp.reactor.api.command.limit import match_neighbor

    def callback() -> Iterator[bool]:
        try:
            cmd = parse_command(line)
            # "neighbor A neighbor B" selects A or B here (ExaBGP's own " , " lists break on the
            # comma in its command reader); no neighbor selects every peer.
            peers = [
                peer
                for peer in reactor.peers(service)
                if not cmd.neighbors or any(match_neighbor([f"neighbor {n}"], peer) for n in cmd.neighbors)
            ]
            if not peers:
                self.log_failure(f"no neighbor matching the command: {line}")
                reactor.processes.answer_error(service)
                yield True
                return
            change = _build_change(cmd)
            reactor.configuration.inject_change(peers, change)
            self.log_message(f"evpn route {cmd.action}d for {', '.join(peers)}: {line}")
            reactor.processes.answer_done(service)
        except CodecError as exc:
            self.log_failure(f"evpn command refused: {exc}: {line}")
            reactor.processes.answer_error(service)
        yield True

    reactor.asynchronous.schedule(service, line, callback())
    return True


def _keep_raw_pmsi_label() -> None:
    """ExaBGP prints the raw 24-bit PMSI label (the VNI) only for tunnel types it decodes, and
    its ingress-replication decoder takes IPv4 endpoints only; for an IPv6 VTEP it falls back to
    a generic form that drops the raw label, and the VNI's low four bits with it. Keep it, so
    the JSON shows ``LABEL(RAW):0xENDPOINT`` for IPv6 too."""
    from exabgp.bgp.message.update.attribute.pmsi import PMSI

    def pmsi_unknown(subtype: int, tunnel: bytes, label: int, flags: int, raw_label: int) -> Any:
        pmsi = PMSI(tunnel, label, flags, raw_label)
        pmsi.TUNNEL_TYPE = subtype
        return pmsi

    PMSI.pmsi_unknown = staticmethod(pmsi_unknown)


def _accept_ipv6_evpn_next_hops() -> None:
    """ExaBGP 5.0.15 refuses (NOTIFICATION 3/9) any EVPN MP_REACH whose next hop is not 4
    octets, so an IPv6 underlay could never carry EVPN. RFC 7432 allows IPv6 next hops (16, or
    32 with a link-local): accept those lengths too."""
    from exabgp.protocol.family import AFI, SAFI, Family

    Family.size[(AFI.l2vpn, SAFI.evpn)] = ((4, 16, 32), 0)


def _skip_update_decoding() -> None:
    """With ``receive { packets; }`` the agent decodes UPDATEs itself (bgp.update), so ExaBGP's
    own decoding of each received UPDATE into objects is work nobody reads: received UPDATEs
    become ExaBGP's empty UPDATE (nothing for its adj-RIB-in, which the agent does not use).
    What ExaBGP sends is untouched. Its decoding of ORIGIN etc. no longer resets a session on a
    malformed UPDATE; the agent treats such routes as withdrawn (RFC 7606) instead."""
    from exabgp.bgp.message import Update
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update.attribute import Attributes

    decode = Update.unpack_message.__func__
    empty = Update([], Attributes())

    def unpack_message(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        if direction == Direction.IN:
            return empty
        return decode(cls, data, direction, negotiated)

    Update.unpack_message = classmethod(unpack_message)

    # The hex of each message body then is most of ExaBGP's work per route; its hexstring()
    # formats octet by octet. Same text, made in C.
    import exabgp.reactor.api.response.json as json_response
    import exabgp.util

    def hexstring(value: bytes) -> str:
        return "0x" + bytes(value).hex().upper()

    exabgp.util.hexstring = hexstring
    json_response.hexstring = hexstring


def _forget_closed_sockets() -> None:
    """ExaBGP 5.0.15 registers a session's socket with its reactor's poll() and never
    unregisters it: once the session closes, poll() reports that descriptor invalid (POLLNVAL)
    on every turn, and ExaBGP's spin prevention then sleeps 10 ms per turn for as long as the
    process lives (unless a later socket happens to get the same number). One flap of one
    peer (a hold-time expiry, a restarted neighbor) left a leaf's ExaBGP taking about 100
    messages a second from every peer, until hold timers expired. An invalid descriptor is
    unregistered instead; a hung-up or failed one still counts for spin prevention."""
    import select

    from exabgp.reactor.loop import Reactor

    readable = select.POLLIN | select.POLLPRI
    failed = select.POLLHUP | select.POLLERR

    def _wait_for_io(self: Any, sleeptime: int) -> Iterator[int]:
        spin_prevention = False
        try:
            for fd, event in self._poller.poll(sleeptime):
                if event & readable:
                    yield fd
                elif event & select.POLLNVAL:
                    self._poller.unregister(fd)
                elif event & failed:
                    spin_prevention = True
            if spin_prevention:
                self._prevent_spin()
        except KeyboardInterrupt:
            self._termination("^C received", self.Exit.normal)
        except Exception:
            self._prevent_spin()

    Reactor._wait_for_io = _wait_for_io


READ_AHEAD_BYTES = 64 << 10  # one recv() from a BGP session takes up to this much


def _read_ahead() -> None:
    """ExaBGP reads each message from its TCP session with two recv() calls (header, then
    body), each after a poll(): four system calls per UPDATE, a tenth of its time in a burst.
    Read up to 64 KiB at a time instead into a buffer kept on the connection and serve
    messages from it. A message is returned as soon as the buffer holds all of it, so the
    reactor only waits on the socket when the buffer cannot complete the next message:
    nothing received waits behind data that already arrived. Errors are ExaBGP's own."""
    import socket

    from exabgp.reactor.network.connection import Connection
    from exabgp.reactor.network.error import LostConnection, NetworkError, NotConnected, error

    def _reader(self: Any, number: int) -> Iterator[bytes]:
        if not self.io:
            self.close()
            raise NotConnected("Trying to read on a closed TCP connection")
        if number == 0:
            yield b""
            return
        buf: bytearray | None = getattr(self, "_evpn_buffer", None)
        if buf is None:
            buf = self._evpn_buffer = bytearray()
        while len(buf) < number:
            if not self.io:  # closed while this reader waited
                raise NotConnected("Trying to read on a closed TCP connection")
            try:
                read = self.io.recv(max(number - len(buf), READ_AHEAD_BYTES), socket.MSG_DONTWAIT)
            except OSError as exc:
                if exc.args[0] in error.block:
                    yield b""
                    continue
                if exc.args[0] in error.fatal:
                    self.close()
                    raise LostConnection(f"issue reading on the socket: {exc}") from None
                raise NetworkError(f"Problem while reading data from the network ({exc})") from None
            if not read:
                self.close()
                raise LostConnection("the TCP connection was closed by the remote end")
            buf += read
        data = bytes(buf[:number])
        del buf[:number]
        yield data

    Connection._reader = _reader


ACCEPT_EVERY_S = 0.02  # how often an idle listener is asked for a new BGP connection


def _cheaper_reactor_turns() -> None:
    """Two costs ExaBGP pays on every turn of its reactor, once per received UPDATE in a
    burst: it calls accept() on its listening sockets, a failing system call and a Python
    exception each time (a sixth of its time), and it quotes each hex string of a message
    with json.dumps. After an accept() that found nobody, the next is tried 20 ms later (a
    connecting peer waits that long at most; its retry timers are seconds), and strings of
    letters, digits and ``.:-_`` are quoted directly (json.dumps gives the same text)."""
    import re
    import time

    from exabgp.reactor.api.response.json import JSON
    from exabgp.reactor.listener import Listener

    incoming = Listener.incoming

    def incoming_now_and_then(self: Any) -> bool:
        now = time.monotonic()
        if now < getattr(self, "_evpn_next_accept", 0.0):
            return False
        found = bool(incoming(self))
        if not found:
            self._evpn_next_accept = now + ACCEPT_EVERY_S
        return found

    plain = re.compile(r"[0-9A-Za-z.:_-]*")
    string = JSON._string

    def quoted(self: Any, obj: Any) -> str:
        if type(obj) is str and plain.fullmatch(obj):
            return f'"{obj}"'
        return str(string(self, obj))

    Listener.incoming = incoming_now_and_then
    JSON._string = quoted


API_FLUSH_BYTES = 32 << 10  # lines for the API process are written in chunks of about this size ...
API_FLUSH_AGE_S = 0.002  # ... or once the oldest has waited this long, or ExaBGP goes idle


def _coalesce_api_writes() -> None:
    """ExaBGP writes and flushes each line for the API process on its own: in a burst, one pipe
    write per received UPDATE, a quarter of its time, and one wake-up each of the relay and
    the agent. Lines are kept instead and written together when 32 KiB are pending, when the
    oldest is 2 ms old, or when the reactor is about to wait for input, so a lone line (an
    acknowledgement, a state change) leaves at once. A dead API process raises ProcessError at
    that write, as it did at ExaBGP's own."""
    import contextlib
    import errno
    import time

    from exabgp.reactor.api.processes import ProcessError, Processes
    from exabgp.reactor.loop import Reactor

    pending: dict[str, tuple[Any, bytearray, float]] = {}  # process name -> (Popen, lines, since)

    def flush(processes: Any, name: str) -> None:
        proc, data, _since = pending.pop(name)
        if processes._process.get(name) is not proc:
            return  # that run of the process is gone; nothing will read these lines
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except ValueError:  # its pipe was closed: the process is being replaced
            return
        except OSError as exc:
            processes._broken.append(name)
            if exc.errno == errno.EPIPE:
                raise ProcessError from None

    def flush_all(processes: Any) -> None:
        for name in list(pending):
            flush(processes, name)

    def write(self: Any, process: str, string: str | None, neighbor: Any = None) -> bool:
        if string is None:
            return True
        entry = pending.get(process)
        if entry is None:
            entry = pending[process] = (self._process[process], bytearray(), time.monotonic())
        entry[1].extend(f"{string}\n".encode("ascii"))
        if closing or len(entry[1]) >= API_FLUSH_BYTES:
            flush(self, process)
        return True

    wait_for_io = Reactor._wait_for_io

    def _wait_for_io(self: Any, sleeptime: int) -> Any:
        if pending and (
            sleeptime
            or any(time.monotonic() - since >= API_FLUSH_AGE_S for _p, _d, since in pending.values())
        ):
            flush_all(self.processes)
        return wait_for_io(self, sleeptime)

    terminate = Processes.terminate
    stop_one = Processes._terminate
    closing = False

    def terminate_all(self: Any) -> None:
        nonlocal closing
        closing = True  # from here on each line is written at once, the shutdown line too
        with contextlib.suppress(ProcessError):  # ExaBGP's own terminate() tolerates it too
            flush_all(self)
        terminate(self)

    def stop_process(self: Any, process_name: str) -> Any:
        if process_name in pending:
            with contextlib.suppress(ProcessError):
                flush(self, process_name)  # a respawn: the old run still gets what it was sent
        return stop_one(self, process_name)

    Processes.write = write
    Processes.terminate = terminate_all
    Processes._terminate = stop_process
    Reactor._wait_for_io = _wait_for_io


def register(raw_updates: bool = False) -> None:
    from exabgp.reactor.api.command.command import Command

    for name in ("announce evpn", "withdraw evpn"):
        Command.register(name)(_handler)
    _keep_raw_pmsi_label()
    _accept_ipv6_evpn_next_hops()
    _forget_closed_sockets()
    _coalesce_api_writes()  # wraps the reactor's wait: after _forget_closed_sockets
    _read_ahead()
    _cheaper_reactor_turns()
    if raw_updates:
        _skip_update_decoding()


def main() -> None:
    from exabgp.version import version

    if version != EXABGP_VERSION:
        sys.stderr.write(f"bgp.launcher: needs exabgp {EXABGP_VERSION}, found {version}\n")
        sys.exit(2)
    register(raw_updates=os.environ.get(RAW_UPDATES_ENV) == "1")
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
