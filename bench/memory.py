"""Memory: resident size of the agent holding 100,000 (peer, route) paths; target under 300 MB.

Runs as root. 4 peers (route reflectors 10.255.0.1-4) each send 25,000 routes as ExaBGP 5.0.15
JSON UPDATE lines, one route per UPDATE, made from the golden capture's lines the way
``bench/bgp_intake.py`` makes them: per peer 5,000 IMET (50 VNIs x 100 VTEPs of its own,
with the capture's Multicast Flags: IGMP proxy, no MLD proxy) and 20,000 SMET (each VTEP
joins 4 of 400 groups per VNI, so each group has one receiver behind every peer). The paths
are distinct: 100,000 facts, 400 VTEPs and 400 groups per VNI. The lines are piped into a
fresh Python process, as ExaBGP's reach the agent, and never held in it. Measured there from
/proc/self/status (VmRSS, VmHWM), in MB of 2^20 bytes:

- ``store`` process: the interpreter, then after importing ``bgp.exabgp_json``, ``agent.intake``
  and ``agent.store``, then after the lines went through ``parse_line`` and ``Intake.apply``
  into the ``Store``: the store's own cost and its bytes per path.
- ``agent`` process, as ``evpn-agent run`` is before its loop: ``import agent.daemon``, an
  ``Agent`` built from a config (50 VNIs, 4 neighbors; its reconciler, intake and store), the
  lines through the daemon's own path (``agent.bgp`` hands each line to ``parse_line``, the
  intake and ``Agent._changed``), then one replication pass as the daemon runs it (a
  ``StoreSnapshot``, the reconciler) against 50 real VXLAN devices in a namespace: 20,000 flood
  entries and 100,050 MDB remotes written (80,000 group remotes; the IPv6 catch-all of each VNI
  lists its 400 VTEPs, which want all IPv6 multicast for lack of the MLD proxy flag). VmHWM
  then includes the pass's peak.
- ``evpn-agent run`` itself, idle (no BGP peer answers, so no paths): the real daemon with its
  loop, control socket and ExaBGP child, in a namespace of its own with the same 50 devices,
  measured once its first replication pass is done. Feeding it 100,000 routes would take a BGP
  speaker sending them through ExaBGP (about 5,900 routes/s), so the ``agent`` process stands
  in for it; its idle RSS shows how close the stand-in is.

PASS when the ``agent`` process's peak (VmHWM, the pass included) is under 300 MB. The
namespaces are removed in a ``finally`` even on failure. Last line: JSON result.

Module-level imports are the standard library only: the measured processes import this module
to run ``child``, and nothing else may be counted before their own imports.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from bench.common import Lab

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: ``bench.common`` and the agent's packages
PEERS, VNIS, VTEPS, GROUPS, GROUPS_PER_VTEP = 4, 50, 100, 400, 4
FIRST_VNI = 100
LOCAL = "10.0.0.2"  # the golden capture's local address: the agent's own VTEP
PATHS = PEERS * VNIS * VTEPS * (1 + GROUPS_PER_VTEP)
TARGET_MB = 300.0
AGENT_START_S = 30.0  # deadline for ``evpn-agent run`` to answer with a finished first pass
FLOOD = PEERS * VNIS * VTEPS
# Every group has one receiver per peer; per VNI the 0.0.0.0 catch-all lists the unspecified
# address, the :: one every VTEP (no MLD proxy flag on the IMETs).
MDB = VNIS * GROUPS * PEERS + VNIS * (1 + PEERS * VTEPS)


# --------------------------------------------------------------------------- measuring


def status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, MB."""
    return proc_status(os.getpid())


