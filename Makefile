# Two commands on a fresh clone:  `make demo` (set up + the main job)  and  `make test` (set up + all tests).
# TORCH is the torch requirement pip installs first, before the project, so pip never swaps it for
# another build. CPU-only users elsewhere: make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# pytest-xdist workers: one per core of a 2-core CI machine (make test TEST_WORKERS=0 runs in one process)
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.workbench-installed

.PHONY: setup demo test lab browser-deps postgres-deps wheelhouse clean

$(STAMP): pyproject.toml
	@echo "==> [1/4] a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] pip itself, up to date"
	$(BIN)/python -m pip install -q --upgrade pip
	@echo "==> [3/4] $(TORCH), first, so the project's install keeps this build (the CPU wheel: about 200 MB)"
	$(BIN)/python -m pip install -q $(TORCH)
	@echo "==> [4/4] workbench and its tools: numpy, pandas, matplotlib, scikit-learn, JupyterLab, ipywidgets, papermill, ONNX Runtime, Playwright (a few minutes)"
	$(BIN)/python -m pip install -q -e ".[dev]" $(TORCH)
	@# JupyterLab's own defaults for this environment: no news pop-up, no update check.
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/workbench tour

# The browser test drives Debian's chromium; install it when it is missing and we can.
browser-deps:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); } || \
	  echo "chromium not installed: the browser test will be skipped"

# The search-workers test starts a throwaway PostgreSQL server (initdb, pg_ctl); install Debian's when missing and we can.
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null)); } || \
	  echo "postgresql not installed: the PostgreSQL search test will be skipped"

test: setup browser-deps postgres-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Everything a workshop laptop installs, as files to copy (USB stick, shared drive) with a checkout, for an
# offline install from inside that checkout (setuptools is there to build the editable install):
#   python3 -m venv .venv && .venv/bin/pip install --no-index --find-links wheelhouse $(TORCH) -e ".[workshop]"
# Build it on a machine with the laptops' OS, CPU architecture and Python version.
wheelhouse: setup
	$(BIN)/python -m pip download -q -d wheelhouse $(TORCH) ".[workshop]" "setuptools>=77"
	@echo "wheelhouse/: $$(ls wheelhouse | wc -l) files, $$(du -sh wheelhouse | cut -f1)"

lab: setup
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs
