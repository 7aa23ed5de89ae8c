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

bench: setup
	$(VENV)/python bench/bgp_intake.py
	$(VENV)/python bench/replication.py
	$(VENV)/python bench/ipmr.py

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis

demo: setup
	$(VENV)/python scripts/demo.py
