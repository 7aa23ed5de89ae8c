"""BGP intake throughput: ExaBGP JSON update lines -> typed events -> import policy -> store.

Feeds 20,000 lines shaped exactly like ExaBGP 5.0.15's (taken from the golden capture, one route
per UPDATE as IMET usually comes): 10,000 IMET (50 VNIs x 200 VTEPs) and 10,000 SMET. Baseline:
ExaBGP itself receives about 5,900 EVPN routes/s at one route per UPDATE (DESIGN.md §4); the
target is >= 50,000 routes/s so that ExaBGP stays the bottleneck. Last line: JSON result.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.intake import AUTO, ImportPolicy, Intake
from agent.store import Store
from bgp.exabgp_json import parse_line

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "exabgp-5.0.15-two-agents.jsonl"
EXABGP_ROUTES_PER_S = 5_900
VNIS, VTEPS = 50, 200


def templates() -> tuple[str, str]:
    imet = smet = ""
    for line in GOLDEN.read_text().splitlines():
        if '"code": 3' in line and "announce" in line:
            imet = line
        elif '"code": 6' in line and "announce" in line and "EF010101" in line:
            smet = line
    return imet, smet


def make_lines() -> list[str]:
    imet_t, smet_t = templates()
    old_imet_raw = "031100010A000001006400000000200A000001"
    old_smet_raw = "061800010A0000010064000000000020EF010101200A00000102"
    lines: list[str] = []
    for v in range(VNIS):
        vni = 100 + v
        for t in range(VTEPS):
            vtep = IPv4Address(f"10.1.{t // 250}.{1 + t % 250}")  # the same VTEPs serve every VNI
            rd = IPv4Address(int(vtep)).packed.hex().upper() + f"{vni:04X}"
            imet_raw = f"0311{'0001'}{rd}00000000" + "20" + vtep.packed.hex().upper()
            line = imet_t.replace(old_imet_raw, imet_raw)
            line = line.replace('"target:65000:100"', f'"target:65000:{vni}"')
            line = line.replace(
                "842122827661412",
                str(
                    int.from_bytes(bytes([0, 2]) + (65000).to_bytes(2, "big") + vni.to_bytes(4, "big"), "big")
                ),
            )
            line = line.replace("(100):10.0.0.1", f"({vni}):{vtep}")
            lines.append(line)
            group = IPv4Address(0xEF010000 + t)
            smet_raw = (
                f"0618{'0001'}{rd}00000000"
                + "00"
                + "20"
                + group.packed.hex().upper()
                + "20"
                + vtep.packed.hex().upper()
                + "02"
            )
            sline = smet_t.replace(old_smet_raw, smet_raw)
            sline = sline.replace(
                "842122827661412",
                str(
                    int.from_bytes(bytes([0, 2]) + (65000).to_bytes(2, "big") + vni.to_bytes(4, "big"), "big")
                ),
            )
            lines.append(sline)
    return lines


def run_once(lines: list[str]) -> tuple[float, Store, Intake]:
    store = Store(own_vteps=[IPv4Address("10.255.255.1")])
    intake = Intake(store, ImportPolicy({100 + v: AUTO for v in range(VNIS)}))
    gc.collect()
    start = time.perf_counter()
    for line in lines:
        for event in parse_line(line):
            intake.apply(event, 0.0)
    return time.perf_counter() - start, store, intake


def plot(result: dict[str, Any], out: Path) -> None:
    """Routes per second: the agent's intake against the json.loads floor and ExaBGP, target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = 50_000
    routes, rate = result["routes"], result["routes_per_s"]
    exabgp = result["exabgp_routes_per_s"]
    json_rate = routes / result["json_loads_s"]
    rows = [
        (
            f"json.loads of the same lines alone\n({result['json_loads_s']:.3f} s, best of 5)",
            json_rate,
            "tab:gray",
            f" {json_rate:,.0f}/s (the floor in time)",
        ),
        (
            f"agent: parse + import + store\n({result['median_s']:.3f} s, median of 5)",
            rate,
            "tab:blue",
            f" {rate:,.0f}/s = {result['ratio_vs_exabgp']:.1f}x ExaBGP;"
            f" json.loads is {result['json_loads_s'] / result['median_s']:.0%} of this time",
        ),
        (
            "ExaBGP 5.0.15 receiving\n(one route per UPDATE)",
            exabgp,
            "tab:orange",
            f" ~{exabgp:,}/s",
        ),
    ]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color=[r[2] for r in rows])
    for y, (_label, value, _color, note) in enumerate(rows):
        ax.annotate(note, (value, y), va="center", fontsize=9)
    ax.axvline(target, color="tab:red", linestyle="--", label=f"target: >= {target:,} routes/s")
    ax.invert_yaxis()
    ax.set_xlim(0, max(json_rate, target) * 1.35)
    ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:,.0f}")
    ax.set_xlabel("EVPN routes per second (higher is better)")
    ax.set_title(f"BGP intake: {routes:,} ExaBGP 5.0.15 JSON lines (IMET + SMET) through to the store")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    lines = make_lines()
    json_only = []
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for line in lines:
            json.loads(line)
        json_only.append(time.perf_counter() - t0)
        elapsed, store, intake = run_once(lines)
        runs.append(elapsed)
    assert store.path_count() == len(lines), (store.path_count(), dict(intake.counters))
    assert len(store.flood_list(100)) == VTEPS
    best, median = min(runs), statistics.median(runs)
    rate = len(lines) / median
    print(f"lines: {len(lines)} ({len(lines) // 2} IMET + {len(lines) // 2} SMET, one route per UPDATE)")
    print(f"json.loads alone: {min(json_only):.3f} s best")
    print(f"parse + import + store: best {best:.3f} s, median {median:.3f} s over {len(runs)} runs")
    print(
        f"routes/s (median): {rate:,.0f}; ExaBGP receives ~{EXABGP_ROUTES_PER_S:,}/s"
        f" -> {rate / EXABGP_ROUTES_PER_S:.1f}x headroom"
    )
    print(
        json.dumps(
            {
                "routes_per_s": round(rate),
                "routes": len(lines),
                "median_s": round(median, 4),
                "json_loads_s": round(min(json_only), 4),
                "exabgp_routes_per_s": EXABGP_ROUTES_PER_S,
                "ratio_vs_exabgp": round(rate / EXABGP_ROUTES_PER_S, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
