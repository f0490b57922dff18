# embd: build, run, test. `make run` and `make test` install missing Debian packages first.
.DEFAULT_GOAL := all
.PHONY: all run test check unit e2e deps deps-test deps-bench clean format lint bench print-config

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
SANFLAGS :=
else
BUILD ?= build/san
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
embd: $(BUILD)/embd
	cp $< $@
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

run: deps
	@$(MAKE) --no-print-directory all
	./embd serve --config config/embd.json

# Every test, plain and then under AddressSanitizer + UBSan.
test: deps-test
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory check SANITIZE=address,undefined

check: unit e2e

unit: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done

ifeq ($(SANITIZE),)
E2E_BIN := $(CURDIR)/embd
e2e: embd
else
E2E_BIN := $(CURDIR)/$(BUILD)/embd
e2e: $(BUILD)/embd
endif
	EMBD_BIN=$(E2E_BIN) ASAN_OPTIONS=detect_leaks=1 $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

# The side-by-side benchmark (loadtest/results/RESULTS.md); QUICK=1 for the short version.
QUICK ?=
bench: deps-bench
	@$(MAKE) --no-print-directory all
	QUICK=$(QUICK) $(PYTHON) loadtest/bench.py

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
