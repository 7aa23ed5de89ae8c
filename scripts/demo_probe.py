"""Small probes `make demo` runs inside the fabric's nodes (stdlib only, so they also run in
the containerlab image): join and count, capture VXLAN copies, send a numbered stream.

    demo_probe.py receive GROUP IFACE SECONDS        -> {"received": N}
    demo_probe.py vxlan IFACE GROUP SECONDS [out|in] -> {"copies": N, "by_dst": {...}}
    demo_probe.py send GROUP SOURCE COUNT [TTL]      -> {"sent": N}
Each prints one JSON line when done.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def receive(group: str, iface: str, seconds: float) -> dict[str, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", 5000))
    index = socket.if_nametoindex(iface)
    s.setsockopt(
        socket.IPPROTO_IP,
        socket.IP_ADD_MEMBERSHIP,
        socket.inet_aton(group) + b"\0\0\0\0" + struct.pack("=i", index),
    )
    got = 0
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            s.recv(2048)
            got += 1
        except TimeoutError:
            break
    return {"received": got}


def vxlan(iface: str, group: str, seconds: float, direction: str) -> dict[str, object]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: sees outgoing too
    s.bind((iface, 0))
    want = socket.inet_aton(group)
    outgoing = direction == "out"
    copies = 0
    by_dst: dict[str, int] = {}
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            frame, addr = s.recvfrom(65535)
        except TimeoutError:
            break
        if (addr[2] == socket.PACKET_OUTGOING) != outgoing or len(frame) < 84 or frame[23] != 17:
            continue
        udp = 14 + (frame[14] & 0x0F) * 4
        if frame[udp + 2 : udp + 4] != b"\x12\xb5":  # 4789
            continue
        inner = udp + 16
        if frame[inner + 12 : inner + 14] == b"\x08\x00" and frame[inner + 30 : inner + 34] == want:
            copies += 1
            dst = socket.inet_ntoa(frame[30:34])
            by_dst[dst] = by_dst.get(dst, 0) + 1
    return {"copies": copies, "by_dst": by_dst}


def send(group: str, source: str, count: int, ttl: int) -> dict[str, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
    for n in range(count):
        s.sendto(f"demo-{n:06d}".encode(), (group, 5000))
        time.sleep(0.01)  # a steady stream, not synchronisation
    return {"sent": count}


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "receive":
        out: dict[str, object] = dict(receive(argv[1], argv[2], float(argv[3])))
    elif mode == "vxlan":
        out = vxlan(argv[1], argv[2], float(argv[3]), argv[4] if len(argv) > 4 else "in")
    elif mode == "send":
        out = dict(send(argv[1], argv[2], int(argv[3]), int(argv[4]) if len(argv) > 4 else 8))
    else:
        print(f"demo_probe: unknown mode {mode!r}", file=sys.stderr)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