def proc_status(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def agent_config(workdir: Path) -> AgentConfig:
    """The leaf's config: the 50 VNIs (bridges brN, devices vxlanN) and the 4 peers."""
    from agent.config import parse_config

    return parse_config(
        {
            "router_id": LOCAL,
            "local_vtep": LOCAL,
            "asn": 65000,
            "neighbors": [{"address": f"10.255.0.{1 + p}", "asn": 65000} for p in range(PEERS)],
            "vnis": [{"vni": FIRST_VNI + v} for v in range(VNIS)],
            "workdir": str(workdir),
        }
    )


def child(mode: str, workdir: str) -> None:
    """The measured process (``mode`` store or agent): reads ExaBGP lines from stdin until EOF,
    prints its figures as one JSON line."""
    out: dict[str, Any] = {"mode": mode, "interpreter": status()}
    began = time.perf_counter()
    if mode == "store":
        from ipaddress import IPv4Address

        from agent.intake import AUTO, ImportPolicy, Intake
        from agent.store import Store
        from bgp.exabgp_json import parse_line

        out["imports"] = status()
        store = Store(own_vteps=[IPv4Address(LOCAL)])
        intake = Intake(store, ImportPolicy({FIRST_VNI + v: AUTO for v in range(VNIS)}))
        out["built"] = status()
        began = time.perf_counter()
        for line in sys.stdin:
            for event in parse_line(line.rstrip("\n")):
                intake.apply(event, 0.0)
        counters = dict(intake.counters)
    else:
        from agent.daemon import Agent
        from replication.model import StoreSnapshot

        out["imports"] = status()
        config = agent_config(Path(workdir))
        agent = Agent(config)
        out["built"] = status()
        store = agent.store
        handle = agent.bgp._handle  # the daemon's own line handler (BgpSide.run calls it)
        began = time.perf_counter()
        for line in sys.stdin:
            handle(line.rstrip("\n"))
        counters = dict(agent.intake.counters)
    out["load_s"] = time.perf_counter() - began
    gc.collect()
    out["loaded"] = status()
    out["paths"] = store.path_count()
    out["counters"] = counters
    out["rejected"] = dict(store.counters)
    if mode == "agent":
        vnis = [p.vni for p in config.vni_ports()]
        began = time.perf_counter()
        report = agent.reconciler.reconcile(StoreSnapshot.of(store, vnis))
        out["pass_s"] = time.perf_counter() - began
        out["pass"] = report.event()
        gc.collect()
        out["after_pass"] = status()
    out["end"] = status()
    print(json.dumps(out))


# --------------------------------------------------------------------------- the input


def peer_lines(peer: int) -> Iterator[str]:
    """One peer's 25,000 UPDATE lines: ``bench/bgp_intake.py``'s substitutions on the golden
    capture's IMET and SMET lines, with the peer, its VTEPs and the groups as parameters
    (``bgp_intake.make_lines`` has them fixed: one peer, 50 x 200)."""
    from ipaddress import IPv4Address

    from bench.bgp_intake import templates

    imet_t, smet_t = templates()
    old_imet_raw = "031100010A000001006400000000200A000001"
    old_smet_raw = "061800010A0000010064000000000020EF010101200A00000102"
    address = f'"peer": "10.255.0.{1 + peer}"'
    imet_t = imet_t.replace('"peer": "10.0.0.1"', address)
    smet_t = smet_t.replace('"peer": "10.0.0.1"', address)
    for v in range(VNIS):
        vni = FIRST_VNI + v
        rt_value = str(
            int.from_bytes(bytes([0, 2]) + (65000).to_bytes(2, "big") + vni.to_bytes(4, "big"), "big")
        )
        imet_v = imet_t.replace('"target:65000:100"', f'"target:65000:{vni}"').replace(
            "842122827661412", rt_value
        )
        smet_v = smet_t.replace('"target:65000:100"', f'"target:65000:{vni}"').replace(
            "842122827661412", rt_value
        )
        for t in range(VTEPS):
            vtep = IPv4Address(f"10.{1 + peer}.0.{1 + t}")
            vtep_hex = vtep.packed.hex().upper()
            rd = vtep_hex + f"{vni:04X}"
            line = imet_v.replace(old_imet_raw, f"03110001{rd}00000000" + "20" + vtep_hex)
            yield line.replace("(100):10.0.0.1", f"({vni}):{vtep}")
            for k in range(GROUPS_PER_VTEP):
                g = (GROUPS_PER_VTEP * t + k) % GROUPS
                group = IPv4Address(f"239.1.{g // 250}.{1 + g % 250}")
                raw = (
                    f"06180001{rd}00000000"
                    + "00"
                    + "20"
                    + group.packed.hex().upper()
                    + "20"
                    + vtep_hex
                    + "02"
                )
                yield smet_v.replace(old_smet_raw, raw)


def measured(mode: str, workdir: Path, tmp: Path) -> dict[str, Any]:
    """Run ``child(mode)`` in a fresh interpreter in the current namespace, piping every peer's
    lines into it; its JSON result."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.memory import child; "
        f"child({mode!r}, {str(workdir)!r})"
    )
    errors = tmp / f"{mode}.stderr"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdin is not None
        lines = 0
        for peer in range(PEERS):
            for line in peer_lines(peer):
                proc.stdin.write(line + "\n")
                lines += 1
        stdout, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} process failed ({proc.returncode}):\n{errors.read_text()[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["lines"] = lines
    return result


# --------------------------------------------------------------------------- evpn-agent run


def descendants(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            for child_pid in map(int, f.read().split()):
                out += [child_pid, *descendants(child_pid)]
    return out


def summary(sock: Path) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "show", "summary", "--json", "--socket", str(sock)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def idle_agent(tmp: Path) -> dict[str, Any]:
    """``evpn-agent run`` in the current namespace until its first replication pass is done:
    its RSS and its children's (ExaBGP)."""
    import yaml

    workdir = tmp / "evpn-agent"
    config = agent_config(workdir).model_dump(mode="json", by_alias=True)
    path = tmp / "leaf.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "evpn-agent.log"
    sock = workdir / "control.sock"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "run", "--config", str(path)],
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + AGENT_START_S
        state = None
        while time.monotonic() < deadline and proc.poll() is None:
            state = summary(sock) if sock.exists() else None
            if state is not None and (state.get("replication") or {}).get("mode"):
                break
            time.sleep(0.1)  # poll interval; the deadline bounds the wait
        else:
            raise RuntimeError(f"evpn-agent run did not come up:\n{log.read_text()[-3000:]}")
        own = proc_status(proc.pid)
        kids = [proc_status(pid) | {"cmd": cmdline(pid)} for pid in descendants(proc.pid)]
        return {"agent": own, "children": kids, "uptime_s": state["uptime"] if state else None}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmdline(pid: int) -> str:
    """What a child runs: the module after ``-m`` (ExaBGP is ``bgp.launcher``), else argv[0]."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
        if "-m" in argv[:-1]:
            return argv[argv.index("-m") + 1]
        return argv[0] if argv else "?"
    return "?"


# --------------------------------------------------------------------------- the run


def make_namespace(lab: Lab, suffix: str) -> str:
    from bench.common import build_vnis

    name = lab.add(suffix)
    build_vnis(name, range(FIRST_VNI, FIRST_VNI + VNIS), LOCAL)
    return name


def check(store: dict[str, Any], agent: dict[str, Any]) -> None:
    for r in (store, agent):
        if r["paths"] != PATHS or r["rejected"] or r["counters"].get("announce") != PATHS:
            raise RuntimeError(
                f"{r['mode']}: {r['paths']} paths, counters {r['counters']}, rejected {r['rejected']}"
            )
    report = agent["pass"]
    if (
        report["errors"]
        or report["failed"]
        or report["added"] != FLOOD + MDB
        or report["desired"] != FLOOD + MDB
    ):
        raise RuntimeError(f"replication pass: {report}, expected {FLOOD + MDB} entries added")


def main() -> None:
    from bench.common import PREFIX, Lab, inside, setup_run

    setup_run(__doc__, "(no profile: the measured processes are separate)")
    lab = Lab()
    wall = time.perf_counter()
    settled = {"before_s": 0.0, "after_s": 0.0}
    try:
        settled["before_s"] = lab.settle()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmpdir:
            tmp = Path(tmpdir)
            store = measured("store", tmp / "unused", tmp)
            with inside(make_namespace(lab, "a")):
                agent = measured("agent", tmp / "agent", tmp)
            with inside(make_namespace(lab, "r")):
                idle = idle_agent(tmp)
    finally:
        settled["after_s"] = lab.close()
    check(store, agent)
    report(store, agent, idle, time.perf_counter() - wall, settled)


def report(
    store: dict[str, Any], agent: dict[str, Any], idle: dict[str, Any], wall: float, settled: dict[str, float]
) -> None:
    per_path = (store["loaded"]["VmRSS"] - store["imports"]["VmRSS"]) * 2**20 / PATHS
    agent_per_path = (agent["loaded"]["VmRSS"] - agent["built"]["VmRSS"]) * 2**20 / PATHS
    peak = agent["end"]["VmHWM"]
    verdict = "PASS" if peak < TARGET_MB else "FAIL"
    exabgp = sum(k["VmRSS"] for k in idle["children"])
    print(
        f"{PATHS:,} paths: {PEERS} peers x {VNIS} VNIs x {VTEPS} VTEPs x (1 IMET + {GROUPS_PER_VTEP} SMET),"
        f" {store['lines']:,} ExaBGP JSON lines piped into each process"
    )
    print(f"{'VmRSS, MB':<58} {'store':>8} {'agent':>8}")
    for label, key in (
        ("interpreter", "interpreter"),
        ("after imports", "imports"),
        ("after building the store / Agent(config)", "built"),
        (f"after {PATHS:,} paths (gc.collect)", "loaded"),
    ):
        print(f"  {label:<56} {store[key]['VmRSS']:8.1f} {agent[key]['VmRSS']:8.1f}")
    print(
        f"  {f'after the replication pass ({FLOOD + MDB:,} entries written)':<56} {'':>8}"
        f" {agent['after_pass']['VmRSS']:8.1f}"
    )
    print(f"  {'peak (VmHWM)':<56} {store['end']['VmHWM']:8.1f} {peak:8.1f}")
    print(
        f"per path: {per_path:,.0f} bytes (store process), {agent_per_path:,.0f} bytes (agent process);"
        f" load {store['load_s']:.2f} s / {agent['load_s']:.2f} s ({PATHS / agent['load_s']:,.0f} lines/s"
        f" through the daemon's handler); pass {agent['pass_s']:.2f} s"
    )
    print(
        f"evpn-agent run, idle (no paths, first pass done after {idle['uptime_s']:.1f} s):"
        f" VmRSS {idle['agent']['VmRSS']:.1f} MB, VmHWM {idle['agent']['VmHWM']:.1f} MB;"
        f" its children {exabgp:.1f} MB more (ExaBGP = bgp.launcher: "
        + ", ".join(f"{k['cmd']} {k['VmRSS']:.1f}" for k in idle["children"])
        + ")"
        f" (agent process after Agent(config): {agent['built']['VmRSS']:.1f} MB)"
    )
    print(f"target: agent process peak < {TARGET_MB:.0f} MB: {peak:.1f} MB -> {verdict}")
    print(
        f"whole run: {wall:.1f} s, of which waiting for namespace tear-down"
        f" {settled['before_s']:.1f} s before and {settled['after_s']:.1f} s after"
    )
    out: dict[str, Any] = {
        "paths": PATHS,
        "target_mb": TARGET_MB,
        "verdict": verdict,
        "store_mb": {k: round(store[k]["VmRSS"], 1) for k in ("interpreter", "imports", "built", "loaded")},
        "agent_mb": {
            k: round(agent[k]["VmRSS"], 1)
            for k in ("interpreter", "imports", "built", "loaded", "after_pass")
        },
        "store_hwm_mb": round(store["end"]["VmHWM"], 1),
        "agent_hwm_mb": round(peak, 1),
        "bytes_per_path": round(per_path),
        "agent_bytes_per_path": round(agent_per_path),
        "idle_evpn_agent_mb": round(idle["agent"]["VmRSS"], 1),
        "idle_evpn_agent_hwm_mb": round(idle["agent"]["VmHWM"], 1),
        "idle_exabgp_mb": round(exabgp, 1),
        "load_s": round(agent["load_s"], 3),
        "pass_s": round(agent["pass_s"], 3),
    }
    print(json.dumps(out))


def plot(result: dict[str, Any], out: Path) -> None:
    """RSS at each stage of the two measured processes against the 300 MB target, with the idle
    ``evpn-agent run`` beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [
        ("interpreter", "interpreter"),
        ("imports", "imports"),
        ("store /\nAgent() built", "built"),
        (f"{result['paths']:,}\npaths loaded", "loaded"),
        ("after the\nreplication pass", "after_pass"),
        ("peak\n(VmHWM)", "hwm"),
    ]
    store = dict(result["store_mb"], hwm=result["store_hwm_mb"])
    agent = dict(result["agent_mb"], hwm=result["agent_hwm_mb"])
    xs = list(range(len(stages)))
    width = 0.38
    fig, ax = plt.subplots(figsize=(11, 5))
    for offset, values, label, colour in (
        (-width / 2, store, "store process (parse_line + intake + store)", "#9ecae1"),
        (width / 2, agent, "agent process (Agent, daemon's line handler, replication pass)", "#3182bd"),
    ):
        heights = [values.get(key, 0.0) for _label, key in stages]
        bars = ax.bar([x + offset for x in xs], heights, width, label=label, color=colour)
        for bar, h in zip(bars, heights, strict=True):
            if h:
                ax.annotate(
                    f"{h:.0f}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=8
                )
    ax.axhline(
        result["target_mb"], color="#de2d26", linestyle="--", label=f"target {result['target_mb']:.0f} MB"
    )
    ax.axhline(
        result["idle_evpn_agent_mb"],
        color="#636363",
        linestyle=":",
        label=f"evpn-agent run, idle: {result['idle_evpn_agent_mb']:.0f} MB"
        f" (+ ExaBGP {result['idle_exabgp_mb']:.0f} MB)",
    )
    ax.set_xticks(xs, [label for label, _key in stages])
    ax.set_ylabel("resident set size, MB (VmRSS; last group VmHWM)")
    ax.set_ylim(0, max(result["target_mb"], result["agent_hwm_mb"]) * 1.45)
    ax.set_title(
        f"Memory with {result['paths']:,} paths: {result['agent_bytes_per_path']:,} bytes/path in the agent,"
        f" peak {result['agent_hwm_mb']:.0f} MB -> {result['verdict']}"
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
