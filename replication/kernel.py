"""The one rtnetlink socket the replication reconciler talks through.

Thin on purpose: it sends pre-packed messages in batches and pairs each with the kernel's
ack, and it runs dumps. Everything about *what* to send lives in the pure modules. Blocking
I/O: the daemon runs a reconcile pass in a worker thread so the BGP reader never waits on it.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import itertools
import socket
import sys
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final, Protocol, TypeAlias

from replication.model import FdbEntry, MdbEntry
from replication.netlink import (
    NLM_F_ACK,
    NLM_F_DUMP_INTR,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELMDB,
    RTM_DELNEIGH,
    RTM_GETMDB,
    RTM_GETNEIGH,
    RTM_NEWMDB,
    RTM_NEWNEIGH,
    Ack,
    FdbRecord,
    MdbRecord,
    Message,
    brport_router_message,
    dump_request,
    fdb_message,
    iter_messages,
    mdb_message,
    parse_ack,
    parse_fdb,
    parse_mdb,
)

__all__ = ["Kernel", "KernelError", "Link", "NetlinkSocket", "Op", "RouteKernel"]

SOL_NETLINK: Final = 270
NETLINK_CAP_ACK: Final = 10
NETLINK_EXT_ACK: Final = 11
NETLINK_GET_STRICT_CHK: Final = 12
SO_RCVBUFFORCE: Final = 33
SO_SNDBUFFORCE: Final = 32

# Messages per send. The kernel queues its replies (one final ack, plus one error per refused
# message) on our receive buffer while it works through the batch; a capped reply costs ~1 KiB
# of buffer (skb truesize), so even a batch refused entirely stays far below the forced
# 16 MiB buffer and no reply is dropped with ENOBUFS.
BATCH: Final = 512
_RCVBUF: Final = 16 << 20
_SNDBUF: Final = 4 << 20
_DUMP_RETRIES: Final = 5


def force_buffer(sock: socket.socket, size: int, send: bool = False) -> None:
    """Set a socket's receive (or send) buffer past rmem_max/wmem_max with CAP_NET_ADMIN,
    falling back to the capped option without it."""
    forced, plain = (SO_SNDBUFFORCE, socket.SO_SNDBUF) if send else (SO_RCVBUFFORCE, socket.SO_RCVBUF)
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)


class KernelError(Exception):
    """A netlink request or dump failed as a whole (not one entry: those come back as Acks)."""


class NetlinkSocket:
    """NETLINK_ROUTE socket with extended acks, capped acks and strict dump checking."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK):
            with contextlib.suppress(OSError):  # older kernels: plain acks, unfiltered dumps
                self._sock.setsockopt(SOL_NETLINK, option, 1)
        force_buffer(self._sock, _RCVBUF)
        force_buffer(self._sock, _SNDBUF, send=True)
        self._sock.bind((0, 0))
        self._seq = itertools.count(1)
        self._buf = bytearray(1 << 20)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        return next(self._seq)

    def _receive(self) -> Iterator[Message]:
        try:
            n = self._sock.recv_into(self._buf)
        except OSError as exc:
            if exc.errno == errno_mod.ENOBUFS:
                raise KernelError("netlink receive buffer overrun (ENOBUFS): replies were lost") from exc
            raise
        return iter_messages(bytes(self._buf[:n]))

    def transact(self, batch: Iterable[tuple[int, bytes]]) -> dict[int, Ack]:
        """Send ``(seq, message)`` pairs in batches; seq -> Ack for every message answered.

        Only the last message of each batch asks for an ack. rtnetlink processes a batch in
        order and answers every refused message with an error whether or not it asked, so
        the final ack proves that each earlier message without an error reply was applied.
        This halves the replies to read. A message the kernel never answered is missing from
        the result; callers treat it as not applied.
        """
        acks: dict[int, Ack] = {}
        chunk: list[tuple[int, bytes]] = []
        for item in batch:
            chunk.append(item)
            if len(chunk) >= BATCH:
                self._flush(chunk, acks)
                chunk = []
        if chunk:
            self._flush(chunk, acks)
        return acks

    def _flush(self, chunk: list[tuple[int, bytes]], acks: dict[int, Ack]) -> None:
        buf = bytearray(b"".join(message for _seq, message in chunk))
        offset = 0
        for _seq, message in chunk[:-1]:
            buf[offset + 6] &= ~NLM_F_ACK & 0xFF  # low byte of nlmsg_flags
            offset += len(message)
        self._sock.sendall(buf)
        last = chunk[-1][0]
        errors: dict[int, Ack] = {}
        while last not in errors:
            for msg in self._receive():
                if msg.kind != NLMSG_ERROR:
                    continue
                ack = parse_ack(msg)
                if ack is not None:
                    errors[ack.seq] = ack
        for seq, _message in chunk:
            acks[seq] = errors.get(seq) or Ack(seq, 0)

    def dump(self, build: Callable[[int], bytes]) -> list[Message]:
        """Run one dump (``build(seq)`` makes the request) and return its messages.

        A dump the kernel marks inconsistent (NLM_F_DUMP_INTR: the table changed while it
        was being read) is run again, so callers never diff against a torn snapshot.
        """
        for _attempt in range(_DUMP_RETRIES):
            seq = self.next_seq()
            self._sock.sendall(build(seq))
            out: list[Message] = []
            interrupted = False
            done = False
            while not done:
                for msg in self._receive():
                    if msg.seq != seq:
                        continue
                    if msg.kind == NLMSG_DONE:
                        done = True
                        break
                    if msg.kind == NLMSG_ERROR:
                        ack = parse_ack(msg)
                        if ack is not None and ack.errno:
                            raise KernelError(
                                f"dump refused: {errno_mod.errorcode.get(ack.errno, ack.errno)}"
                                + (f" ({ack.text})" if ack.text else "")
                            )
                        continue
                    interrupted = interrupted or bool(msg.flags & NLM_F_DUMP_INTR)
                    out.append(msg)
            if not interrupted:
                return out
        raise KernelError(f"dump kept changing under us ({_DUMP_RETRIES} attempts)")


