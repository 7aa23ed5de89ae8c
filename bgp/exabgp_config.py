"""ExaBGP configuration and environment generated from the agent's BGP settings.

Kept pure (text in, text out) so that what the agent asks of ExaBGP is visible in one place
and testable without a BGP session.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from bgp.evpn import IPAddress

PROCESS_NAME = "evpn-agent"
RAW_UPDATES_ENV = "EVPN_RAW_UPDATES"
# ``packets``: messages as hex for bgp.update (the OPEN for its graceful-restart offer too).
RAW_RECEIVE = ("            packets;", "            open;")
PARSED_RECEIVE = ("            parsed;",)  # tells bgp.launcher that ExaBGP need not decode UPDATEs


@dataclass(frozen=True, slots=True)
class Neighbor:
    address: IPAddress
    peer_as: int
    local_address: IPAddress | None = None
    md5_password: str | None = None
    passive: bool = False
    hold_time: int = 90
    send_smet: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class Speaker:
    router_id: IPAddress
    local_as: int
    local_address: IPAddress
    neighbors: tuple[Neighbor, ...]
    graceful_restart: int = 0  # seconds; 0 leaves the capability out
    listen_port: int = 179
    # Received messages as hex for bgp.update to decode (``packets``), not decoded by ExaBGP
    # (``parsed``): about half ExaBGP's cost per route (docs/exabgp-api.md).
    raw_updates: bool = True


def _quote(text: str) -> str:
    # ExaBGP's tokeniser takes a double-quoted string; json.dumps escapes the rest safely.
    return json.dumps(text)


def render_config(speaker: Speaker, api_command: list[str]) -> str:
    """The ExaBGP configuration: one process (the agent's relay) and one block per neighbor."""
    run = " ".join(shlex.quote(part) for part in api_command)
    lines = [
        f"process {PROCESS_NAME} {{",
        f"    run {run};",
        "    encoder json;",
        "}",
        "",
    ]
    for n in speaker.neighbors:
        local = n.local_address or speaker.local_address
        lines += [
            f"neighbor {n.address} {{",
            f"    router-id {speaker.router_id};",
            f"    local-address {local};",
            f"    local-as {speaker.local_as};",
            f"    peer-as {n.peer_as};",
            f"    hold-time {n.hold_time};",
        ]
        if n.description:
            lines.append(f"    description {_quote(n.description)};")
        if n.passive:
            lines.append("    passive true;")
        if n.md5_password:
            lines.append(f"    md5-password {_quote(n.md5_password)};")
        lines += [
            "    capability {",
            "        route-refresh enable;",
        ]
        if speaker.graceful_restart:
            lines.append(f"        graceful-restart {speaker.graceful_restart};")
        lines += [
            "    }",
            "    family {",
            "        l2vpn evpn;",
            "    }",
            "    api {",
            f"        processes [ {PROCESS_NAME} ];",
            "        neighbor-changes;",
            "        receive {",
            *(RAW_RECEIVE if speaker.raw_updates else PARSED_RECEIVE),
            "            update;",
            "            notification;",
            "            refresh;",
            "        }",
            "    }",
            "}",
            "",
        ]
    return "\n".join(lines)


def exabgp_environment(speaker: Speaker, log_level: str = "INFO") -> dict[str, str]:
    """Environment for the ExaBGP process: foreground, root (so it can run the relay), acks on,
    listening on the local addresses so either side may open the session."""
    binds = {str(speaker.local_address)} | {
        str(n.local_address) for n in speaker.neighbors if n.local_address
    }
    return {
        "exabgp_daemon_user": "root",
        "exabgp_daemon_daemonize": "false",
        "exabgp_daemon_drop": "false",
        "exabgp_api_ack": "true",
        "exabgp_api_respawn": "true",
        "exabgp_log_destination": "stderr",
        "exabgp_log_level": log_level,
        "exabgp_api_cli": "false",
        "exabgp_tcp_port": str(speaker.listen_port),
        "exabgp_tcp_bind": " ".join(sorted(binds)),
        RAW_UPDATES_ENV: "1" if speaker.raw_updates else "",
    }
