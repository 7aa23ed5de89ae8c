"""Fuzzing the never-raising parsers: ExaBGP JSON lines, EVPN NLRIs, rtnetlink replies, IGMP/MLD
packets and mroute upcalls, each fed ``--inputs`` (default 100,000) generated inputs.

Inputs come from a seeded ``random.Random`` (the seed is printed; ``--seed`` replays a run), not
from hypothesis's engine, which would take far too long for this many examples. Each target gets
random data and mutations of real-looking seeds (bit flips, byte overwrites, truncation, insertion
and deletion of random bytes, splicing two seeds; for JSON also replacing values by random JSON
of any type), with the length/checksum fields often repaired afterwards so that the mutations
reach past the first sanity check.

A target passes with 0 exceptions (the EVPN decoders may raise ``bgp.evpn.CodecError`` and only
that). On any other exception the input (hex) and the traceback are printed and the run exits 1.
Peak RSS growth (``ru_maxrss`` before/after a target) below 50 MB counts as no unbounded memory.
"accepted" counts the inputs parsed into something other than an error (how deep the fuzzing
reached); seconds include generating the inputs. Last line: JSON result.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bgp.evpn import (
    CodecError,
    InclusiveMulticast,
    RouteDistinguisher,
    SelectiveMulticast,
    SmetFlags,
    decode_hex,
    decode_nlri,
)
from bgp.exabgp_json import ParseError as LineParseError
from bgp.exabgp_json import parse_line
from bgp.update import decode_update
from ipmr.igmp import ParseError, checksum, igmp_query, mld_query, parse_igmp, parse_mld
from ipmr.structs import parse_igmpmsg, parse_mrt6msg
from replication.netlink import (
    RTM_DELMDB,
    RTM_DELNEIGH,
    RTM_NEWMDB,
    RTM_NEWNEIGH,
    Message,
    fdb_message,
    iter_messages,
    mdb_message,
    parse_ack,
    parse_fdb,
    parse_mdb,
)

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"
MEMORY_LIMIT_MB = 50.0
INTERESTING = (0, 1, 2, 3, 4, 0x10, 0x20, 0x7F, 0x80, 0xFE, 0xFF)
NLMSG_ERROR, NLM_F_CAPPED, NLM_F_ACK_TLVS = 2, 0x100, 0x200
MESSAGE_KINDS = (NLMSG_ERROR, 3, RTM_NEWNEIGH, RTM_DELNEIGH, RTM_NEWMDB, RTM_DELMDB)


class FuzzError(Exception):
    """A parser raised what it must not; carries the input and the formatted traceback."""

    def __init__(self, target: str, data: bytes | str, trace: str) -> None:
        super().__init__(target)
        self.target, self.data, self.trace = target, data, trace


# --------------------------------------------------------------------------- mutation


class Mutator:
    """Byte-level mutations of seeds, all drawn from one seeded ``random.Random``."""

    def __init__(self, rng: random.Random, seeds: list[bytes]) -> None:
        self.rng, self.seeds = rng, seeds

    def random_bytes(self, high: int = 96) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, high))

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(7)
            if op == 0 and buf:  # bit flip
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
            elif op == 1 and buf:  # overwrite with an interesting or random byte
                buf[rng.randrange(len(buf))] = (
                    rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
                )
            elif op == 2 and buf:  # truncate
                del buf[rng.randrange(len(buf)) :]
            elif op == 3:  # insert random bytes
                i = rng.randint(0, len(buf))
                buf[i:i] = rng.randbytes(rng.randint(1, 8))
            elif op == 4 and buf:  # delete a range
                i = rng.randrange(len(buf))
                del buf[i : i + rng.randint(1, 8)]
            elif op == 5:  # splice with another seed
                other = rng.choice(self.seeds)
                buf = buf[: rng.randint(0, len(buf))] + other[rng.randint(0, len(other)) :]
            elif op == 6 and len(buf) >= 2:  # overwrite a 16-bit field with a boundary value
                i = rng.randrange(len(buf) - 1)
                buf[i : i + 2] = rng.choice((0, 1, 0x7FFF, 0x8000, 0xFFFF, len(buf))).to_bytes(2, "little")
        return bytes(buf)

    def next(self) -> bytes:
        if self.rng.random() < 0.15:
            return self.random_bytes()
        return self.mutate(self.rng.choice(self.seeds))


# --------------------------------------------------------------------------- JSON inputs


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice((0, -1, 1, 2**31, 2**64, 10**30, rng.randint(-(2**40), 2**40)))
    if kind == 3:
        return rng.choice((0.0, -1.5, 1e308, rng.random()))
    if kind == 4:
        return rng.choice(("", "l2vpn evpn", "update", "state", "00", "0x", "ZZ", "03", "\u00e9\ud800"))
    if kind == 5:
        return rng.randbytes(rng.randint(0, 30)).hex().upper()
    if kind == 6:
        return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 12)))
    if kind == 7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ("type", "neighbor", "message", "update", "announce", "withdraw", "raw", "attribute", "eor")
    return {
        rng.choice(keys) if rng.random() < 0.6 else str(rng.randint(0, 99)): random_json(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) pair in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _slots(value, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((node, i))
            _slots(value, out)
    return out


class LineFuzzer:
    """ExaBGP JSON lines: random text, random JSON, and structural/textual mutations of the
    golden lines (the EVPN ``raw`` hex mutated byte-wise too)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lines = [
            line
            for p in sorted(GOLDEN.glob("*.jsonl"))
            for line in p.read_text().splitlines()
            if line.strip()
        ]
        self.docs = [json.dumps(json.loads(line)) for line in self.lines]
        self.raws = [bytes.fromhex(r) for r in raw_hexes()]
        self.bytes = Mutator(rng, self.raws)

    def random_text(self) -> str:
        rng = self.rng
        alphabet = rng.choice(('{}[]":,0123456789abcdef ', "\t\n done error", None))
        n = rng.randint(0, 80)
        if alphabet is None:
            return "".join(chr(rng.choice((rng.randint(0, 127), rng.randint(0, 0x10FFFF)))) for _ in range(n))
        return "".join(rng.choice(alphabet) for _ in range(n))

    def mutate_text(self, line: str) -> str:
        rng = self.rng
        chars = list(line)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            i = rng.randrange(len(chars) + 1)
            if op == 0 and i < len(chars):
                chars[i] = chr(ord(chars[i]) ^ (1 << rng.randrange(7)))
            elif op == 1:
                chars[i:i] = rng.choice(('"', "{", "}", "[", "]", ",", ":", "null", "1e999", "\\", "-"))
            elif op == 2:
                del chars[i : i + rng.randint(1, 10)]
            else:
                chars = chars[:i]
        return "".join(chars)

    def mutate_structure(self, line: str) -> str:
        rng = self.rng
        doc = json.loads(line)
        for _ in range(rng.randint(1, 3)):
            slots = _slots(doc, [])
            if not slots:
                break
            container, key = rng.choice(slots)
            value = container[key]
            op = rng.randrange(4)
            if op == 0 and isinstance(container, dict):
                del container[key]
            elif op == 1 and isinstance(value, str) and len(value) % 2 == 0 and value.isalnum():
                try:
                    container[key] = self.bytes.mutate(bytes.fromhex(value)).hex().upper()
                except ValueError:
                    container[key] = random_json(rng)
            else:
                container[key] = random_json(rng)
        return json.dumps(doc)

    def next(self) -> str:
        roll = self.rng.random()
        if roll < 0.1:
            return self.random_text()
        if roll < 0.2:
            return json.dumps(random_json(self.rng))
        if roll < 0.45:
            return self.mutate_text(self.rng.choice(self.lines))
        return self.mutate_structure(self.rng.choice(self.docs))


