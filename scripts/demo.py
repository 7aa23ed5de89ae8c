"""`make demo`: bring the reference fabric up on network namespaces, prove that multicast
reaches exactly the interested leaves, print a report, tear the fabric down.

Exit status 0 only if every host received what it should: h2 (behind agent leaf2, joined)
and h4 (behind FRR leaf4, joined; FRR takes no part in SMET, so it gets all multicast) get
the streams from h1 and from the routed source, and leaf3 (no receiver) gets no copy at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.lab import Lab  # noqa: E402

TOPOLOGY = ROOT / "containerlab" / "fabric.clab.yml"
PROBE = [sys.executable, str(ROOT / "scripts" / "demo_probe.py")]
GROUP = "239.1.1.1"
COUNT = 100
VTEPS = {"leaf1": "10.0.0.1", "leaf2": "10.0.0.2", "leaf3": "10.0.0.3", "leaf4": "10.0.0.4"}
HOSTS = {"h1": "192.168.100.1", "h2": "192.168.100.2", "h3": "192.168.100.3", "h4": "192.168.100.4"}


def log(text: str) -> None:
    print(text, flush=True)


def show(lab: Lab, node: str, what: str) -> Any:
    out = lab.exec(
        node, ["evpnctl", "show", what, "--json", "--socket", "/run/evpn-agent/control.sock"], check=False
    )
    return json.loads(out.stdout) if out.returncode == 0 else None


def wait_for(what: str, fn: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)  # polling with a deadline


def converged(lab: Lab) -> bool:
    for leaf in ("leaf1", "leaf2", "leaf3"):
        peers = show(lab, leaf, "peers")
        flood = show(lab, leaf, "flood")
        if not peers or any(p["state"] != "up" for p in peers):
            return False
        if not flood or len(flood[0]["vteps"]) != 3:
            return False
    return True


def receivers_known(lab: Lab) -> bool:
    groups = show(lab, "leaf1", "groups") or []
    return any(
        g["group"] == GROUP and any(r["vtep"] == VTEPS["leaf2"] for r in g["receivers"]) for g in groups
    )


def run(lab: Lab) -> int:
    started = time.monotonic()
    log("== bringing the fabric up (containerlab/fabric.clab.yml on network namespaces)")
    lab.up()
    wait_for("BGP to converge (all sessions up, every flood list complete)", lambda: converged(lab), 90)
    log(f"   converged after {time.monotonic() - started:.1f}s")

    seconds = COUNT * 0.01 * 2 + 8
    probes = {
        "h2": lab.popen(
            "h2", [*PROBE, "receive", GROUP, "eth1", str(seconds)], stdout=subprocess.PIPE, text=True
        ),
        "h3": lab.popen(
            "h3", [*PROBE, "receive", "239.9.9.9", "eth1", str(seconds)], stdout=subprocess.PIPE, text=True
        ),
        "h4": lab.popen(
            "h4", [*PROBE, "receive", GROUP, "eth1", str(seconds)], stdout=subprocess.PIPE, text=True
        ),
    }
    captures = {
        leaf: lab.popen(
            leaf,
            [*PROBE, "vxlan", "eth1", GROUP, str(seconds), "out" if leaf == "leaf1" else "in"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for leaf in ("leaf1", "leaf2", "leaf3", "leaf4")
    }
    log("== h2 and h4 join 239.1.1.1; h3 does not")
    wait_for("leaf1 to learn h2's join (SMET from leaf2)", lambda: receivers_known(lab), 30)
    time.sleep(1.0)  # let the capture sockets open before the first packet (not synchronisation of state)
    log(f"== h1 sends {COUNT} packets to {GROUP}; the routed source behind leaf1 sends {COUNT} more")
    senders = [
        lab.popen("h1", [*PROBE, "send", GROUP, HOSTS["h1"], str(COUNT)], stdout=subprocess.PIPE, text=True),
        lab.popen("src", [*PROBE, "send", GROUP, "10.50.0.2", str(COUNT)], stdout=subprocess.PIPE, text=True),
    ]
    for proc in senders:
        proc.wait()
    broadcast = lab.exec("h1", ["ping", "-c", "1", "-W", "2", HOSTS["h3"]], check=False).returncode == 0
    got = {h: json.loads(p.communicate()[0] or "{}").get("received", -1) for h, p in probes.items()}
    copies = {leaf: json.loads(p.communicate()[0] or "{}") for leaf, p in captures.items()}

    log("")
    log("== what the agents see")
    for leaf in ("leaf1", "leaf2", "leaf3"):
        flood = show(lab, leaf, "flood") or []
        vteps = ", ".join(
            f"{t['vtep']}{'' if t['igmp_proxy'] else ' (no IGMP proxy: gets all)'}"
            for v in flood
            for t in v["vteps"]
        )
        log(f"   {leaf}: flood list [{vteps}]")
    for g in show(lab, "leaf1", "groups") or []:
        who = ", ".join(f"{r['vtep']} ({'+'.join(r['why'])})" for r in g["receivers"])
        log(f"   leaf1: ({g['source']}, {g['group']}) -> {who}  fan-out {g['fanout']} of {g['flood']}")
    total = 2 * COUNT
    log("")
    log("== what arrived")
    log(f"   h2 (joined, agent leaf2):   {got['h2']:4d} of {total}")
    log(f"   h4 (joined, FRR leaf4):     {got['h4']:4d} of {total}")
    log(f"   h3 (not joined, leaf3):     {got['h3']:4d} (any group)")
    log(
        f"   VXLAN copies of {GROUP} received: leaf2 {copies['leaf2'].get('copies')}, "
        f"leaf3 {copies['leaf3'].get('copies')}, leaf4 {copies['leaf4'].get('copies')}"
    )
    sent_by_leaf1 = copies["leaf1"].get("copies", 0)
    log(f"   leaf1 sent {sent_by_leaf1} copies; flooding to every VTEP would have sent {3 * total}")
    log(f"   broadcast (ARP h1 -> h3 across the fabric): {'ok' if broadcast else 'FAILED'}")
    ok = got["h2"] == total and got["h4"] == total and copies["leaf3"].get("copies") == 0 and broadcast
    log("")
    log(
        f"== {'PASS' if ok else 'FAIL'}: only the interested leaves received the group "
        f"({time.monotonic() - started:.0f}s)"
    )
    return 0 if ok else 1


def main() -> int:
    lab = Lab(TOPOLOGY)
    try:
        return run(lab)
    finally:
        log("== tearing the fabric down")
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
