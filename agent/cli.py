"""``evpnctl``: the operator's command line.

Subcommands (DESIGN.md §8):

    evpnctl decode [--json] HEX

decodes one EVPN NLRI given as ExaBGP's ``raw`` hex (type and length octets first, an optional
``0x`` prefix allowed) and prints its fields, one ``name: value`` per line; bad input prints
``evpnctl: cannot decode HEX: <reason>`` on stderr and exits 1. (The ``show`` family, which talks
to the agent's control socket, is added next to ``decode`` in ``_build_parser``.)

``--json`` prints one JSON object on one line. Its keys are stable; which appear depends on the
route type (in brackets); addresses and distinguishers are strings:

- ``type`` (all): route type number, 1-8.
- ``name`` (all): route type name, e.g. ``"selective-multicast"``.
- ``rd`` (all): route distinguisher, e.g. ``"10.0.0.1:100"`` or ``"65000:100"``.
- ``esi`` (1, 2, 4, 5, 7, 8): Ethernet Segment Identifier, ten colon-separated hex octets.
- ``ethernet_tag`` (1, 2, 3, 5, 6, 7, 8): integer.
- ``mac`` (2): ``"aa:bb:cc:dd:ee:ff"``.
- ``ip`` (2): IP address, or null when the route carries none.
- ``labels`` (2): list of one or two integers (raw 24-bit label fields; the VNI for VXLAN).
- ``label`` (1, 5): integer (raw 24-bit label field).
- ``prefix`` (5): ``"10.1.0.0/16"``.
- ``gateway`` (5): IP address.
- ``source`` (6, 7, 8): IP address, or null for ``*`` (any source).
- ``group`` (6, 7, 8): multicast group address.
- ``originator`` (3, 4, 6, 7, 8): originating router's IP address.
- ``flags`` (6, 7, 8): ``{"raw": int, "v1": bool, "v2": bool, "v3": bool, "exclude": bool}``
  (RFC 9251 Flags octet; ``exclude`` false means include mode).
- ``sequence`` (8): Leave Group Synchronization sequence number.
- ``max_response_time`` (8): integer.
- ``key`` (6): the SMET route key (the NLRI without its Flags octet) as lowercase hex.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from agent.control import ControlError, ask
from agent.views import VIEWS, render
from bgp.evpn import (
    CodecError,
    EthernetAutoDiscovery,
    EthernetSegment,
    EvpnRoute,
    InclusiveMulticast,
    IpPrefix,
    JoinSynch,
    LeaveSynch,
    MacIpAdvertisement,
    SelectiveMulticast,
    SmetFlags,
    decode_hex,
)

PROG = "evpnctl"
DEFAULT_SOCKET = Path("/run/evpn-agent/control.sock")


def _flags(flags: SmetFlags) -> dict[str, object]:
    return {
        "raw": flags.raw,
        "v1": bool(flags.raw & SmetFlags.IGMP_V1),
        "v2": bool(flags.raw & SmetFlags.IGMP_V2),
        "v3": bool(flags.raw & SmetFlags.IGMP_V3),
        "exclude": flags.exclude,
    }


def describe(route: EvpnRoute) -> dict[str, object]:
    """The fields of one route as JSON-ready values, in display order (keys: module docstring)."""
    out: dict[str, object] = {"type": route.CODE, "name": route.NAME, "rd": str(route.rd)}
    if isinstance(route, EthernetAutoDiscovery):
        out |= {"esi": str(route.esi), "ethernet_tag": route.etag, "label": route.label}
    elif isinstance(route, MacIpAdvertisement):
        labels = [route.label1] if route.label2 is None else [route.label1, route.label2]
        out |= {"esi": str(route.esi), "ethernet_tag": route.etag, "mac": route.mac}
        out |= {"ip": None if route.ip is None else str(route.ip), "labels": labels}
    elif isinstance(route, InclusiveMulticast):
        out |= {"ethernet_tag": route.etag, "originator": str(route.originator)}
    elif isinstance(route, EthernetSegment):
        out |= {"esi": str(route.esi), "originator": str(route.originator)}
    elif isinstance(route, IpPrefix):
        out |= {"esi": str(route.esi), "ethernet_tag": route.etag, "prefix": str(route.prefix)}
        out |= {"gateway": str(route.gateway), "label": route.label}
    else:
        if isinstance(route, JoinSynch | LeaveSynch):
            out["esi"] = str(route.esi)
        out |= {
            "ethernet_tag": route.etag,
            "source": None if route.source is None else str(route.source),
            "group": str(route.group),
            "originator": str(route.originator),
        }
        if isinstance(route, LeaveSynch):
            out |= {"sequence": route.sequence, "max_response_time": route.max_response_time}
        out["flags"] = _flags(route.flags)
        if isinstance(route, SelectiveMulticast):
            out["key"] = route.key().hex()
    return out


def _human_value(key: str, value: object) -> str:
    if key == "source" and value is None:
        return "*"
    if value is None:
        return "none"
    if key == "flags" and isinstance(value, dict):
        raw = int(value["raw"])
        return f"{' '.join(SmetFlags(raw).names())} (0x{raw:02x})"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def format_human(fields: dict[str, object]) -> str:
    """``describe`` output as ``name: value`` lines; the type line carries the name."""
    lines = [f"type: {fields['type']} ({fields['name']})"]
    lines += [
        f"{key.replace('_', '-')}: {_human_value(key, value)}"
        for key, value in fields.items()
        if key not in ("type", "name")
    ]
    return "\n".join(lines)


def _shown(text: str, limit: int = 64) -> str:
    """The user's argument on one short line, whatever it contains."""
    text = text.strip()
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cmd_decode(args: argparse.Namespace) -> int:
    try:
        route = decode_hex(args.hex)
    except CodecError as exc:
        print(f"{PROG}: cannot decode {_shown(args.hex)}: {exc}", file=sys.stderr)
        return 1
    fields = describe(route)
    print(json.dumps(fields) if args.json else format_human(fields))
    return 0


Handler = Callable[[argparse.Namespace], int]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Inspect the EVPN IR agent and its routes.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    decode = commands.add_parser(
        "decode",
        help="decode one EVPN NLRI from ExaBGP's raw hex",
        description="Decode one EVPN NLRI given as ExaBGP's 'raw' hex (type and length octets first).",
    )
    decode.add_argument("--json", action="store_true", help="print one JSON object")
    decode.add_argument("hex", metavar="HEX", help="the NLRI as hex, optionally prefixed by 0x")
    decode.set_defaults(handler=_cmd_decode)
    show = commands.add_parser(
        "show",
        help="show the running agent's state",
        description="Ask the running agent (over its control socket) for one view of its state.",
    )
    show.add_argument("what", choices=sorted(VIEWS), metavar="VIEW", help=", ".join(sorted(VIEWS)))
    show.add_argument("--json", action="store_true", help="print the view's JSON (stable; docs/evpnctl.md)")
    show.add_argument(
        "--socket", type=Path, default=DEFAULT_SOCKET, help=f"the agent's control socket ({DEFAULT_SOCKET})"
    )
    show.set_defaults(handler=_cmd_show)
    return parser


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        result = ask(args.socket, {"show": args.what})
    except ControlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else render(args.what, result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already reported
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
