"""The control socket: one JSON request per line in, one JSON answer per line out.

A Unix socket (mode 0600 by default, so only root asks) that ``evpnctl`` talks to; the caller's
uid is checked as well (SO_PEERCRED), so a loosened file mode does not open it to everyone. Requests
are ``{"show": "groups"}``; answers are ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error": "one line"}``. The server side is asyncio and answers from the daemon's loop, so a
view always sees a consistent store; the client side is a few blocking lines for the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["ControlError", "ask", "serve"]

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
_MAX_REQUEST = 64 * 1024
log = logging.getLogger("evpn.control")


class ControlError(Exception):
    """The agent could not be asked or refused: one line for the user."""


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The uid of the process that connected (SO_PEERCRED, recorded by the kernel at connect)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


async def serve(
    path: Path, handler: Handler, mode: int = 0o600, allowed_uids: frozenset[int] | None = None
) -> asyncio.AbstractServer:
    """Listen on ``path`` (a stale socket file from a dead agent is replaced). Only root and
    the agent's own uid (or ``allowed_uids``) are answered, whatever the file mode."""
    allowed = allowed_uids if allowed_uids is not None else frozenset({0, os.geteuid()})
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ControlError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlError(f"{path} exists and is not a socket; not replacing it")
        if _alive(path):
            raise ControlError(f"another agent is already answering on {path}")
        path.unlink()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer)
        if uid is not None and uid not in allowed:
            log.warning("control socket: refused a client running as uid %d", uid)
            text = f"permission denied on {path} for uid {uid}: run evpnctl as root"
            refusal = {"ok": False, "error": text}
            with contextlib.suppress(ConnectionError, asyncio.LimitOverrunError, ValueError):
                await reader.readline()  # read the request first: closing on unread data resets it
                writer.write(json.dumps(refusal).encode() + b"\n")
                await writer.drain()
            writer.close()
            return
        try:
            while raw := await reader.readline():
                answer: dict[str, Any]
                try:
                    request = json.loads(raw)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    answer = {"ok": True, "result": await handler(request)}
                except (ValueError, KeyError, TypeError) as exc:
                    text = " ".join(str(exc).split()).strip("'\"")
                    answer = {"ok": False, "error": text or type(exc).__name__}
                except Exception as exc:  # a bug in a view: answer it, keep serving
                    log.exception("control request %r failed", raw[:200])
                    answer = {"ok": False, "error": " ".join(f"internal error: {exc}".split())}
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except (asyncio.LimitOverrunError, ValueError):  # a line over the limit
            with contextlib.suppress(ConnectionError):
                writer.write(json.dumps({"ok": False, "error": "request too long"}).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    old_umask = os.umask(0o177)  # the socket is born 0600: no window for other users
    try:
        server = await asyncio.start_unix_server(client, path=str(path), limit=_MAX_REQUEST)
    except OSError as exc:
        raise ControlError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return server


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def ask(path: Path, request: dict[str, Any], timeout: float = 10.0) -> Any:
    """Send one request and return its result; ControlError with one line otherwise."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"the agent is not running (no control socket at {path})") from None
        except ConnectionRefusedError:
            raise ControlError(f"the agent is not running (nobody answers on {path})") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run evpnctl as root") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the agent at {path}: {exc.strerror or exc}") from None
        try:
            s.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            raise ControlError(f"the agent at {path} did not answer within {timeout:g}s") from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise ControlError(f"the agent at {path} closed the connection") from None
            raise ControlError(f"talking to the agent at {path}: {exc.strerror or exc}") from None
    with contextlib.suppress(ValueError):
        answer = json.loads(buf)
        if isinstance(answer, dict) and answer.get("ok"):
            return answer.get("result")
        if isinstance(answer, dict):
            raise ControlError(str(answer.get("error", "the agent refused the request")))
    raise ControlError(f"the agent at {path} sent an answer that is not JSON")
