# The two commands a newcomer needs: `make run` and `make test`.
# Each creates the virtualenv and builds the compiled parts on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXT    := runmcp_fast/_router$(shell $(PYTHON) -c "import sysconfig;print(sysconfig.get_config_var('EXT_SUFFIX'))")

.PHONY: run test lint bench specs clean

run: $(EXT)
	$(VENV)/bin/runmcp-fast routes examples/petstore.yaml

test: $(EXT)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/mypy

bench: $(EXT)
	$(PY) -m pytest bench -p no:cacheprovider --benchmark-columns=median,min,max,rounds --benchmark-sort=name $(PYTEST_ARGS)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=77" "Cython>=3.0.10"
	$(PY) -m pip install -q --no-build-isolation -e '.[test,bench,lint]'
	touch $(STAMP)

# Rebuild the extension in place whenever its source changes.
$(EXT): $(STAMP) setup.py runmcp_fast/_router.pyx
	rm -f runmcp_fast/_router.c
	$(PY) setup.py -q build_ext --inplace
	touch $(EXT)

clean:
	rm -rf build $(VENV) runmcp_fast/_*.c runmcp_fast/*.so *.egg-info