# --------------------------------------------------------------------------- the adapter


@dataclass(frozen=True, slots=True)
class Link:
    """What the reconciler needs to know about a device: identity, kind, VXLAN VNI, master."""

    name: str
    ifindex: int
    kind: str
    vni: int | None
    family: int
    master: int | None


Op: TypeAlias = tuple[bool, FdbEntry | MdbEntry]
"""(add?, entry): one netlink write."""


class Kernel(Protocol):
    """Everything replication does to the kernel; a fake stands in for unit tests."""

    def link(self, name: str) -> Link | None: ...
    def ifindex(self, name: str) -> int | None: ...
    def dump_fdb(self, ifindex: int) -> list[FdbRecord]: ...
    def dump_mdb(self, devices: Container[int] | None = None) -> list[MdbRecord]: ...
    def write(self, ops: Sequence[Op], ifindexes: Mapping[str, int], protocol: int) -> list[Ack | None]: ...
    def set_router_port(self, ifindex: int) -> Ack | None: ...


class RouteKernel:
    """The real Kernel: packed rtnetlink for entries, pyroute2 for the few link settings."""

    def __init__(self) -> None:
        self._nl = NetlinkSocket()

    def close(self) -> None:
        self._nl.close()

    def ifindex(self, name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None

    def link(self, name: str) -> Link | None:
        from pyroute2 import IPRoute  # imported lazily: only start-up and device changes need it
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            try:
                reply = ipr.link("get", ifname=name)
            except NetlinkError:
                return None
        msg = reply[0]
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        vni = None
        family = 4
        if kind == "vxlan":
            data = info.get_attr("IFLA_INFO_DATA")
            vni = data.get_attr("IFLA_VXLAN_ID")
            if data.get_attr("IFLA_VXLAN_LOCAL6") or data.get_attr("IFLA_VXLAN_GROUP6"):
                family = 6
        return Link(name, int(msg["index"]), str(kind or ""), vni, family, msg.get_attr("IFLA_MASTER"))

    def dump_fdb(self, ifindex: int) -> list[FdbRecord]:
        out = []
        for msg in self._nl.dump(lambda seq: dump_request(RTM_GETNEIGH, seq, ifindex)):
            record = parse_fdb(msg)
            if record is not None and record.ifindex == ifindex:  # also when filtering is absent
                out.append(record)
        return out

    def dump_mdb(self, devices: Container[int] | None = None) -> list[MdbRecord]:
        """The MDB of every device, or of ``devices`` (ifindexes) only. The kernel cannot filter
        an MDB dump by device, but each reply message is one device's: the others are skipped
        unparsed, so a pass over one VNI does not pay for the groups of all the others."""
        out: list[MdbRecord] = []
        for msg in self._nl.dump(lambda seq: dump_request(RTM_GETMDB, seq)):
            device = int.from_bytes(msg.payload[4:8], sys.byteorder) if len(msg.payload) >= 8 else 0
            if devices is not None and device not in devices:
                continue
            records = parse_mdb(msg)
            if records:
                out.extend(records)
            elif msg.kind == RTM_NEWMDB and len(msg.payload) >= 8:
                # An empty VXLAN MDB still answers: remember the device so capability
                # detection can tell "supported, empty" from "not supported".
                out.append(_empty_marker(msg.payload))
        return out

    def write(self, ops: Sequence[Op], ifindexes: Mapping[str, int], protocol: int) -> list[Ack | None]:
        nl = self._nl
        seqs: list[int] = []
        batch: list[tuple[int, bytes]] = []
        for add, entry in ops:
            seq = nl.next_seq()
            ifindex = ifindexes[entry.device]
            if isinstance(entry, FdbEntry):
                kind = RTM_NEWNEIGH if add else RTM_DELNEIGH
                message = fdb_message(kind, seq, ifindex, entry.mac, entry.dst, protocol)
            else:
                kind = RTM_NEWMDB if add else RTM_DELMDB
                message = mdb_message(kind, seq, ifindex, entry.source, entry.group, entry.dst, protocol)
            seqs.append(seq)
            batch.append((seq, message))
        acks = nl.transact(batch)
        return [acks.get(seq) for seq in seqs]

    def set_router_port(self, ifindex: int) -> Ack | None:
        seq = self._nl.next_seq()
        return self._nl.transact([(seq, brport_router_message(seq, ifindex, 2))]).get(seq)


def _empty_marker(payload: bytes) -> MdbRecord:
    device = int.from_bytes(payload[4:8], sys.byteorder)
    return MdbRecord(device, 0, None, IPv4Address(0), None, 0, False)
