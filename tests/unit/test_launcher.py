"""bgp.launcher's changes to ExaBGP 5.0.15's reactor, on ExaBGP's own classes. Each check runs
in a fresh interpreter: the launcher patches ExaBGP's classes for the whole process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_closed_sessions_socket_leaves_the_reactor_without_slowing_it() -> None:
    """ExaBGP never unregisters a closed session's socket from its poll(), and its spin
    prevention then slept 10 ms on every reactor turn: after one flap a leaf took about 100
    UPDATEs a second (tests/netns/test_faults.py's SMET test caught it). The launcher drops
    the invalid descriptor; readable ones still come out, and nothing sleeps."""
    out = run(
        """
        import select, socket
        from bgp import launcher
        launcher.register(raw_updates=True)
        from exabgp.reactor.loop import Reactor
        reactor = Reactor.__new__(Reactor)
        reactor._poller = select.poll()
        reactor.processes = None
        spins = []
        reactor._prevent_spin = lambda: spins.append(1)
        closed, _peer = socket.socketpair()
        ready, other = socket.socketpair()
        for s in (closed, ready):
            reactor._poller.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLNVAL)
        fd = ready.fileno()
        closed.close()
        other.send(b"x")
        first = list(reactor._wait_for_io(0))
        second = [f for f, _e in reactor._poller.poll(0)]
        print(first == [fd], second == [fd], spins == [])
        """
    )
    assert out == "True True True"


def test_messages_are_read_ahead_and_served_whole() -> None:
    """Several BGP messages in one segment come out one by one; a partial one waits (empty
    reads, as ExaBGP's own reader gives) until the rest arrives."""
    out = run(
        """
        import socket
        from bgp import launcher
        launcher.register(raw_updates=True)
        from exabgp.reactor.network.connection import Connection
        conn = Connection.__new__(Connection)
        conn.io, far = socket.socketpair()
        conn.io.setblocking(False)
        conn.msg_size = 4096
        conn.defensive = False
        def message(kind, body):
            return b"\\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + bytes([kind]) + body
        msgs = [message(4, b""), message(2, b"\\x00\\x00\\x00\\x00"), message(2, b"\\x00" * 300)]
        third = msgs[2]
        far.send(b"".join(msgs[:2]) + third[:100])
        pending = []
        def read():  # as ExaBGP's protocol does: one reader per message, resumed until whole
            if not pending:
                pending.append(conn.reader())
            length, _kind, header, body, _error = next(pending[0])
            if not length:
                return None
            pending.clear()
            return header + body
        got = [read(), read(), read()]
        far.send(third[100:])
        got.append(read())
        print(got == [msgs[0], msgs[1], None, third])
        """
    )
    assert out == "True"


def test_plain_strings_are_quoted_as_json_dumps_quotes_them() -> None:
    out = run(
        """
        import json, random, string
        from bgp import launcher
        launcher.register(raw_updates=True)
        from exabgp.reactor.api.response.json import JSON
        enc = JSON.__new__(JSON)
        rng = random.Random(7)
        alphabet = string.printable + "\\u00e9\\u2028"
        texts = ["", "0xFFAB", "10.0.0.1", "fe80::1", "a-b_c.d:e"]
        texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
        print(all(enc._string(t) == json.dumps(t) for t in texts), enc._string(5), enc._string(True))
        """
    )
    assert out == "True 5 true"
