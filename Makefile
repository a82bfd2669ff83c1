# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment .venv and installs what it needs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,beam,scann]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tfrec-xcat data inspect
	$(BIN)/tfrec-xcat run --out runs/demo
	$(BIN)/tfrec-xcat train --out runs/demo-train
	$(BIN)/tfrec-xcat export --run runs/demo-train --out saved_models
	# serve on free ports of its own and ask only that server (8501 may be someone else's): tools/demo_recommend.py
	$(BIN)/python tools/demo_recommend.py --models saved_models -- \
		--user new-shopper --history FOO00001,FOO00007,FOO00042 --k 10
	@echo 'report: runs/demo/report.html'

# tests/test_report.py renders report.html in headless Chromium (Debian's `chromium` package). As root with apt
# (CI, the project's machines) it is installed once here; anywhere else, or if apt fails, that one test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo 'installing chromium for the report test (apt-get)'; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >/dev/null 2>&1 \
	      || echo 'could not install chromium: the headless-browser report test will be skipped'; \
	  else echo 'no chromium (apt-get install chromium): the headless-browser report test will be skipped'; fi; }

test: $(STAMP) browser
	$(BIN)/ruff check tfrec_xcat tests pipelines tools
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check tfrec_xcat tests pipelines tools
	$(BIN)/ruff format --check tfrec_xcat tests pipelines tools

clean:
	rm -rf $(VENV) runs .pytest_cache
