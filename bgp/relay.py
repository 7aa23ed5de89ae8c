"""ExaBGP's API process: a byte pipe between ExaBGP's stdin/stdout and the agent's Unix socket.

The agent owns kernel state and must outlive ExaBGP's process respawns, so it is not itself the
child ExaBGP runs; this relay is. It copies blindly in both directions with blocking reads in
two threads, so ExaBGP's writer never waits on the agent's parsing. Usage:
``python -m bgp.relay SOCKET_PATH``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def _pump(read_fd: int, write: socket.socket | int) -> None:
    try:
        while True:
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            if isinstance(write, socket.socket):
                write.sendall(chunk)
            else:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(write, view) :]
    except OSError:
        pass


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m bgp.relay SOCKET_PATH\n")
        sys.exit(2)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(sys.argv[1])
    except OSError as exc:
        sys.stderr.write(f"bgp.relay: cannot reach the agent at {sys.argv[1]}: {exc.strerror}\n")
        sys.exit(1)
    finished = threading.Event()

    def run(read_fd: int, write: socket.socket | int) -> None:
        _pump(read_fd, write)
        finished.set()  # either side closing ends the relay

    for args in ((sys.stdin.fileno(), sock), (sock.fileno(), sys.stdout.fileno())):
        threading.Thread(target=run, args=args, daemon=True).start()
    finished.wait()
    os._exit(0)


if __name__ == "__main__":
    main()
