"""The short version of bench/fuzz.py (issue 7): the same targets, generators and oracle, run with
a few thousand inputs each so the suite stays fast. bench/fuzz.py runs 100,000+ per target.

The targets come from ``bench.fuzz.targets`` and run through ``bench.fuzz.run_target``, which
raises ``FuzzError`` (input and traceback) on any exception but the documented ones: only the EVPN
decoders may raise, and only ``bgp.evpn.CodecError``. On top of the script's peak-RSS check, each
target runs under tracemalloc: no input may make a parser allocate without bound (a length field
turned into a giant buffer or list), and nothing may stay allocated after the run.

The seed is fixed so a failure replays (``EVPN_FUZZ_SEED`` picks another; the failure message
names the seed and the input).
"""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import fuzz
from bgp.evpn import CodecError

ROOT = Path(__file__).parents[2]
SEED = int(os.environ.get("EVPN_FUZZ_SEED", "20260607"))
INPUTS = 15_000  # per target; ~5 s for all seven targets under tracemalloc
PEAK_LIMIT_MB = 16.0  # traced allocation peak while a target runs
RETAINED_LIMIT_MB = 4.0  # still allocated after the run (bounded caches included)
# Which parser family each target covers, as issue 7 names them.
FAMILIES = {
    "exabgp_json.parse_line": "ExaBGP JSON reader",
    "evpn.decode_nlri": "EVPN codec",
    "evpn.decode_hex": "EVPN codec",
    "update.decode_update": "ExaBGP JSON reader (packets: the UPDATE body)",
    "netlink iter/ack/fdb/mdb": "netlink FDB/MDB codec",
    "igmp.parse_igmp": "IGMP/MLD parser",
    "igmp.parse_mld": "IGMP/MLD parser",
    "structs.parse_igmpmsg/mrt6msg": "IGMP/MLD parser (mroute upcalls)",
}
ALLOWED = {"evpn.decode_nlri": (CodecError,), "evpn.decode_hex": (CodecError,)}


def _target(name: str) -> fuzz.Target:
    # Each test builds the generators from the same seed, so one target's run does not depend on
    # which other targets ran before it (pytest -k, xdist).
    by_name = {t.name: t for t in fuzz.targets(random.Random(SEED))}
    return by_name[name]


def _hex(data: bytes | str) -> str:
    return (data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data).hex()


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def test_bench_fuzz_covers_the_four_parser_families_with_the_documented_error_types() -> None:
    """bench.fuzz's target list is exactly the one this test runs, each target allows only the
    documented exception (CodecError for the EVPN decoders, nothing elsewhere)."""
    targets = fuzz.targets(random.Random(SEED))
    assert [t.name for t in targets] == list(FAMILIES)
    for t in targets:
        assert t.allowed == ALLOWED.get(t.name, ()), t.name


@pytest.mark.parametrize("name", list(FAMILIES))
def test_short_fuzz_run_raises_nothing_undocumented_and_memory_stays_bounded(name: str, traced: None) -> None:
    """INPUTS generated inputs through one bench.fuzz target: no exception escapes but the documented
    ones, the allocation peak and what stays allocated are bounded, and the fuzzing reaches past
    the first sanity check (some inputs parse)."""
    target = _target(name)
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    began = time.perf_counter()
    try:
        row = fuzz.run_target(target, INPUTS)
    except fuzz.FuzzError as failure:
        pytest.fail(
            f"{failure.target} raised on input {_hex(failure.data)} "
            f"(replay: EVPN_FUZZ_SEED={SEED}, or bench/fuzz.py --seed {SEED}):\n{failure.trace}"
        )
    elapsed = time.perf_counter() - began
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    peak_mb, retained_mb = (peak - base) / 2**20, (current - base) / 2**20
    assert row["inputs"] == INPUTS and row["exceptions"] == 0
    assert row["bounded_memory"], row  # the script's own check: peak RSS growth under 50 MB
    assert peak_mb < PEAK_LIMIT_MB, f"{name}: allocation peak {peak_mb:.1f} MB"
    assert retained_mb < RETAINED_LIMIT_MB, f"{name}: {retained_mb:.1f} MB still allocated after the run"
    assert row["accepted"] > 0, f"{name}: no input parsed, the fuzzing never got past the first check"
    assert elapsed < 10, f"{name}: {elapsed:.1f}s for {INPUTS} inputs"


def test_run_target_reports_a_crashing_parser_with_its_input_and_traceback() -> None:
    """The oracle works: an exception that is not allowed stops the run with a FuzzError naming
    the target, the input and the traceback (so a real parser crash cannot go unnoticed), while
    an allowed one is counted as a refusal."""
    inputs = iter([b"ok", b"ok", b"\xff boom"])

    def parser(data: bytes) -> bool:
        if data.startswith(b"\xff"):
            raise IndexError("parser bug")
        return True

    with pytest.raises(fuzz.FuzzError) as caught:
        fuzz.run_target(fuzz.Target("demo", lambda: next(inputs), parser), 3)
    assert caught.value.target == "demo" and caught.value.data == b"\xff boom"
    assert "IndexError: parser bug" in caught.value.trace

    def refuses(_data: bytes) -> bool:
        raise CodecError("refused")

    row = fuzz.run_target(fuzz.Target("demo", lambda: b"x", refuses, (CodecError,)), 5)
    assert row["exceptions"] == 0 and row["accepted"] == 0


def test_bench_fuzz_script_runs_and_ends_with_its_json_result_line() -> None:
    """`bench/fuzz.py --inputs N --seed S` (the full benchmark, here tiny) exits 0 and prints its
    result as one JSON object on its last line, with every target bounded and exception-free."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--inputs", "300", "--seed", str(SEED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["seed"] == SEED
    assert [r["target"] for r in result["targets"]] == list(FAMILIES)
    assert all(r["exceptions"] == 0 and r["bounded_memory"] and r["inputs"] == 300 for r in result["targets"])
