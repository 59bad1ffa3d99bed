# corral build.  `make` builds into build/bin/; `make check` runs every test;
# `make asan` runs them under ASan+UBSan; `make bench` runs the benchmarks.

CC ?= gcc
BUILD ?= build
SANITIZE ?=
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
CPPFLAGS += -Iinclude -D_FORTIFY_SOURCE=2
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -fstack-protector-strong -fPIE
LIBS := -lseccomp -ljansson -lsqlite3 -lssl -lcrypto -lmicrohttpd -lz -lhttp_parser -lpthread
# The CLI loads libcurl itself when a remote command needs it (curl_dl.c), and
# links only what it uses: `corral run` starts without a dozen libraries.
CLI_LIBS := -Wl,--as-needed $(LIBS)
LDFLAGS += -pie -Wl,-z,relro,-z,now

ifeq ($(SANITIZE),1)
  BUILD := build/asan
  ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  CPPFLAGS := $(filter-out -D_FORTIFY_SOURCE=2,$(CPPFLAGS))
endif

LIB_SRC := $(sort $(wildcard src/lib/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
HEADERS := $(wildcard include/corral/*.h src/lib/*/*.h src/cli/*.h)
PYTEST := /usr/bin/python3 -m pytest

.PHONY: all check asan bench fuzz fuzz-build clean unit e2e escape tests-build
all: $(BUILD)/bin/corral $(BUILD)/bin/corrald $(BUILD)/bin/corral-agent $(BUILD)/lib/libcorral.a

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

# The seccomp policy is compiled to BPF at build time (see seccomp_policy.c).
GEN_SECCOMP_SRC := src/tools/gen_seccomp.c src/lib/isolate/seccomp_policy.c src/lib/isolate/seccomp.c src/lib/common/error.c src/lib/common/fs.c
$(BUILD)/tools/gen_seccomp: $(GEN_SECCOMP_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/lib $(ALL_CFLAGS) $(LDFLAGS) $(GEN_SECCOMP_SRC) -lseccomp -o $@

$(BUILD)/gen/seccomp_bpf.h: $(BUILD)/tools/gen_seccomp
	@mkdir -p $(dir $@)
	$< > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/src/lib/isolate/seccomp.o: src/lib/isolate/seccomp.c $(BUILD)/gen/seccomp_bpf.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(BUILD)/gen -DCORRAL_SECCOMP_PRECOMPILED $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/lib/libcorral.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/corral: $(CLI_OBJ) $(BUILD)/lib/libcorral.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ $(CLI_LIBS) -o $@

$(BUILD)/bin/corrald: src/daemon/main.c $(BUILD)/lib/libcorral.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) $^ $(LIBS) -o $@

# The agent is PID 1 inside sandboxes whose root may not hold our libc, and
# runs under seccomp: static, and never built with sanitizers.
AGENT_SRC := src/agent/main.c $(wildcard src/lib/guest/*.c) $(wildcard src/lib/common/*.c) src/lib/isolate/caps.c
$(BUILD)/bin/corral-agent: $(AGENT_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	gcc -std=gnu11 $(WARN) -O2 -g $(CPPFLAGS) -static $(AGENT_SRC) -o $@

$(BUILD)/tests/unit/%: tests/unit/%.c tests/unit/tap.h $(BUILD)/lib/libcorral.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc/lib $(ALL_CFLAGS) $(LDFLAGS) $< $(BUILD)/lib/libcorral.a $(LIBS) -o $@

# The escape suite runs inside sandboxes whose root may not hold our libc:
# link it statically.  No sanitizers: it runs under seccomp.
ESCAPE_SRC := $(sort $(wildcard tests/escape/*.c))
$(BUILD)/tests/escape/escape: $(ESCAPE_SRC) $(wildcard tests/escape/*.h)
	@mkdir -p $(dir $@)
	gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -static $(ESCAPE_SRC) -o $@

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS) -Isrc/lib -Wall -Wextra -Werror $< $(LIB_SRC) $(LIBS) -o $@

tests-build: all $(UNIT_BIN) $(BUILD)/tests/escape/escape

unit: tests-build
	prove -f $(UNIT_BIN)

e2e escape: tests-build
	CORRAL_BUILD=$(BUILD) $(PYTEST) -q tests/e2e

# `make check` is the whole suite: the normal build, then the same tests
# under ASan+UBSan (`make asan` alone runs only the latter).
check: tests-build
	CORRAL_BUILD=$(BUILD) tests/run-all.sh
ifneq ($(SANITIZE),1)
	$(MAKE) asan
endif

asan:
	$(MAKE) check SANITIZE=1

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	tests/fuzz/run.sh $(BUILD)/fuzz $(or $(FUZZ_SECONDS),60)

bench: all
	/usr/bin/python3 bench/bench.py --corral $(BUILD)/bin/corral
	/usr/bin/python3 bench/daemon_bench.py --corrald $(BUILD)/bin/corrald
	/usr/bin/python3 bench/code_bench.py --corrald $(BUILD)/bin/corrald
	/usr/bin/python3 bench/net_bench.py --corral $(BUILD)/bin/corral
	CORRAL_BUILD=$(BUILD) node bench/e2b_bench.mjs

clean:
	rm -rf build
