"""``evpn-agent``: run a leaf (``run --config leaf.yaml``) or validate its config (``check``).

Exit codes (documented in docs/agent.md): 0 ok, 2 invalid config (or, for ``check``, devices
it names that do not exist), 3 a part could not start, 4 another multicast router owns the
IPMR table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.config import ConfigError, load_config
from agent.daemon import EXIT_CONFIG, EXIT_OK, run_agent

PROG = "evpn-agent"


def _check(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problems = config.device_problems()
    for line in problems:
        print(f"{PROG}: {path}: {line}", file=sys.stderr)
    print(json.dumps(config.model_dump(mode="json", by_alias=True), indent=2))
    return EXIT_CONFIG if problems else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="The EVPN ingress-replication leaf agent.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (("run", "run the leaf agent"), ("check", "validate a config and print it in effect")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", "-c", type=Path, required=True, help="the leaf's YAML config")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "check":
        return _check(args.config)
    return run_agent(args.config)


if __name__ == "__main__":
    sys.exit(main())
