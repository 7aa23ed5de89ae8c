"""Run ExaBGP 5.0.15 with API commands that originate EVPN IMET and SMET routes.

ExaBGP cannot originate EVPN routes from its configuration or its stock API, but its command
table is open: this module registers ``announce evpn`` and ``withdraw evpn`` (grammar in
bgp.commands), builds the NLRI with the project's codec, and hands them to ExaBGP's RIB the way
its own ``announce route`` does. Usage: ``python -m bgp.launcher [exabgp arguments] CONFIG``.
These are ExaBGP internals, hence the exact version pin in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

from bgp.commands import EvpnCommand, parse_command
from bgp.evpn import CodecError
from bgp.exabgp_config import RAW_UPDATES_ENV

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


def _keep_raw_pmsi_label() -> None:
    """ExaBGP prints the raw 24-bit PMSI label (the VNI) only for tunnel types it decodes, and
    its ingress-replication decoder takes IPv4 endpoints only; for an IPv6 VTEP it falls back to
    a generic form that drops the raw label, and the VNI's low four bits with it. Keep it, so
    the JSON shows ``LABEL(RAW):0xENDPOINT`` for IPv6 too."""
    from exabgp.bgp.message.update.attribute.pmsi import PMSI

    def pmsi_unknown(subtype: int, tunnel: bytes, label: int, flags: int, raw_label: int) -> Any:
        pmsi = PMSI(tunnel, label, flags, raw_label)
        pmsi.TUNNEL_TYPE = subtype
        return pmsi

    PMSI.pmsi_unknown = staticmethod(pmsi_unknown)


def _accept_ipv6_evpn_next_hops() -> None:
    """ExaBGP 5.0.15 refuses (NOTIFICATION 3/9) any EVPN MP_REACH whose next hop is not 4
    octets, so an IPv6 underlay could never carry EVPN. RFC 7432 allows IPv6 next hops (16, or
    32 with a link-local): accept those lengths too."""
    from exabgp.protocol.family import AFI, SAFI, Family

    Family.size[(AFI.l2vpn, SAFI.evpn)] = ((4, 16, 32), 0)


def _skip_update_decoding() -> None:
    """With ``receive { packets; }`` the agent decodes UPDATEs itself (bgp.update), so ExaBGP's
    own decoding of each received UPDATE into objects is work nobody reads: received UPDATEs
    become ExaBGP's empty UPDATE (nothing for its adj-RIB-in, which the agent does not use).
    What ExaBGP sends is untouched. Its decoding of ORIGIN etc. no longer resets a session on a
    malformed UPDATE; the agent treats such routes as withdrawn (RFC 7606) instead."""
    from exabgp.bgp.message import Update
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update.attribute import Attributes

    decode = Update.unpack_message.__func__
    empty = Update([], Attributes())

    def unpack_message(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        if direction == Direction.IN:
            return empty
        return decode(cls, data, direction, negotiated)

    Update.unpack_message = classmethod(unpack_message)

    # The hex of each message body then is most of ExaBGP's work per route; its hexstring()
    # formats octet by octet. Same text, made in C.
    import exabgp.reactor.api.response.json as json_response
    import exabgp.util

    def hexstring(value: bytes) -> str:
        return "0x" + bytes(value).hex().upper()

    exabgp.util.hexstring = hexstring
    json_response.hexstring = hexstring


def register(raw_updates: bool = False) -> None:
    from exabgp.reactor.api.command.command import Command

    for name in ("announce evpn", "withdraw evpn"):
        Command.register(name)(_handler)
    _keep_raw_pmsi_label()
    _accept_ipv6_evpn_next_hops()
    if raw_updates:
        _skip_update_decoding()


def main() -> None:
    from exabgp.version import version

    if version != EXABGP_VERSION:
        sys.stderr.write(f"bgp.launcher: needs exabgp {EXABGP_VERSION}, found {version}\n")
        sys.exit(2)
    register(raw_updates=os.environ.get(RAW_UPDATES_ENV) == "1")
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
