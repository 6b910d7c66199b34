# The two commands of the README:
#   make demo   set up, then run every example DAG end to end against the embedded sandbox
#   make test   set up, then run the test suite: the unit tier, then the deployment tier
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin

.PHONY: setup demo test test-unit test-deployment airflow lint bench clean

setup: $(VENV)/.installed $(VENV)/.bytecode

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "uv>=0.4"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c .ci/constraints.txt \
		"apache-airflow==$(AIRFLOW_VERSION)" -e ".[test,dev]"
	touch $@

# Compiled once here: uv installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is set nothing
# writes them later, so every interpreter (each test worker, each `airflow` subprocess) would compile
# all of Airflow from source again: ~5 s of CPU each.
$(VENV)/.bytecode: $(VENV)/.installed
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $@

demo: setup
	$(BIN)/python scripts/run_examples.py

test: test-unit test-deployment

# Four workers on any machine: the tests mostly wait on loopback I/O; each worker has its own
# Airflow home and database and its own sandbox port (tests/conftest.py).
test-unit: setup
	$(BIN)/python -m pytest -q -p no:randomly -n 4 --dist loadfile

# A real Airflow (api-server, scheduler, dag-processor, triggerer as processes) and the sandbox.
test-deployment: setup
	$(BIN)/python -m pytest -q -p no:randomly -m deployment tests/deployment

# The same deployment by hand, to click through the UI against the sandbox (Ctrl-C stops it).
airflow: setup
	$(BIN)/python tests/deployment/airflow_deployment.py

lint: setup
	$(BIN)/ruff check provider tests example_dags scripts benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c .ci/constraints.txt -e ".[bench]"
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	$(BIN)/python benchmarks/trigger_polling.py
	$(BIN)/python benchmarks/triggerer_scale.py

clean:
	rm -rf $(VENV) build *.egg-info provider/*.egg-info
