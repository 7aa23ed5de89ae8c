"""Route injection through the lab's injector node (agent.pytest_plugin): the agent leaves
react to IMET/SMET routes nobody in the fabric originates. This is also the example users
copy for their own route-injection tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.lab import Lab
from tests.netns.netlab import poll

VTEP = "10.0.0.77"
IMET = (
    f"evpn imet rd {VTEP}:100 etag 0 originator {VTEP} next-hop 10.0.0.5 "
    f"pmsi ingress-replication 100 {VTEP} rt 65000:100 "
    "encap vxlan mcast-flags igmp-proxy"
)
SMET = f"evpn smet rd {VTEP}:100 etag 0 source * group 239.8.8.8 originator {VTEP} next-hop 10.0.0.5 rt 65000:100"  # noqa: E501


def show(lab: Lab, node: str, what: str) -> Any:
    out = lab.exec(
        node, ["evpnctl", "show", what, "--json", "--socket", "/run/evpn-agent/control.sock"], check=False
    )
    return json.loads(out.stdout) if out.returncode == 0 else None


def vteps(lab: Lab) -> set[str]:
    flood = show(lab, "leaf1", "flood") or []
    return {t["vtep"] for v in flood for t in v["vteps"]}


def receivers(lab: Lab, group: str) -> list[dict[str, Any]]:
    return [r for g in show(lab, "leaf1", "groups") or [] if g["group"] == group for r in g["receivers"]]


def test_injected_imet_and_smet_reach_the_agents_and_withdrawals_undo_them(
    evpn_lab: Lab, inject: Callable[[str], str]
) -> None:
    poll(
        lambda: (p := show(evpn_lab, "leaf1", "peers")) and all(x["state"] == "up" for x in p),
        60,
        what="leaf1's sessions, the injector's included",
    )
    assert inject(f"announce {IMET}") == "done"
    poll(lambda: VTEP in vteps(evpn_lab), 20, what="the injected VTEP in leaf1's flood list")
    fdb = evpn_lab.exec("leaf1", "bridge fdb show dev vxlan100").stdout
    assert f"00:00:00:00:00:00 dst {VTEP}" in fdb
    assert inject(f"announce {SMET}") == "done"
    poll(
        lambda: {"vtep": VTEP, "why": ["smet"]} in receivers(evpn_lab, "239.8.8.8"),
        20,
        what="the injected SMET as a receiver on leaf1",
    )
    assert inject(f"withdraw {SMET}") == "done"
    assert inject(f"withdraw {IMET}") == "done"
    poll(
        lambda: VTEP not in vteps(evpn_lab) and not receivers(evpn_lab, "239.8.8.8"),
        20,
        what="the withdrawals",
    )
    poll(
        lambda: f"dst {VTEP}" not in evpn_lab.exec("leaf1", "bridge fdb show dev vxlan100").stdout,
        20,
        what="the flood entry gone from leaf1's kernel",
    )


def test_a_malformed_route_is_refused_with_the_word_at_fault(evpn_lab: Lab) -> None:
    from agent.lab import inject as lab_inject

    out = lab_inject(evpn_lab, "inj", ["announce", "evpn", "imet", "rd", "nonsense"])
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error:")