# --------------------------------------------------------------------------- seeds


def raw_hexes() -> list[str]:
    out: list[str] = []
    for path in sorted(GOLDEN.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            stack: list[Any] = [json.loads(line)] if line.strip() else []
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if isinstance(node.get("raw"), str):
                        out.append(node["raw"])
                    stack.extend(node.values())
                elif isinstance(node, list):
                    stack.extend(node)
    return out


def update_seeds() -> list[bytes]:
    """UPDATE bodies as ExaBGP passes them on with ``receive { packets; }`` (the golden
    session), plus End-of-RIB in both forms."""
    out = [b"\x00\x00\x00\x00", bytes.fromhex("00000007900F0003001946")]
    for path in sorted(GOLDEN.glob("*packets*.jsonl")):
        for line in path.read_text().splitlines():
            message = json.loads(line).get("neighbor", {}).get("message", {}) if line.strip() else {}
            if message.get("category") == 2 and isinstance(message.get("body"), str):
                out.append(bytes.fromhex(message["body"][2:]))
    return out


def evpn_seeds(rng: random.Random) -> list[bytes]:
    seeds = [bytes.fromhex(r) for r in raw_hexes()]
    rds = [
        RouteDistinguisher(bytes.fromhex(h))
        for h in ("00010A0000010064", "0000FDE800000064", "0002000100000001")
    ]
    v4 = [ip_address("10.0.0.1"), ip_address("192.0.2.7")]
    v6 = [ip_address("2001:db8::1")]
    for rd in rds:
        for orig in v4 + v6:
            seeds.append(InclusiveMulticast(rd, 100, orig).pack())
            for source, group in (
                (None, ip_address("239.1.1.1")),
                (ip_address("192.0.2.10"), ip_address("232.1.1.1")),
                (None, ip_address("ff0e::1")),
                (ip_address("2001:db8:1::10"), ip_address("ff3e::1")),
            ):
                seeds.append(SelectiveMulticast(rd, 0, source, group, orig, SmetFlags(0x0E)).pack())
    # other route types: plausible bodies of the lengths their decoders expect
    for code, size in (
        (1, 25),
        (2, 33),
        (2, 37),
        (2, 52),
        (4, 23),
        (4, 35),
        (5, 34),
        (5, 58),
        (7, 46),
        (8, 46),
    ):
        seeds.append(bytes([code, size]) + rng.randbytes(size))
    return seeds


def netlink_seeds() -> list[bytes]:
    def nla(kind: int, payload: bytes) -> bytes:
        size = 4 + len(payload)
        return struct.pack("=HH", size, kind) + payload + b"\0" * (-size & 3)

    def message(kind: int, body: bytes, flags: int = 0, seq: int = 0) -> bytes:
        return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body

    def mdb_info(ifindex: int, group: bytes, proto: int, *eattrs: bytes) -> bytes:
        entry = (
            struct.pack("=IBBH", ifindex, 1, 0, 0)
            + group.ljust(16, b"\0")
            + struct.pack("!H", proto)
            + b"\0\0"
        )
        return nla(1, entry + b"".join(eattrs))

    v4, v6 = IPv4Address("10.0.0.2"), IPv6Address("2001:db8::2")
    g4, g6 = IPv4Address("239.1.1.1"), IPv6Address("ff0e::1")
    s4, s6 = IPv4Address("192.0.2.10"), IPv6Address("2001:db8:1::10")
    seeds = [
        fdb_message(RTM_NEWNEIGH, 1, 5, b"\0" * 6, v4, 232),
        fdb_message(RTM_NEWNEIGH, 2, 5, bytes.fromhex("01005e010101"), v6, 232),
        fdb_message(RTM_DELNEIGH, 3, 5, b"\0" * 6, v4, None),
        mdb_message(RTM_NEWMDB, 4, 9, None, g4, v4, 232),
        mdb_message(RTM_DELMDB, 5, 9, s6, g6, v6, 232),
        mdb_message(RTM_NEWMDB, 6, 9, s4, g4, v4, None),
    ]
    infos = (
        mdb_info(9, g4.packed, 0x0800, nla(1, b"\0" * 4), nla(5, bytes([232])), nla(6, v4.packed)),
        mdb_info(9, g6.packed, 0x86DD, nla(4, s6.packed), nla(6, v6.packed), nla(7, b"\x12\xb6")),
        mdb_info(7, g4.packed, 0x0800, nla(5, bytes([3]))),
        mdb_info(9, b"", 0, nla(6, v4.packed), nla(8, b"\0\0\0\1")),
    )
    for flag in (0, 0x8000):
        entry = nla(1 | flag, b"".join(infos))
        body = struct.pack("=BBHi", 7, 0, 0, 9) + nla(1 | flag, entry) + nla(2, nla(1, struct.pack("=I", 3)))
        seeds.append(message(RTM_NEWMDB, body, 2, 8))
    request = seeds[0]
    ext = nla(1, b"File exists\0")
    seeds += [
        message(NLMSG_ERROR, struct.pack("=i", 0) + request[:16], 0, 1),
        message(NLMSG_ERROR, struct.pack("=i", -17) + request + ext, NLM_F_ACK_TLVS, 1),
        message(NLMSG_ERROR, struct.pack("=i", -95) + request[:16] + ext, NLM_F_ACK_TLVS | NLM_F_CAPPED, 1),
        message(3, struct.pack("=i", 0), 2, 8),
    ]
    seeds.append(b"".join(seeds[:4]))  # a multi-message buffer
    return seeds


def _cksum(message: bytes) -> bytes:
    message = message[:2] + b"\0\0" + message[4:]
    return message[:2] + struct.pack("!H", checksum(message)) + message[4:]


def _ip4(payload: bytes, options: bytes = b"\x94\x04\x00\x00") -> bytes:
    ihl, total = 0x40 | (20 + len(options)) // 4, 20 + len(options) + len(payload)
    src, dst = IPv4Address("192.0.2.1").packed, IPv4Address("224.0.0.22").packed
    header = struct.pack("!BBHHHBBH4s4s", ihl, 0xC0, total, 0, 0, 1, 2, 0, src, dst)
    return header + options + payload


def igmp_seeds() -> list[bytes]:
    g1, g2, s1 = IPv4Address("239.1.1.1"), IPv4Address("232.1.1.2"), IPv4Address("192.0.2.10")
    messages = [
        igmp_query(None, 3),
        igmp_query(g1, 3, 1.5),
        igmp_query(None, 2, 25.5),
        igmp_query(g2, 2),
        igmp_query(None, 1),
        _cksum(struct.pack("!BBH4sBBH", 0x11, 50, 0, g1.packed, 2, 125, 2) + s1.packed + g2.packed),
    ]
    messages += [_cksum(struct.pack("!BBH4s", kind, 0, 0, g1.packed)) for kind in (0x12, 0x16, 0x17)]
    records = [
        struct.pack("!BBH4s", kind, aux, len(srcs), g.packed)
        + b"".join(s.packed for s in srcs)
        + b"\0" * 4 * aux
        for kind, aux, g, srcs in ((2, 0, g1, []), (1, 0, g2, [s1]), (3, 1, g1, [s1, s1]), (6, 0, g2, [s1]))
    ]
    messages.append(_cksum(struct.pack("!BBHHH", 0x22, 0, 0, 0, len(records)) + b"".join(records)))
    return [_ip4(m, opts) for m in messages for opts in (b"\x94\x04\x00\x00", b"")]


def mld_seeds() -> list[bytes]:
    g6, s6 = IPv6Address("ff0e::1"), IPv6Address("2001:db8:1::10")
    seeds = [mld_query(None, 2), mld_query(g6, 2, 0.5), mld_query(None, 1), mld_query(g6, 1, 3.0)]
    seeds += [struct.pack("!BBHHH16s", kind, 0, 0, 0, 0, g6.packed) for kind in (131, 132)]
    seeds.append(struct.pack("!BBHHH16sBBH", 130, 0, 0, 40000, 0, g6.packed, 2, 125, 1) + s6.packed)
    records = [
        struct.pack("!BBH16s", kind, aux, len(srcs), g6.packed)
        + b"".join(s.packed for s in srcs)
        + b"\0" * 4 * aux
        for kind, aux, srcs in ((4, 0, []), (1, 0, [s6]), (5, 1, [s6, s6]), (6, 0, [s6]))
    ]
    seeds.append(struct.pack("!BBHHH", 143, 0, 0, 0, len(records)) + b"".join(records))
    return seeds


def upcall_seeds() -> list[bytes]:
    src4, dst4 = IPv4Address("192.0.2.10").packed, IPv4Address("239.1.1.1").packed
    src6, dst6 = IPv6Address("2001:db8:1::10").packed, IPv6Address("ff0e::1").packed
    seeds = [
        struct.pack("=IIBBBB4s4s", 0, 0, kind, 0, vif, 0, src4, dst4)
        for kind, vif in ((1, 0), (2, 3), (3, 31))
    ]
    seeds.append(seeds[-1] + _ip4(igmp_query(None, 2)))
    seeds += [
        struct.pack("=BBHI16s16s", 0, kind, mif, 0, src6, dst6) for kind, mif in ((1, 0), (2, 7), (3, 31))
    ]
    return seeds


# --------------------------------------------------------------------------- targets


def _fix_nlri(rng: random.Random, data: bytes) -> bytes:
    if len(data) >= 2 and rng.random() < 0.7:  # make the length octet agree, to reach the decoders
        return data[:1] + bytes([(len(data) - 2) & 0xFF]) + data[2:]
    return data


def _fix_netlink(rng: random.Random, data: bytes) -> bytes:
    if len(data) >= 16 and rng.random() < 0.5:
        return struct.pack("=I", len(data)) + data[4:]
    return data


def _fix_igmp(rng: random.Random, data: bytes) -> bytes:
    if len(data) < 20 or rng.random() < 0.3:
        return data
    head = bytearray(data)
    if rng.random() < 0.8:
        head[0] = 0x40 | (head[0] & 0x0F)
        head[9] = 2
    ihl = (head[0] & 0x0F) * 4
    if rng.random() < 0.8:
        head[2:4] = struct.pack("!H", len(head))
    total = int.from_bytes(head[2:4], "big")
    if 20 <= ihl <= total <= len(head) and total - ihl >= 4:
        return bytes(head[:ihl]) + _cksum(bytes(head[ihl:total])) + bytes(head[total:])
    return bytes(head)


def _fix_upcall(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.5:
        buf = bytearray(data)
        if len(buf) > 9:
            buf[9] = 0  # igmpmsg im_mbz
        if buf:
            buf[0] = 0  # mrt6msg im6_mbz
        return bytes(buf)
    return data


def _netlink_call(rng: random.Random, data: bytes) -> bool:
    parsed = False
    for msg in iter_messages(data):
        parsed |= parse_ack(msg) is not None
        parsed |= parse_fdb(msg) is not None
        parsed |= bool(parse_mdb(msg))
    # the payload parsers straight on the buffer too, whatever the header says
    flags = rng.choice((0, 2, NLM_F_ACK_TLVS, NLM_F_ACK_TLVS | NLM_F_CAPPED, rng.randrange(0x10000)))
    msg = Message(rng.choice(MESSAGE_KINDS), flags, 1, data[16:] if rng.random() < 0.5 else data)
    parse_ack(msg)
    parse_fdb(msg)
    parse_mdb(msg)
    return parsed


@dataclass
class Target:
    name: str
    make: Callable[[], bytes | str]
    call: Callable[[Any], object]
    allowed: tuple[type[BaseException], ...] = ()


def targets(rng: random.Random) -> list[Target]:
    lines = LineFuzzer(rng)
    evpn = Mutator(rng, evpn_seeds(rng))
    net = Mutator(rng, netlink_seeds())
    igmp = Mutator(rng, igmp_seeds())
    mld = Mutator(rng, mld_seeds())
    up = Mutator(rng, upcall_seeds())
    updates = Mutator(rng, update_seeds())

    def hex_text() -> str:
        text = _fix_nlri(rng, evpn.next()).hex()
        roll = rng.random()
        if roll < 0.1:
            return "0x" + text.upper()
        if roll < 0.2:
            return lines.mutate_text(text) if text else text
        if roll < 0.25:
            return f"  {text}\n"
        return text

    def line_call(line: str) -> bool:
        return any(not isinstance(e, LineParseError) for e in parse_line(line))

    def mld_call(data: bytes) -> bool:
        parse_mld(data, None)
        sender = IPv6Address("fe80::7") if data[:1] != b"\0" else IPv6Address("::")
        return not isinstance(parse_mld(data, sender), ParseError)

    def upcall_call(data: bytes) -> bool:
        a, b = parse_igmpmsg(data), parse_mrt6msg(data)
        return a is not None or b is not None

    return [
        Target("exabgp_json.parse_line", lines.next, line_call),
        Target("evpn.decode_nlri", lambda: _fix_nlri(rng, evpn.next()), decode_nlri, (CodecError,)),
        Target("evpn.decode_hex", hex_text, decode_hex, (CodecError,)),
        Target("update.decode_update", updates.next, lambda d: bool(decode_update(d).announced)),
        Target(
            "netlink iter/ack/fdb/mdb", lambda: _fix_netlink(rng, net.next()), lambda d: _netlink_call(rng, d)
        ),
        Target(
            "igmp.parse_igmp",
            lambda: _fix_igmp(rng, igmp.next()),
            lambda d: not isinstance(parse_igmp(d), ParseError),
        ),
        Target("igmp.parse_mld", mld.next, mld_call),
        Target("structs.parse_igmpmsg/mrt6msg", lambda: _fix_upcall(rng, up.next()), upcall_call),
    ]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_target(target: Target, inputs: int) -> dict[str, Any]:
    rss_before = _rss_mb()
    make, call, allowed = target.make, target.call, target.allowed
    accepted = 0
    began = time.perf_counter()
    for _ in range(inputs):
        data = make()
        try:
            if call(data) is not False:  # the EVPN decoders return a route: accepted
                accepted += 1
        except allowed:
            pass
        except Exception:
            raise FuzzError(target.name, data, traceback.format_exc()) from None
    elapsed = time.perf_counter() - began
    growth = _rss_mb() - rss_before
    return {
        "target": target.name,
        "inputs": inputs,
        "seconds": round(elapsed, 3),
        "inputs_per_s": round(inputs / elapsed),
        "accepted": accepted,
        "exceptions": 0,
        "rss_growth_mb": round(growth, 1),
        "bounded_memory": growth < MEMORY_LIMIT_MB,
    }


def _hex(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass").hex()
    return data.hex()


def plot(result: dict[str, Any], out: Path) -> None:
    """Inputs per second per parser, with the exceptions (none expected) written on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["targets"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    names = [r["target"] for r in rows]
    rates = [r["inputs_per_s"] for r in rows]
    ax.barh(names, rates, color="tab:green")
    for y, r in enumerate(rows):
        note = f" {r['inputs']:,} inputs, {r['exceptions']} exceptions, RSS +{r['rss_growth_mb']} MB"
        ax.annotate(note, (r["inputs_per_s"], y), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("inputs per second")
    ax.margins(x=0.9)
    ax.set_title(f"Fuzzing: every parser, no crash (seed {result['seed']})")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target (default 100000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed: {seed}  (replay with --seed {seed}); inputs per target: {args.inputs:,}")
    rng = random.Random(seed)
    results: list[dict[str, Any]] = []
    try:
        for target in targets(rng):
            row = run_target(target, args.inputs)
            results.append(row)
            memory = "no unbounded memory" if row["bounded_memory"] else "MEMORY GROWTH over 50 MB"
            print(
                f"{row['target']:<32} {row['inputs']:>9,} inputs {row['seconds']:>7.2f} s"
                f" {row['inputs_per_s']:>9,}/s  accepted {row['accepted']:>6,}  exceptions 0"
                f"  peak RSS +{row['rss_growth_mb']:.1f} MB ({memory})"
            )
    except FuzzError as failure:
        print(f"FAILURE in {failure.target} (seed {seed})")
        print(f"input ({type(failure.data).__name__}, hex): {_hex(failure.data)}")
        print(failure.trace)
        print(
            json.dumps(
                {"seed": seed, "ok": False, "failed_target": failure.target, "input_hex": _hex(failure.data)}
            )
        )
        sys.exit(1)
    ok = all(r["bounded_memory"] for r in results)
    total = sum(r["seconds"] for r in results)
    print(f"total: {sum(r['inputs'] for r in results):,} inputs in {total:.1f} s, 0 exceptions")
    print(json.dumps({"seed": seed, "ok": ok, "total_s": round(total, 2), "targets": results}))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
