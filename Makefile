# embd: build, run, test. `make run` and `make test` install missing Debian packages first.
.DEFAULT_GOAL := all
.PHONY: all run test check unit e2e nosimd deps deps-test deps-bench clean format lint bench print-config fuzz fuzz-regress soak

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
SANFLAGS :=
else
comma := ,
BUILD ?= build/$(subst $(comma),-,$(SANITIZE))
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKGS := libmicrohttpd jansson openblas
PYTHON ?= /usr/bin/python3
CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla -Wformat=2
# Expanded when a recipe runs, so that `deps` can install the packages first.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(CFLAGS) $(WARN) $(SANFLAGS) -Ilib $(PKG_CFLAGS) -MMD -MP
LDLIBS = $(PKG_LIBS) -lm -lpthread

LIB_SRC := $(wildcard lib/*.c)
SERVER_SRC := $(wildcard server/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

all: embd

# The binary lives at ./embd; a sanitizer build keeps its own in $(BUILD).
ifeq ($(SANITIZE),)
# Copy then rename: a running ./embd cannot be written over ("Text file busy"), but it can be replaced.
embd: $(BUILD)/embd
	cp $< $@.tmp && mv -f $@.tmp $@
endif

$(BUILD)/embd: $(SERVER_OBJ) $(BUILD)/libembd.a
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libembd.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(if $(filter server/%,$<),-Iserver) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libembd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(BUILD)/libembd.a \
		$(shell pkg-config --libs cmocka) $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(SERVER_OBJ:.o=.d)

deps:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh test

deps-bench:
	@sh scripts/deps.sh bench

# `make run PORT=9000 FILE=vectors.npy ARGS='--vocab words.txt'`: config/embd.json, with these over it (each empty by
# default: the file's port 8080 and the demo matrix).
PORT ?=
FILE ?=
ARGS ?=
run: deps
	@$(MAKE) --no-print-directory all
	./embd serve --config config/embd.json $(if $(FILE),'$(FILE)') $(if $(PORT),--port $(PORT)) $(ARGS)

# Every test: plain, under AddressSanitizer + UBSan (+ LeakSanitizer), under ThreadSanitizer; then the fuzz
# corpora as regression tests.
test: deps-test
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory nosimd
	@$(MAKE) --no-print-directory check SANITIZE=address,undefined
	@$(MAKE) --no-print-directory check SANITIZE=thread
	@$(MAKE) --no-print-directory fuzz-regress

check: unit e2e

unit: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done

# The fallback a CPU without AVX2/F16C takes: EMBD_NO_SIMD builds the scalar f16/bf16 conversions alone. Built
# apart in build/nosimd; its conversion unit test (the 2^32 sweep against the reference) and the half-precision e2e
# test run against it.
NOSIMD_BUILD := build/nosimd
nosimd:
	@$(MAKE) --no-print-directory BUILD=$(NOSIMD_BUILD) SANITIZE= CFLAGS="$(CFLAGS) -DEMBD_NO_SIMD" \
		$(NOSIMD_BUILD)/embd $(NOSIMD_BUILD)/tests/test_dtype
	$(NOSIMD_BUILD)/tests/test_dtype
	EMBD_BIN=$(CURDIR)/$(NOSIMD_BUILD)/embd $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e/test_half.py

ifeq ($(SANITIZE),)
E2E_BIN := $(CURDIR)/embd
e2e: embd
else
E2E_BIN := $(CURDIR)/$(BUILD)/embd
e2e: $(BUILD)/embd
endif
	EMBD_BIN=$(E2E_BIN) EMBD_SANITIZE=$(SANITIZE) ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=32 \
		TSAN_OPTIONS=halt_on_error=1 \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

# The side-by-side benchmark. Every server on a free loopback port (embd on port 0); results (RESULTS.md, raw
# JSON, plots) go to OUT (default build/bench), or to the committed loadtest/results/ only with SAVE=1.
# QUICK=1 for the short version; ONLY=rows for the throughput and latency rows alone (WORKLOADS=gather_256,... for
# some of them, PEERS=embd for embd alone), ONLY=convert for the embd convert vs gensim row alone, ONLY=similar for
# the /v1/similar vs gensim most_similar row alone, ONLY=isolation for single rows and /healthz beside 1,024-id
# similar batches alone, ONLY=loader for the PyTorch DataLoader through embd vs nn.Embedding in-process
# (loadtest/loader_bench.py) alone.
QUICK ?=
ONLY ?=
OUT ?=
SAVE ?=
WORKLOADS ?=
PEERS ?=
bench: deps-bench
	@$(MAKE) --no-print-directory all
	QUICK=$(QUICK) OUT=$(OUT) SAVE=$(SAVE) WORKLOADS=$(WORKLOADS) PEERS=$(PEERS) $(PYTHON) loadtest/bench.py $(if $(ONLY),--only $(ONLY))

# The long versions of the robustness tests: reload under load and the overload storm run for SOAK_SECONDS
# each (the short versions are in make test) and print their figures.
SOAK_SECONDS ?= 300
soak: deps-test
	@$(MAKE) --no-print-directory all
	EMBD_BIN=$(CURDIR)/embd EMBD_SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) -m pytest -q -s -p no:cacheprovider \
		tests/e2e/test_reload.py tests/e2e/test_overload.py -k "under_load or storm"

# libFuzzer targets for every parser of untrusted bytes (clang from Debian). `make fuzz` runs each for
# FUZZ_SECONDS, growing a corpus in build/fuzz/; `make fuzz-regress` replays the checked-in corpus once.
FUZZ_TARGETS := npy matrix ids query escape vocab safetensors textvec tokens vecreq
FUZZ_SECONDS ?= 60
FUZZ_BIN := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRC) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Ilib $(PKG_CFLAGS) -o $@ $< $(LIB_SRC) $(PKG_LIBS) -lm -lpthread

fuzz-regress: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do echo "== fuzz_$$t over tests/fuzz/corpus/$$t"; \
		build/fuzz/fuzz_$$t -runs=0 tests/fuzz/corpus/$$t 2>&1 | tail -1; done

fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/corpus_$$t; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/ \
			build/fuzz/corpus_$$t tests/fuzz/corpus/$$t 2>&1 | grep -E "stat::number_of_executed_units|Done|ERROR|crash" ; done

print-config: embd
	./embd serve --print-config

format:
	clang-format -i lib/*.[ch] server/*.[ch] tests/*.c

lint:
	clang-format --dry-run --Werror lib/*.[ch] server/*.[ch] tests/*.c
	clang-tidy --quiet lib/*.c server/*.c -- -std=c11 -D_GNU_SOURCE -Ilib -Iserver $(PKG_CFLAGS)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
		--suppress=missingIncludeSystem -Ilib -Iserver lib server

clean:
	rm -rf build embd
