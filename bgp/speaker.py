"""Asyncio adapter that runs ExaBGP (through bgp.launcher) and talks to it over the relay socket.

The reader side only splits lines and queues them: parsing and store work happen elsewhere, so
ExaBGP's output is always drained (ExaBGP stops sending keepalives when its API reader stalls).
Commands are written in order and their ``done``/``error`` answers are matched in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bgp.exabgp_config import Speaker, exabgp_environment, render_config

ACK_DONE = "done"
ACK_ERROR = "error"
READ_CHUNK = 1 << 18
MAX_LINE = 1 << 20  # ExaBGP's longest line (a 64 KiB UPDATE as hex, in JSON) is far below this


@dataclass
class ExabgpProcess:
    """One ExaBGP instance with the project's launcher, optionally inside a network namespace."""

    speaker: Speaker
    workdir: Path
    netns: str | None = None
    python: str = sys.executable
    log_level: str = "INFO"
    _server: asyncio.AbstractServer | None = field(default=None, init=False)
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False)
    _writer: asyncio.StreamWriter | None = field(default=None, init=False)
    _lines: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue, init=False)
    _pending: deque[asyncio.Future[bool]] = field(default_factory=deque, init=False)
    _connected: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    connections: int = field(default=0, init=False)
    on_connect: Callable[[int], None] | None = None
    """Called with the connection count each time the API process (re)connects: from the
    second one on, ExaBGP restarted it and the agent resyncs (route refresh)."""
    on_exit: Callable[[int], None] | None = None
    """Called with its exit status when ExaBGP ends without ``stop()``: killed, or crashed. The
    relay socket stays open, so ``respawn()`` can start another one."""
    _stopping: bool = field(default=False, init=False)
    _watcher: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.workdir / "exabgp-api.sock"

    @property
    def config_path(self) -> Path:
        return self.workdir / "exabgp.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "exabgp.log"

    async def start(self, connect_timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._stopping = False
        self._server = await asyncio.start_unix_server(self._on_relay, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        try:
            await self.respawn(connect_timeout)
        except RuntimeError:
            await self.stop()
            raise

    async def respawn(self, connect_timeout: float = 20.0) -> None:
        """Start ExaBGP (again, after it died) on the open relay socket; wait for its relay."""
        relay = [self.python, "-m", "bgp.relay", str(self.socket_path)]
        self._connected.clear()  # a dead ExaBGP's relay may not have hung up yet
        self.config_path.write_text(render_config(self.speaker, relay))
        env = dict(os.environ)
        env.update(exabgp_environment(self.speaker, self.log_level))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")) if p
        )
        argv = [self.python, "-m", "bgp.launcher", str(self.config_path)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        log = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(self._proc))
        try:
            await asyncio.wait_for(self._connected.wait(), connect_timeout)
        except TimeoutError:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            proc, self._proc = self._proc, None  # not an exit to report: the caller hears of it
            await _end(proc)
            raise RuntimeError(f"ExaBGP did not start its API process; log tail:\n{tail}") from None

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        status = await proc.wait()
        if not self._stopping and proc is self._proc and self.on_exit is not None:
            self.on_exit(status)

    async def _on_relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        self.connections += 1
        self._fail_pending()
        self._connected.set()
        if self.on_connect is not None:
            self.on_connect(self.connections)
        partial = b""
        try:
            while True:
                # Whole chunks, split here: ExaBGP writes its lines in batches (bgp.launcher),
                # and one read per batch costs far less than one readline() per line.
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                *complete, partial = (partial + chunk).split(b"\n")
                if len(partial) > MAX_LINE:
                    complete.append(b"over-long line dropped: %d bytes without a newline" % len(partial))
                    partial = b""
                for raw in complete:
                    line = raw.decode("utf-8", "replace")
                    if line in (ACK_DONE, ACK_ERROR):
                        if self._pending:
                            fut = self._pending.popleft()
                            if not fut.done():
                                fut.set_result(line == ACK_DONE)
                        continue
                    self._lines.put_nowait(line)
        except ConnectionError:
            pass
        finally:
            if self._writer is writer:
                self._writer = None
                self._connected.clear()
                self._fail_pending()

    def _fail_pending(self) -> None:
        while self._pending:
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_result(False)

    def send(self, command: str) -> asyncio.Future[bool]:
        """Queue one command; the future resolves True on ``done``, False on ``error``/loss."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._writer is None:
            fut.set_result(False)
            return fut
        self._pending.append(fut)
        self._writer.write(command.encode() + b"\n")
        return fut

    async def command(self, command: str, timeout: float = 10.0) -> bool:
        return await asyncio.wait_for(self.send(command), timeout)

    async def next_line(self, timeout: float | None = None) -> str | None:
        """The next line from ExaBGP; None when ``timeout`` seconds pass first (so the caller
        can run its timers); EOFError once the process was stopped."""
        if not self._lines.empty():
            line = self._lines.get_nowait()  # the busy path: no timer per line
        else:
            try:
                line = await asyncio.wait_for(self._lines.get(), timeout)
            except TimeoutError:
                return None
        if line is None:
            self._lines.put_nowait(None)  # stay at end of stream for later callers
            raise EOFError
        return line

    @property
    def backlog(self) -> int:
        """Lines read from ExaBGP and not yet taken by ``next_line``."""
        return self._lines.qsize()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def stop(self) -> None:
        self._stopping = True
        if self._proc is not None:
            await _end(self._proc)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._server is not None:
            self._server.close()
            self._server = None
        self._fail_pending()
        self._lines.put_nowait(None)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


async def _end(proc: asyncio.subprocess.Process | None) -> None:
    """SIGTERM to ExaBGP's process group (the relay with it), SIGKILL after 10 s."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
