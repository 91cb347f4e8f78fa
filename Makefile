# The two commands of the README:  `make demo`  and  `make test`.
# Both set up what they need (a venv with the project installed, the Kafka jars)
# and are safe to run again.

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: demo up down test lint setup clean faults-report

setup: $(STAMP)

# Reinstall only when the dependencies changed.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the project and its test tools into $(VENV)"
	@$(VENV)/bin/pip install --disable-pip-version-check --progress-bar on -q --upgrade pip
	@$(VENV)/bin/pip install --disable-pip-version-check --progress-bar on -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/meter demo --keep-running $(ARGS)

# The stack in the background (`meter up`), and stopping it (`meter down`).
up: $(STAMP)
	$(VENV)/bin/meter up $(ARGS)

down: $(STAMP)
	$(VENV)/bin/meter down

# pytest exits 5 when it collected nothing: that is a failure here, said out loud.
test: $(STAMP)
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "FAILED: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy groundwork meter deploy schemas streams sinks alerting dashboard tests bench

clean:
	rm -rf $(VENV) .meter .pytest_cache .mypy_cache .ruff_cache

# The fault suite's result tables in one file (needs a broker: METER_KAFKA_BOOTSTRAP, or
# the tests start their own).
faults-report: $(STAMP)
	@rm -f bench/results/faults_report.txt
	METER_FAULT_REPORT=$(CURDIR)/bench/results/faults_report.txt $(VENV)/bin/pytest tests/faults tests/streams/test_every_quota.py -q $(PYTEST_ARGS)
