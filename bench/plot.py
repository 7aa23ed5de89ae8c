"""Draw each benchmark's PNG from its saved output: ``python bench/plot.py RESULTS_DIR OUT_DIR``.

``make bench`` saves what each ``bench/NAME.py`` prints as ``RESULTS_DIR/NAME.txt``; its last
line is the JSON result (DESIGN.md section 8). Each script draws its own figure (its ``plot``
function, which knows its JSON), so the pictures in docs/benchmarks.md come from the same run
as the tables, and can be redrawn without re-running a benchmark.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/plot.py RESULTS_DIR OUT_DIR", file=sys.stderr)
        return 2
    results, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for path in sorted(results.glob("*.txt")):
        module = importlib.import_module(f"bench.{path.stem}")
        draw = getattr(module, "plot", None)
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if draw is None or not lines:
            continue
        try:
            result = json.loads(lines[-1])
        except ValueError:
            print(f"{path}: the last line is not the JSON result; skipped", file=sys.stderr)
            continue
        target = out / f"{path.stem}.png"
        draw(result, target)
        print(f"{target}")
        drawn += 1
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
