"""``python -m ipmr``: the IPMR driver on its own, smcroute-style, for tests and benchmarks.

It takes the edge interfaces, static routes and querier settings on the command line, holds
the multicast routing tables until SIGTERM/SIGINT, and prints one JSON line per event on
stdout (``{"event": "ready", ...}`` once the VIFs and static routes are in). The agent
embeds the same driver (``ipmr.driver.IpmrDriver``) instead of running this.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from ipmr.driver import IpmrDriver, IpmrSettings, parse_static_route
from ipmr.mrt import MrtError


def _route(text: str) -> Any:
    """``SOURCE|*,GROUP,IIF,OIF[+OIF...]``"""
    try:
        source, group, iif, oifs = text.split(",")
        return parse_static_route(source, group, iif, [o for o in oifs.split("+") if o])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"route {text!r}: expected SOURCE|*,GROUP,IIF,OIF[+OIF...] ({exc})"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipmr", description=__doc__.splitlines()[0])
    parser.add_argument("--edge", nargs="*", default=[], help="edge interfaces (one VIF each)")
    parser.add_argument("--route", type=_route, action="append", default=[], help="static route")
    parser.add_argument(
        "--table", type=int, action="append", help="multicast routing table (repeat to spread)"
    )
    parser.add_argument("--family", type=int, choices=(4, 6), action="append")
    parser.add_argument("--querier", nargs="*", default=[], help="edge interfaces to query on")
    parser.add_argument("--query-interval", type=float, default=125.0)
    parser.add_argument("--query-response", type=float, default=10.0)
    parser.add_argument("--svi", action="append", default=[], help="BRIDGE=VNI (an SVI VIF)")
    args = parser.parse_args(argv)
    if args.table and len(set(args.table)) != len(args.table):
        parser.error("--table: a table is given twice")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

    def emit(kind: str, data: dict[str, Any]) -> None:
        print(json.dumps({"event": kind, **data}), flush=True)

    svis = {}
    for item in args.svi:
        name, _, vni = item.partition("=")
        svis[name] = int(vni)
    settings = IpmrSettings(
        edge=tuple(args.edge),
        svis=svis,
        tables=tuple(args.table or [253]),
        families=tuple(args.family or [4]),
        routes=tuple(args.route),
        querier=frozenset(args.querier),
        query_interval=args.query_interval,
        query_response=args.query_response,
    )
    driver = IpmrDriver(settings, on_event=emit)
    try:
        errors = driver.start()
    except MrtError as exc:
        print(f"python -m ipmr: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emit("ready", {"errors": errors, "budget": driver.budget()})
    try:
        driver.serve(stop)
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
