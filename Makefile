# The README's commands. Every target that runs code first runs the idempotent setup step.
.PHONY: setup test lint typecheck unit netns bench clean demo

VENV := .venv/bin
PYTEST_ARGS ?=

setup:
	@bash scripts/setup.sh

lint: setup
	$(VENV)/ruff check agent bgp replication ipmr tests bench scripts

typecheck: setup
	$(VENV)/mypy

test: setup lint typecheck
	$(VENV)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: setup
	$(VENV)/python -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

netns: setup
	$(VENV)/python -m pytest -q -p no:cacheprovider tests/netns $(PYTEST_ARGS)

BENCHES := bgp_intake replication ipmr fuzz convergence smet_scale restart maxvifs memory

# Each benchmark's output goes to bench/results/NAME.txt (its last line is the JSON result),
# then bench/plot.py draws docs/img/NAME.png from it (docs/benchmarks.md).
bench: setup
	@mkdir -p bench/results
	@for b in $(BENCHES); do \
	  echo "== bench/$$b.py"; \
	  $(VENV)/python bench/$$b.py > bench/results/$$b.txt || { tail -20 bench/results/$$b.txt; exit 1; }; \
	  tail -n 25 bench/results/$$b.txt | head -n 24; \
	done
	$(VENV)/python bench/plot.py bench/results docs/img

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis

demo: setup
	$(VENV)/python scripts/demo.py
