# The two commands a newcomer needs: `make run` and `make test`.
# Each creates the virtualenv and builds the compiled parts on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUFFIX := $(shell $(PYTHON) -c "import sysconfig;print(sysconfig.get_config_var('EXT_SUFFIX'))")
EXT    := runmcp_fast/_router$(SUFFIX) runmcp_fast/_dataplane$(SUFFIX) runmcp_fast/_jsonkeys$(SUFFIX) \
	runmcp_fast/_jsonscan$(SUFFIX) runmcp_fast/_fastcheck$(SUFFIX) runmcp_fast/plugins/_steps$(SUFFIX) \
	runmcp_fast/mcp/_envelope$(SUFFIX)

.PHONY: run test lint bench specs clean

run: $(EXT)
	$(PY) examples/run_demo.py

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
	$(PY) -m pip install -q --no-build-isolation -e '.[test,bench,lint,demo]'
	touch $(STAMP)

# Rebuild the extensions in place whenever a source changes (one build makes all).
$(EXT) &: $(STAMP) setup.py runmcp_fast/_router.pyx runmcp_fast/_dataplane.pyx runmcp_fast/_jsonkeys.pyx \
		runmcp_fast/_jsonkeys.pxd runmcp_fast/_jsonscan.pyx runmcp_fast/_fastcheck.pyx runmcp_fast/_dataplane.pxd \
		runmcp_fast/_fastcheck.pxd runmcp_fast/_router.pxd runmcp_fast/_pathscan.h runmcp_fast/_jsonstr.h \
		$(wildcard runmcp_fast/dataplane/*.pxd runmcp_fast/dataplane/*.pxi) \
		runmcp_fast/plugins/_steps.pyx $(wildcard runmcp_fast/plugins/steps/*.pxi) \
		runmcp_fast/mcp/_envelope.pyx runmcp_fast/_tls.pyx \
		$(wildcard third_party/llhttp/src/*.c third_party/llhttp/include/*.h)
	rm -f runmcp_fast/_router.c runmcp_fast/_dataplane.c runmcp_fast/_jsonkeys.c runmcp_fast/_jsonscan.c \
		runmcp_fast/_fastcheck.c runmcp_fast/plugins/_steps.c runmcp_fast/mcp/_envelope.c runmcp_fast/_tls.c
	$(PY) setup.py -q build_ext --inplace
	touch $(EXT)

clean:
	rm -rf build $(VENV) runmcp_fast/_*.c runmcp_fast/*.so runmcp_fast/plugins/_*.c \
		runmcp_fast/plugins/*.so runmcp_fast/mcp/_*.c runmcp_fast/mcp/*.so *.egg-info

# End-to-end load benchmark against nginx, haproxy and an aiohttp proxy (by hand,
# not in CI; installs nginx/haproxy/wrk with apt-get when missing). See bench/load/README.md.
.PHONY: bench-load
bench-load: $(EXT)
	$(PY) bench/load/run.py $(LOAD_ARGS)

# Live reload benchmark: snapshot build cost for 10/100/1,000 services, and request
# latency while services change through the admin API (by hand, not in CI; ~80 s).
# See bench/reload/README.md.
.PHONY: bench-reload
bench-reload: $(EXT)
	$(PY) bench/reload/run.py $(RELOAD_ARGS)

# Contract validation: decode + validate against jsonschema-rs, fastjsonschema,
# jsonschema and pydantic (with a breakdown of our time), and validation on vs
# off end to end under wrk. By hand, not in CI: see bench/validation/README.md.
.PHONY: bench-validation bench-validation-load
bench-validation: $(EXT)
	$(PY) bench/validation/run.py $(VALIDATION_ARGS)
bench-validation-load: $(EXT)
	$(PY) bench/validation/load.py $(VALIDATION_LOAD_ARGS)

# MCP proxy: tools/call round trips and added latency against FastMCP's proxy and
# ContextForge (their venvs under .cache/bench-venvs), and memory per idle SSE
# stream (by hand, not in CI). See bench/mcp/README.md.
.PHONY: bench-mcp
bench-mcp: $(EXT)
	$(PY) bench/mcp/run.py $(MCP_ARGS)

# Plugins' cost per request: no plugins / key-auth / jwt-auth / four edge plugins /
# a Python plugin, 1 and 100 routes, against nginx (by hand, not in CI).
# See bench/plugins/README.md.
.PHONY: bench-plugins
bench-plugins: $(EXT)
	$(PY) bench/plugins/run.py $(PLUGINS_ARGS)

# Upstream resilience: p99 and req/s through 3 replicas, all healthy vs one answering
# 500 / refusing connections / blackholed (by hand, not in CI). See bench/resilience/README.md.
.PHONY: bench-resilience
bench-resilience: $(EXT)
	$(PY) bench/resilience/run.py $(RESILIENCE_ARGS)

# JWT verification: PyJWT vs joserfc (RS256, ES256, EdDSA, HS256), the jwt-auth
# miss and its compiled cache hit; a few seconds. See docs/plugins/auth-tokens.md.
.PHONY: bench-jwt
bench-jwt: $(EXT)
	$(PY) bench/jwt/verify.py $(JWT_ARGS)

# Config store: snapshot apply time from an etcd event for 10/100/1,000 services, and
# an admin write's (by hand, not in CI; needs etcd). See bench/cluster/README.md.
.PHONY: bench-cluster
bench-cluster: $(EXT)
	$(PY) bench/cluster/apply.py $(CLUSTER_ARGS)
