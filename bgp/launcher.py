"""Run ExaBGP 5.0.15 with API commands that originate EVPN IMET and SMET routes.

ExaBGP cannot originate EVPN routes from its configuration or its stock API, but its command
table is open: this module registers ``announce evpn`` and ``withdraw evpn`` (grammar in
bgp.commands), builds the NLRI with the project's codec, and hands them to ExaBGP's RIB the way
its own ``announce route`` does. Usage: ``python -m bgp.launcher [exabgp arguments] CONFIG``.
These are ExaBGP internals, hence the exact version pin in pyproject.toml.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from bgp.commands import EvpnCommand, parse_command
from bgp.evpn import CodecError

EXABGP_VERSION = "5.0.15"


def _build_change(cmd: EvpnCommand) -> Any:
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.attribute import Attributes
    from exabgp.bgp.message.update.attribute.community.extended.communities import (
        ExtendedCommunities,
    )
    from exabgp.bgp.message.update.attribute.community.extended.community import ExtendedCommunity
    from exabgp.bgp.message.update.attribute.origin import Origin
    from exabgp.bgp.message.update.attribute.pmsi import PMSI
    from exabgp.bgp.message.update.nlri.evpn.nlri import GenericEVPN
    from exabgp.protocol.ip import IP
    from exabgp.rib.change import Change

    packed = cmd.route.pack()
    nlri = GenericEVPN(packed[0], packed[2:])
    nlri.nexthop = IP.create(str(cmd.attributes.next_hop))
    nlri.action = Action.ANNOUNCE if cmd.action == "announce" else Action.WITHDRAW
    attributes = Attributes()
    attributes.add(Origin(Origin.IGP))
    if cmd.attributes.pmsi is not None:
        attributes.add(PMSI.unpack(cmd.attributes.pmsi.pack(), None, None))
    communities = cmd.attributes.communities()
    if communities:
        ext = ExtendedCommunities()
        for raw in communities:
            ext.add(ExtendedCommunity.unpack(raw))
        attributes.add(ext)
    return Change(nlri, attributes)


def _handler(self: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
    from exabgp.reactor.api.command.limit import match_neighbor

    def callback() -> Iterator[bool]:
        try:
            cmd = parse_command(line)
            # "neighbor A neighbor B" selects A or B here (ExaBGP's own " , " lists break on the
            # comma in its command reader); no neighbor selects every peer.
            peers = [
                peer
                for peer in reactor.peers(service)
                if not cmd.neighbors or any(match_neighbor([f"neighbor {n}"], peer) for n in cmd.neighbors)
            ]
            if not peers:
                self.log_failure(f"no neighbor matching the command: {line}")
                reactor.processes.answer_error(service)
                yield True
                return
            change = _build_change(cmd)
            reactor.configuration.inject_change(peers, change)
            self.log_message(f"evpn route {cmd.action}d for {', '.join(peers)}: {line}")
            reactor.processes.answer_done(service)
        except CodecError as exc:
            self.log_failure(f"evpn command refused: {exc}: {line}")
            reactor.processes.answer_error(service)
        yield True

    reactor.asynchronous.schedule(service, line, callback())
    return True


def register() -> None:
    from exabgp.reactor.api.command.command import Command

    for name in ("announce evpn", "withdraw evpn"):
        Command.register(name)(_handler)


def main() -> None:
    from exabgp.version import version

    if version != EXABGP_VERSION:
        sys.stderr.write(f"bgp.launcher: needs exabgp {EXABGP_VERSION}, found {version}\n")
        sys.exit(2)
    register()
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
