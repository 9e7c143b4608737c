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

.PHONY: venv build ctest asan asan-c asan-py lint pytest test bench bench-transformer bench-gpt2 \
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

# C unit tests, then the Python planner tests against an extension built with
# AddressSanitizer + UndefinedBehaviorSanitizer.
asan: asan-c asan-py

asan-c:
	@mkdir -p build/asan
	@set -e; for t in $(CTESTS); do n=$$(basename $$t .c); \
	  $(CC) $(CTEST_FLAGS) $(SAN_FLAGS) $$t $(CORE_SRC) -lm -o build/asan/$$n; \
	  echo "== $$n (asan+ubsan)"; ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/asan/$$n; done

# The Python planner tests against an ASan+UBSan build of the extension (TB_SANITIZE=1 of
# setup.py) kept in build/asan-ext, loaded by scripts/pytest_with_ext.py; the uninstrumented
# interpreter needs libasan (and libstdc++, for C++ extensions' exceptions) preloaded.
# detect_leaks=0: Python itself leaks at exit (the leak tests count blocks instead).
# --capture=sys: an ASan report goes to the real stderr, not into pytest's capture.
# Skipped, with the reason, where the toolchain or the kernel cannot run ASan at all.
ASAN_EXT_DIR := build/asan-ext
ASAN_EXT_STAMP := $(ASAN_EXT_DIR)/.built
# Planner tests as they are (pymalloc: fast), then the bad-input probe with
# PYTHONMALLOC=malloc, where ASan also sees every PyMem block of the glue (2x slower).
ASAN_PYTESTS ?= $(wildcard tests/test_planner*.py)
ASAN_MALLOC_PYTESTS ?= tests/test_glue_safety.py
GLUE_SRC := $(wildcard csrc/*.c csrc/*.h) $(CORE_SRC) $(CORE_HDR) setup.py

# Preflight: prints why ASan cannot run here (and the tests are skipped), or nothing.
define asan_preflight
libasan=$$($(CC) -print-file-name=libasan.so); \
libstdcxx=$$($(CC) -print-file-name=libstdc++.so); [ -f "$$libstdcxx" ] || libstdcxx=; \
skip=; mkdir -p $(ASAN_EXT_DIR); \
if [ ! -f "$$libasan" ]; then skip="$(CC) has no libasan.so (install the compiler's ASan runtime)"; \
else echo 'int main(void){return 0;}' > $(ASAN_EXT_DIR)/probe.c; \
  if ! $(CC) -fsanitize=address,undefined $(ASAN_EXT_DIR)/probe.c -o $(ASAN_EXT_DIR)/probe \
       >/dev/null 2>&1 || ! $(ASAN_EXT_DIR)/probe >/dev/null 2>&1; then \
    skip="$(CC) cannot build or run an ASan program here"; \
  elif ! LD_PRELOAD="$$libasan $$libstdcxx" ASAN_OPTIONS=detect_leaks=0 $(VPY) -c pass \
       >/dev/null 2>&1; then skip="the interpreter does not start with libasan preloaded"; fi; fi
endef

$(ASAN_EXT_STAMP): $(GLUE_SRC) $(STAMP)
	@mkdir -p $(ASAN_EXT_DIR); rm -f $(ASAN_EXT_DIR)/tiny_backprop/_C*.so $@; \
	if ! TB_SANITIZE=1 CI=true $(VPY) setup.py -q build_ext --force --parallel 2 \
	     --build-lib $(ASAN_EXT_DIR) --build-temp $(ASAN_EXT_DIR)/tmp \
	     > $(ASAN_EXT_DIR)/build.log 2>&1; then \
	  cat $(ASAN_EXT_DIR)/build.log; echo "asan-py: the ASan build of _C failed"; exit 1; fi; \
	grep -v -i deprecat $(ASAN_EXT_DIR)/build.log || true; touch $@

asan-py: $(STAMP)
	@set -e; $(asan_preflight); \
	if [ -n "$$skip" ]; then echo "asan-py: SKIPPED: $$skip"; exit 0; fi; \
	$(MAKE) --no-print-directory $(ASAN_EXT_STAMP); \
	ext=$$(ls $(ASAN_EXT_DIR)/tiny_backprop/_C*.so); \
	export LD_PRELOAD="$$libasan $$libstdcxx" TB_ASAN=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	echo "== python planner tests against an asan+ubsan build of _C"; \
	$(VPY) scripts/pytest_with_ext.py "$$ext" -q -p no:cacheprovider --capture=sys $(ASAN_PYTESTS); \
	echo "== bad-input probe against it, PYTHONMALLOC=malloc"; \
	PYTHONMALLOC=malloc $(VPY) scripts/pytest_with_ext.py "$$ext" -q -p no:cacheprovider \
	  --capture=sys $(ASAN_MALLOC_PYTESTS)

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
