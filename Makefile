# kcache build.  `make` builds the libraries and programs, `make test` runs
# every test, `make asan` / `make tsan` run them under sanitizers (each in
# its own build directory), `make bench` runs the benchmarks.
#
# Missing Debian packages are installed by scripts/deps.sh (as root) the
# first time any target needs the compiler flags; it writes build/deps.mk.

CC ?= cc
CFLAGS ?= -O2 -g
LDFLAGS ?=
BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

MODULES := common cache k8sclient informer controller
SOVERSION := 0
VERSION := $(shell sed -n 's/^\#define KC_VERSION_STRING "\(.*\)"/\1/p' common/kc_common.h)

KC_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -pthread -MMD -MP \
	-Wall -Wextra -Wshadow -Wstrict-prototypes \
	$(addprefix -I,$(MODULES)) -Itests/fakeapi -Itests/support
ifeq ($(CI),true)
KC_CFLAGS += -Werror
endif

DEPS_MK := build/deps.mk
ifeq ($(filter clean help,$(MAKECMDGOALS)),)
-include $(DEPS_MK)
endif

ALL_CFLAGS = $(KC_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)

# Programs (the controller, tests, benches, the fake API server) link the
# libcurl that scripts/build-curl.sh builds from Debian's curl source with
# HTTP(S) only -- Debian's libcurl4 drags in 23 libraries for protocols kcache
# never speaks -- and the static archives of OpenSSL, nghttp2, zlib,
# libevent and libyaml from the Debian -dev packages: one copy of OpenSSL in
# the process (libevent_openssl must link the same one), only the code used
# is mapped, nothing to relocate at start.  Together ~4.5 MiB less resident
# memory per process (bench/RESULTS.md, "Controller").  It is built once into
# build/deps, shared by every build directory (asan, tsan, fuzz).  cJSON has
# no static archive in Debian, cmocka only matters to the tests: both stay
# shared.  libkcache.so, for installing, links the system's shared libraries
# (PKG_LIBS).
DEPS_DIR := build/deps
CURL_LIB := $(DEPS_DIR)/curl/lib/libcurl.a
STATIC_DEP_LIBS := -lnghttp2 -levent_openssl -levent_pthreads -levent -lyaml -lssl -lcrypto -lz -llz4
LIBS = $(CURL_LIB) -Wl,-Bstatic $(STATIC_DEP_LIBS) -Wl,-Bdynamic \
	-Wl,--as-needed -lcjson -lcmocka -Wl,--no-as-needed -pthread

