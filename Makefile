# The two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two stamps: the demo needs only the package (RUNTIME); tests and lint add the dev tools (DEV).
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed-dev
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
REPO   := definitions

.PHONY: setup runtime redis-server java chromium data demo test lint proto bench bench-full bench-compiled bench-tools screenshots clean

# Everything for development: the package, the dev tools, redis-server, Java (Spark tests) and
# Chromium (the web console's browser tests).
setup: $(DEV) runtime java chromium

# What the package needs to run (the demo): no mypy, hypothesis, schemathesis or grpcio-tools.
runtime: $(RUNTIME) redis-server
	@# Bytecode for the package: environments with PYTHONDONTWRITEBYTECODE set would otherwise
	@# compile every module on each CLI start (~0.1 s). Stale files are recompiled in memory.
	@$(BIN)/python -m compileall -q featurestore >/dev/null

# The virtual environment with the package, rebuilt when the dependencies or the lookup's C
# kernel change (pip builds it in place: featurestore/online/_tiles.*.so; needs gcc and
# Python's headers, which the machine's Python has).
$(RUNTIME): pyproject.toml featurestore/online/_tiles.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

# The dev extras on top (tests, lint, make proto, benchmarks).
$(DEV): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV)

# Debian's redis-server: tests start private instances of it, the demo starts one if none answers.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (Debian package)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

# Debian's OpenJDK 17 for PySpark (the Spark engine's tests; the demo runs on DuckDB without it).
java:
	@command -v java >/dev/null 2>&1 || { \
		echo "installing openjdk-17-jre-headless (Debian package)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null; }

# Debian's Chromium and its chromedriver: tests/ui drive the web console in a real headless
# browser. Selenium is given /usr/bin/chromedriver, so it never downloads a driver of its own.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
		echo "installing chromium and chromium-driver (Debian packages)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

# The example repo's data: seeded, ending at the current hour so served values are fresh.
data: $(RUNTIME)
	$(BIN)/python -m featurestore.datagen $(REPO)/data --scale demo

# Starts a local redis-server (no persistence) when none answers at the repo's Redis URL.
# Ports: DEMO_GRPC_PORT (default 6566), DEMO_HTTP_PORT (default 6567) and DEMO_UI_PORT (the web
# console, default 8888), e.g.
#   make demo DEMO_GRPC_PORT=7566 DEMO_HTTP_PORT=7567 DEMO_UI_PORT=7568
demo: runtime data
	@scripts/ensure_redis.sh $(REPO)
	@$(REPO)/demo.sh $(REPO)

# The README's pictures of the web console (docs/ui-*.png), taken by headless Chromium from a
# console over a copy of the example repo (scripts/ui_screenshots.py).
screenshots: $(DEV) redis-server chromium
	$(BIN)/python scripts/ui_screenshots.py docs/

# Regenerate the gRPC code from proto/ (committed; tests check it is fresh).
proto: $(DEV)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/featurestore/serving/v1/serving.proto

lint: $(DEV)
	$(BIN)/ruff check featurestore tests $(wildcard benchmarks)
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -q

# Benchmarks: h2load (Debian's nghttp2-client) generates gRPC and HTTP load; matplotlib draws
# the latency chart. Results: benchmarks/RESULTS.md, benchmarks/results/*.json and *.png.
bench-tools: setup
	@command -v h2load >/dev/null 2>&1 || { \
		echo "installing nghttp2-client (h2load)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null; }
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/pip install --quiet matplotlib
	@test -x $(BIN)/py-spy || $(BIN)/pip install --quiet py-spy  # benchmarks/cpu.py --profile

bench: bench-tools
	$(BIN)/python benchmarks/online.py --scale small --runs 3 --seconds 5
	$(BIN)/python benchmarks/on_demand.py --scale small --runs 3 --seconds 3
	$(BIN)/python benchmarks/training_sets.py --scale small --runs 3
	$(BIN)/python benchmarks/ingestion.py --scale small --runs 3
	$(BIN)/python benchmarks/aggregations.py --scale small --runs 3
	$(BIN)/python benchmarks/push.py --scale demo --runs 3
	$(BIN)/python benchmarks/repo_size.py --calls 2000 --seconds 3 --runs 2
	$(BIN)/python benchmarks/tail.py --seconds 5 --runs 1
	$(BIN)/python benchmarks/cli_start.py
	$(BIN)/python benchmarks/cpu.py --seconds 3 --runs 1
	$(BIN)/python benchmarks/workers.py --seconds 3 --runs 1
	$(BIN)/python benchmarks/auth_check.py

bench-full: bench-tools
	$(BIN)/python benchmarks/online.py --scale medium --runs 3 --seconds 10 --workers 2
	$(BIN)/python benchmarks/training_sets.py --scale small --runs 3
	$(BIN)/python benchmarks/training_sets.py --scale medium --runs 3
	$(BIN)/python benchmarks/training_sets.py --scale large --runs 1
	$(BIN)/python benchmarks/ingestion.py --scale medium --runs 3

# On paper (issue 22): CPU per lookup of our server beside a bare Python gRPC echo and a compiled
# C++ one (benchmarks/compiled_echo, built against Debian's libgrpc++-dev, installed here when
# missing; nothing else builds or needs it). Results: benchmarks/results/compiled.json.
bench-compiled: bench-tools
	benchmarks/compiled_echo/build.sh
	$(BIN)/python benchmarks/compiled.py --seconds 5 --runs 2

# Soak: the gRPC server under steady h2load load for 3 minutes while materialization runs again
# and again; errors must be 0 and the server's RSS bounded. Results: benchmarks/results/soak.json.
.PHONY: soak
soak: bench-tools
	$(BIN)/python benchmarks/soak.py --seconds 180

clean:
	rm -rf $(VENV) $(REPO)/data $(REPO)/out $(REPO)/.featurestore .pytest_cache .mypy_cache .ruff_cache
