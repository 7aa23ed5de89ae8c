"""An agent's ExaBGP launcher against FRR (bgpd + zebra, advertise-all-vni) in namespaces:
each side builds its flood list from the other's IMET, and FRR survives (and drops) SMET."""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import ip_address

import pytest

from agent.bgpside import BgpSide
from agent.intake import AUTO, ImportPolicy, Intake
from agent.store import Store
from bgp.exabgp_config import Neighbor, Speaker
from bgp.exabgp_json import Event, ParseError
from bgp.originate import OriginSettings, VniOrigin, auto_rd, auto_rt
from bgp.speaker import ExabgpProcess
from tests.netns.netlab import Frr, Lab, frr_available, sh, wait_until

pytestmark = pytest.mark.skipif(not frr_available(), reason="FRR (Debian package frr) not installed")

AGENT, FRR_VTEP = ip_address("10.0.0.1"), ip_address("10.0.0.2")
G = ip_address("239.1.1.1")

BGPD_CONF = """\
hostname frr-leaf
log stdout informational
router bgp 65000
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 10.0.0.1 remote-as 65000
 neighbor 10.0.0.1 timers connect 1
 address-family l2vpn evpn
  neighbor 10.0.0.1 activate
  advertise-all-vni
 exit-address-family
"""


def flood_dsts(ns: str, dev: str) -> set[str]:
    out = sh(f"bridge -n {ns} fdb show dev {dev}", check=False).stdout
    return {
        line.split(" dst ")[1].split()[0]
        for line in out.splitlines()
        if line.startswith("00:00:00:00:00:00") and " dst " in line
    }


def frr_established(frr: Frr) -> bool:
    try:
        summary = json.loads(frr.vtysh("show bgp l2vpn evpn summary json") or "{}")
    except ValueError:
        return False
    peers = summary.get("peers", {})
    return peers.get(str(AGENT), {}).get("state") == "Established"


async def test_frr_and_agent_build_each_others_flood_lists(lab: Lab) -> None:
    na, nf = lab.ns("agent"), lab.ns("frr")
    lab.veth(na, "eth0", "10.0.0.1/24", nf, "eth0", "10.0.0.2/24")
    sh(f"ip -n {nf} link add br100 type bridge")
    sh(f"ip -n {nf} link add vxlan100 type vxlan id 100 local 10.0.0.2 dstport 4789 nolearning")
    sh(f"ip -n {nf} link set vxlan100 master br100")
    sh(f"ip -n {nf} link set br100 up")
    sh(f"ip -n {nf} link set vxlan100 up")
    frr = Frr(lab, nf, lab.workdir / "frr")
    frr.start(BGPD_CONF)

    speaker = Speaker(AGENT, 65000, AGENT, (Neighbor(FRR_VTEP, 65000, hold_time=9),))
    process = ExabgpProcess(speaker, lab.workdir / "agent", netns=na, python=sys.executable)
    store = Store(own_vteps=[AGENT])
    origin = OriginSettings(AGENT, {100: VniOrigin(100, auto_rd(AGENT, 100, 0), (auto_rt(65000, 100),))})
    side = BgpSide(process, Intake(store, ImportPolicy({100: AUTO})), origin)
    events: list[Event] = []
    side.on_event = events.append
    side.on_line = lambda line: (lab.workdir / "frr-lines.jsonl").open("a").write(line + "\n")
    await process.start()
    task = asyncio.create_task(side.run())
    try:
        await wait_until(lambda: side.peer_states.get(str(FRR_VTEP)) == "up", what="session with FRR")
        assert await side.sync_origination({100: [(None, G)]}) == 0

        # The agent learns FRR's VTEP from FRR's IMET.
        await wait_until(lambda: store.flood_list(100) == {FRR_VTEP}, what="FRR IMET in the store")
        # FRR does not claim IGMP proxy, so it must get every group (RFC 9251 §4).
        assert store.all_multicast(100, 4) == {FRR_VTEP}
        assert store.receivers(100, None, G) == {FRR_VTEP}
        assert not [e for e in events if isinstance(e, ParseError)]

        # FRR installs the agent's VTEP in vxlan100's flood list from the agent's IMET.
        await wait_until(lambda: flood_dsts(nf, "vxlan100") == {str(AGENT)}, what="FRR flood entry")

        # FRR silently drops the SMET we sent: the session stays up and FRR holds no type-6 route.
        assert frr_established(frr)
        routes = frr.vtysh("show bgp l2vpn evpn route")
        assert "[6]" not in routes and "[3]" in routes

        # Withdrawing our IMET removes FRR's flood entry.
        side.origin = OriginSettings(AGENT, {})
        assert await side.sync_origination({}) == 0
        await wait_until(lambda: flood_dsts(nf, "vxlan100") == set(), what="FRR flood entry withdrawn")
    finally:
        await process.stop()
        task.cancel()
