# tiny-backprop: two commands for a newcomer, `make test` and `make bench`.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.tb-installed
# torch is pinned here (the CPU build on these machines); pyproject says torch>=2.3.
TORCH_SPEC ?= torch==2.13.0

CC ?= cc
CORE_SRC := $(wildcard csrc/core/*.c)
CORE_HDR := $(wildcard csrc/core/*.h)
CTESTS := $(wildcard tests/c/test_*.c)
CTEST_FLAGS := -std=c11 -Wall -Wextra -Werror -g -Icsrc/core
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: venv build ctest asan lint pytest test bench bench-transformer bench-gpt2 \
	bench-long-context bench-resnet bench-unet clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check "setuptools>=68" wheel
	$(VPY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(VPY) -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[dev]"
	touch $@

# Rebuild the extension in place (the editable install finds it there).
build: $(STAMP)
	$(VPY) setup.py -q build_ext --inplace 2>&1 | grep -v -i deprecat || true
	$(VPY) -c "import tiny_backprop._C"

# C unit tests, plain optimised build.
ctest:
	@mkdir -p build/ctest
	@set -e; for t in $(CTESTS); do n=$$(basename $$t .c); \
	  $(CC) $(CTEST_FLAGS) -O2 $$t $(CORE_SRC) -lm -o build/ctest/$$n; \
	  echo "== $$n"; ./build/ctest/$$n; done

# C unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	@mkdir -p build/asan
	@set -e; for t in $(CTESTS); do n=$$(basename $$t .c); \
	  $(CC) $(CTEST_FLAGS) $(SAN_FLAGS) $$t $(CORE_SRC) -lm -o build/asan/$$n; \
	  echo "== $$n (asan+ubsan)"; ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/asan/$$n; done

lint: $(STAMP)
	$(VPY) -m ruff check .

pytest: build
	$(VPY) -m pytest -q

test: build asan lint
	$(VPY) -m pytest -q

# Small profile of gpt2 and transformer in every mode, each mode in its own process, then
# the summary table (0.8-3 min on 2 shared CPU cores, with torch.compile's cache warm; a cold
# compile adds about 1.5 min per model). One torch thread per worker keeps step times steady
# on a shared machine; override with e.g. make bench BENCH_FLAGS="--steps 10 --trials 3".
BENCH_MODES := naive checkpoint checkpoint_seq tiny compile_budget
BENCH_FLAGS ?= --warmup 2 --steps 5 --threads 1
# Scratch output by default (ignored by git); BENCH_OUT=results rewrites the committed files.
BENCH_OUT ?= results/tmp
bench: build
	mkdir -p $(BENCH_OUT)
	$(VPY) -m benchmarks.gpt2 --profile small --modes $(BENCH_MODES) $(BENCH_FLAGS) --export $(BENCH_OUT)/bench_gpt2_small.json --no-summary
	$(VPY) -m benchmarks.transformer --profile small --modes $(BENCH_MODES) $(BENCH_FLAGS) --export $(BENCH_OUT)/bench_transformer_small.json --no-summary
	$(VPY) -m benchmarks.summarize $(BENCH_OUT)/bench_gpt2_small.json $(BENCH_OUT)/bench_transformer_small.json

bench-transformer bench-gpt2 bench-long-context bench-resnet bench-unet: build
	$(VPY) -m benchmarks.$(subst -,_,$(patsubst bench-%,%,$@)) --profile small

clean:
	rm -rf build tiny_backprop/*.so
