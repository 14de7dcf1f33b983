# The two commands the README promises. Both set everything up from a fresh clone first.
.PHONY: demo test lint bench

# Search + train the digits sample locally (no cluster) and write the report to runs/digits/.
demo:
	scripts/bootstrap.sh
	.venv/bin/denas run deploy/samples/digits.yaml --out runs/digits

# Lint and run every test (unit, engine, operator end-to-end against the Kubernetes emulator).
test:
	scripts/bootstrap.sh --test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m pytest -q -p no:cacheprovider

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
