"""A BGP route injector for labs and tests: ExaBGP with the project's launcher, told over a
Unix socket which IMET/SMET routes to announce or withdraw toward the fabric.

    python -m bgp.injector serve --config injector.yaml   # in the injector node
    python -m bgp.injector send announce evpn imet rd 10.0.0.77:100 etag 0 ...
    evpn-lab inject inj announce evpn smet ...            # the same, from the lab host

The config is the agent's YAML (router id, local address, ASN, neighbors; no VNIs needed).
Each line sent is one launcher command (docs/exabgp-api.md); it is checked with the project's
parser first, so a typo gets a one-line error naming the word instead of ExaBGP's bare
``error``. ``send`` prints ``done`` and exits 0, or prints the error and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

from bgp.commands import parse_command
from bgp.evpn import CodecError

DEFAULT_SOCKET = Path("/run/evpn-injector/injector.sock")


async def _serve(config_path: Path, sock_path: Path) -> int:
    from agent.config import ConfigError, load_config
    from bgp.speaker import ExabgpProcess

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        print(f"injector: {exc}", file=sys.stderr)
        return 2
    process = ExabgpProcess(cfg.speaker(), cfg.workdir / "exabgp")
    await process.start()

    async def drain() -> None:  # ExaBGP's JSON lines are not needed; keep its pipe flowing
        with contextlib.suppress(EOFError):
            while True:
                await process.next_line(None)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while raw := await reader.readline():
            line = raw.decode(errors="replace").strip()
            try:
                parse_command(line)
                answer = "done" if await process.command(line) else "error: ExaBGP refused the command"
            except CodecError as exc:
                answer = f"error: {exc}"
            except TimeoutError:
                answer = "error: ExaBGP did not answer"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
        writer.close()

    sock_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
    server = await asyncio.start_unix_server(client, path=str(sock_path))
    os.chmod(sock_path, 0o600)
    drainer = asyncio.create_task(drain())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"injector: ready on {sock_path}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    drainer.cancel()
    await process.stop()
    return 0


def send(line: str, sock_path: Path = DEFAULT_SOCKET, timeout: float = 15.0) -> str:
    """One command to a serving injector; its answer (``done`` or ``error: ...``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(sock_path))
        except OSError as exc:
            return f"error: no injector on {sock_path} ({exc.strerror or exc})"
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace").strip() or "error: the injector closed the connection"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgp.injector", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, default=DEFAULT_SOCKET)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run ExaBGP and accept commands")
    serve.add_argument("--config", type=Path, required=True)
    cmd = sub.add_parser("send", help="send one launcher command")
    cmd.add_argument("words", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return asyncio.run(_serve(args.config, args.socket))
    answer = send(" ".join(args.words), args.socket)
    print(answer, file=sys.stdout if answer == "done" else sys.stderr)
    return 0 if answer == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