LIB_SRC := $(wildcard $(addsuffix /*.c,$(MODULES)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
PUBLIC_HEADERS := $(wildcard $(addsuffix /kc_*.h,$(MODULES)))

FAKE_SRC := $(filter-out tests/fakeapi/main.c,$(wildcard tests/fakeapi/*.c))
FAKE_OBJ := $(FAKE_SRC:%.c=$(BUILD)/obj/%.o)
SUPPORT_SRC := $(wildcard tests/support/*.c)
SUPPORT_OBJ := $(SUPPORT_SRC:%.c=$(BUILD)/obj/%.o)

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SH := $(wildcard tests/test_*.sh)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
CMD_BIN := $(patsubst cmd/%.c,$(BUILD)/%,$(wildcard cmd/*.c))
EXAMPLE_BIN := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
SOAK_BIN := $(BUILD)/tests/soak
ifneq ($(wildcard tests/fakeapi/main.c),)
CMD_BIN += $(BUILD)/kcache-fakeapi
endif

STATIC_LIB := $(BUILD)/libkcache.a
SHARED_LIB := $(BUILD)/libkcache.so.$(SOVERSION)
FAKE_LIB := $(BUILD)/libkcache-fakeapi.a
TEST_LIBS := $(FAKE_LIB) $(STATIC_LIB)

.PHONY: all lib test asan tsan bench run soak fuzz install uninstall clean help deps
.DEFAULT_GOAL := all

all: lib $(CMD_BIN) $(EXAMPLE_BIN) $(TEST_BIN) $(BENCH_BIN) $(SOAK_BIN)

lib: $(STATIC_LIB) $(SHARED_LIB)

deps: $(DEPS_MK)

$(DEPS_MK): scripts/deps.sh
	@mkdir -p $(dir $@)
	@bash scripts/deps.sh $@

$(CURL_LIB): scripts/build-curl.sh | $(DEPS_MK)
	@bash scripts/build-curl.sh $(DEPS_DIR)/curl

$(BUILD)/obj/%.o: %.c | $(DEPS_MK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(STATIC_LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJ) scripts/libkcache.map
	$(CC) -shared -Wl,-soname,libkcache.so.$(SOVERSION) \
		-Wl,--version-script=scripts/libkcache.map $(LDFLAGS) \
		-o $@ $(LIB_OBJ) $(PKG_LIBS) -pthread
	ln -sf libkcache.so.$(SOVERSION) $(BUILD)/libkcache.so

$(FAKE_LIB): $(FAKE_OBJ) $(SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/kcache-fakeapi: $(BUILD)/obj/tests/fakeapi/main.o $(TEST_LIBS) $(CURL_LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_LIBS) $(LIBS)

$(BUILD)/%: $(BUILD)/obj/cmd/%.o $(STATIC_LIB) $(CURL_LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LIBS)

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(STATIC_LIB) $(CURL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_LIBS) $(CURL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_LIBS) $(LIBS)

$(SOAK_BIN): $(BUILD)/obj/tests/soak/soak.o $(TEST_LIBS) $(CURL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_LIBS) $(LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(TEST_LIBS) $(CURL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_LIBS) $(LIBS)

# Every test under a timeout; ends with "N passed, N failed".
test: all
	@KC_BUILD=$(BUILD) KC_SANITIZER=$(KC_SANITIZER) tests/run.sh $(TEST_BIN) $(TEST_SH)

SAN_COMMON := -O1 -g -fno-omit-frame-pointer
asan:
	$(MAKE) BUILD=build/asan KC_SANITIZER=asan \
		CFLAGS="$(SAN_COMMON) -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		LDFLAGS="-fsanitize=address,undefined" test

tsan:
	$(MAKE) BUILD=build/tsan KC_SANITIZER=tsan \
		CFLAGS="$(SAN_COMMON) -fsanitize=thread" LDFLAGS="-fsanitize=thread" \
		TSAN_OPTIONS="suppressions=$(CURDIR)/scripts/tsan.supp second_deadlock_stack=1 $(TSAN_OPTIONS)" test

# The fault soak (tests/soak/soak.c): DURATION in seconds (default 180).
DURATION ?= 180
soak: $(SOAK_BIN)
	$(SOAK_BIN) --duration $(DURATION) $(if $(SEED),--seed $(SEED))

# libFuzzer targets (fuzz/fuzz_*.c) built with clang under ASan+UBSan in
# build/fuzz, seeded by fuzz/seeds.sh; each runs FUZZ_SECONDS (default 60).
# Installs clang and libclang-rt-dev (as root) when missing.  Crashes are
# left in build/fuzz/crashes/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
fuzz:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-dev; } || \
		{ echo "fuzz: needs clang and libclang-rt-dev (apt-get install clang libclang-rt-dev)"; exit 1; }
	$(MAKE) BUILD=build/fuzz CC=$(FUZZ_CC) KC_SANITIZER=asan \
		CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
		LDFLAGS="$(FUZZ_SAN)" build/fuzz/libkcache.a build/fuzz/libkcache-fakeapi.a $(CURL_LIB)
	$(MAKE) $(BUILD)/kcache-fakeapi
	@for t in $(FUZZ_TARGETS); do \
		$(FUZZ_CC) $(KC_CFLAGS) -Ik8sclient $(PKG_CFLAGS) -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) \
			fuzz/$$t.c build/fuzz/libkcache-fakeapi.a build/fuzz/libkcache.a $(LIBS) \
			-o build/fuzz/$$t || exit 1; \
	done
	@rm -rf build/fuzz/seeds && bash fuzz/seeds.sh build/fuzz/seeds $(BUILD) >/dev/null
	@fail=0; for t in $(FUZZ_TARGETS); do \
		n=$${t#fuzz_}; mkdir -p build/fuzz/corpus/$$n build/fuzz/crashes/$$n; \
		extra=; [ $$n = fakeapi_http ] && extra=-detect_leaks=0; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
			$$extra -artifact_prefix=build/fuzz/crashes/$$n/ -print_final_stats=1 \
			build/fuzz/corpus/$$n build/fuzz/seeds/$$n > build/fuzz/$$n.log 2>&1 || \
			{ fail=1; echo "fuzz: $$t FAILED (build/fuzz/$$n.log, build/fuzz/crashes/$$n/)"; tail -30 build/fuzz/$$n.log; }; \
		grep -E '^stat::number_of_executed_units|^stat::new_units_added' build/fuzz/$$n.log | tr '\n' ' '; echo; \
	done; exit $$fail

# Every benchmark and the Go peers (bench/README.md): build/bench/results.json,
# a table on stdout and PNG charts under build/bench/.
bench: all
	@BUILD=$(BUILD) bash bench/run.sh

# The demo: fake API server + kcache-controller, live progress, PASS/FAIL.
# Flags pass through: make run ARGS="--duration 60 --workers 4".
run: all
	scripts/run-demo.sh --build $(BUILD) $(ARGS)

$(BUILD)/kcache.pc: scripts/kcache.pc.in common/kc_common.h
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

install: lib $(BUILD)/kcache.pc
	install -d $(DESTDIR)$(INCLUDEDIR)/kcache $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(INCLUDEDIR)/kcache/
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libkcache.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libkcache.so
	install -m 644 $(BUILD)/kcache.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

uninstall:
	rm -rf $(DESTDIR)$(INCLUDEDIR)/kcache
	rm -f $(DESTDIR)$(LIBDIR)/libkcache.a $(DESTDIR)$(LIBDIR)/libkcache.so \
		$(DESTDIR)$(LIBDIR)/libkcache.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/pkgconfig/kcache.pc

clean:
	rm -rf build

help:
	@echo "make [all|test|asan|tsan|bench|run|test-real|install|clean]  (PREFIX=, DESTDIR=, CFLAGS=, ARGS= for run)"
	@echo "make soak DURATION=S [SEED=N]   fault soak of the replicator (default 180 s)"
	@echo "make fuzz FUZZ_SECONDS=N        every libFuzzer target for N s (clang)"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# keep objects of pattern-built programs between runs
.SECONDARY:

# Integration tests against a real etcd + kube-apiserver (a Go harness,
# test-only; built into $(BUILD)/realapi, cached).  Skips without Go.
test-real: all
	@KC_BUILD=$(BUILD) tests/realapi/run.sh
.PHONY: test-real

# The C suites run against the real server (tests/realapi/c/real_*.c; not
# tests/test_*.c, which make test runs without one).  They live in c/ because
# tests/realapi/ is a Go package, and Go refuses C files there without cgo.
REAL_SRC := $(wildcard tests/realapi/c/real_*.c)
REAL_BIN := $(REAL_SRC:tests/realapi/c/%.c=$(BUILD)/realapi/%)
$(BUILD)/realapi/%: $(BUILD)/obj/tests/realapi/c/%.o $(TEST_LIBS) $(CURL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_LIBS) $(LIBS)
test-real: $(REAL_BIN)
