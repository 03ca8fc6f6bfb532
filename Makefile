# flowkeeper: `make demo` runs the main job, `make test` runs every check CI runs.
VENV := .venv/bin

.PHONY: deps demo test lint typecheck unit lab-test bench clean

deps:
	./scripts/install-deps.sh

demo: deps
	$(VENV)/flowkeeper demo

lint: deps
	$(VENV)/ruff check src tests
	$(VENV)/ruff format --check src tests

typecheck: deps
	$(VENV)/mypy

unit: deps
	$(VENV)/pytest -q tests/unit

test: deps lint typecheck
	$(VENV)/pytest -q tests

bench: deps
	$(VENV)/flowkeeper bench openflow

clean:
	rm -rf .venv build *.egg-info .mypy_cache .ruff_cache .pytest_cache
