# tokend — build, test, run and install.
#
#   make            build everything (service, gateway, client library, tokenctl,
#                   tests, bench)
#   make run        install missing packages, build, init ./data, start tokend and
#                   tokend-gateway (addresses: TOKEND_LISTEN, TOKEND_GATEWAY_LISTEN,
#                   ... or LISTEN=, HTTP=, ...: see "running" below)
#   make test       install missing packages, build, run the test suite
#   make asan       the test suite built with AddressSanitizer + UBSan
#   make valgrind   the integration tests with tokend, tokenctl and
#                   tokend-gateway under valgrind (definite leaks, errors)
#   make soak       SOAK_SECONDS (600) of mixed load through the gateway; RSS of
#                   tokend and the gateway must grow < 5% after warm-up
#   make bench      the benchmark suite: figures against references measured
#                   in the same run, bench/out/results.json (bench/README.md)
#   make install    PREFIX=/usr/local DESTDIR= : binaries (tokend, tokenctl,
#                   tokend-gateway), tokend.h, libs, tokend.pc, share/tokend/tokend.proto
#   make format     clang-format every source file in place
#   make deps       apt-get install the Debian packages that are missing
#   make clean      remove build outputs

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
# The release is written once, in include/tokend.h; the soname follows its
# major number.
VERSION   := $(shell sed -n 's/^\#define TOKEND_VERSION "\(.*\)"$$/\1/p' include/tokend.h)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))

# Debian 12 packages the build and tests need; `make deps` installs the
# missing ones (and only those). `make` alone never installs anything.
DEB_PACKAGES := gcc make pkg-config libc6-dev libnng-dev libprotobuf-c-dev \
                protobuf-c-compiler librocksdb-dev libssl-dev clang-format \
                libmicrohttpd-dev libjansson-dev curl nginx-light openssl \
                clang libclang-rt-14-dev valgrind wrk e2fsprogs binutils \
                python3 python3-protobuf protobuf-compiler caddy prometheus

CC      ?= cc
OPT     ?= -O2 -g
CFLAGS  ?= $(OPT)
SAN     ?=
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC \
           -Wshadow -Wstrict-prototypes -Wmissing-prototypes

GEN      := $(BUILD)/gen
OBJ      := $(BUILD)/obj
PROTO_GEN := $(GEN)/tokend.pb-c.c $(GEN)/tokend.pb-c.h

# The folder graph, enforced by the include paths each folder is compiled
# with (docs/design.md, "The map"):
#
#   include/  <-  proto/  <-  client/, service/, gateway/
#
# include/ is the public header; proto/ (with the code generated from
# tokend.proto) is the layer every side shares; client/, service/ and
# gateway/ see only it and themselves, never one another. tests/, bench/
# and fuzz/ may use every folder. tests/structure.sh checks the same rule on
# the sources (make test runs it), so a relative path cannot get round it.
INC_proto   := -Iinclude -Iproto -I$(GEN)
INC_client  := $(INC_proto) -Iclient
INC_service := $(INC_proto) -Iservice
INC_gateway := $(INC_proto) -Igateway
INC_tests   := $(INC_proto) -Iclient -Iservice -Igateway -Itests
INC_bench   := $(INC_tests)
INC_fuzz    := $(INC_tests)
# The include path of a source file: that of its top folder.
inc_of = $(INC_$(firstword $(subst /, ,$(1))))

# Libraries, by pkg-config where Debian ships a .pc file (NNG 1.5.2 ships
# none: -lnng). Recursive (=): pkg-config runs only when a link needs it.
pc_libs         = $(shell pkg-config --libs $(1))
LDLIBS_CLIENT   = -lnng $(call pc_libs,libprotobuf-c) -lpthread
LDLIBS_SERVICE  = $(call pc_libs,rocksdb libcrypto libmicrohttpd) $(LDLIBS_CLIENT)
JSON_LIBS       = $(call pc_libs,jansson)
LDLIBS_GATEWAY  = $(call pc_libs,libmicrohttpd) $(JSON_LIBS) $(LDLIBS_CLIENT)

# proto/: the shared layer, linked into every program and the library.
PROTO_SRCS   := $(wildcard proto/*.c)
PROTO_OBJS   := $(OBJ)/gen/tokend.pb-c.o $(PROTO_SRCS:%.c=$(OBJ)/%.o)
CLIENT_OBJS  := $(OBJ)/client/tokend.o
SERVICE_SRCS := $(filter-out service/main.c,$(wildcard service/*.c))
SERVICE_OBJS := $(SERVICE_SRCS:%.c=$(OBJ)/%.o)
GATEWAY_SRCS := $(wildcard gateway/*.c)
GATEWAY_OBJS := $(GATEWAY_SRCS:%.c=$(OBJ)/%.o) $(OBJ)/gen/openapi_json.o
TEST_SRCS    := $(wildcard tests/*.c)
TEST_OBJS    := $(TEST_SRCS:%.c=$(OBJ)/%.o)
BENCH_SRCS   := $(wildcard bench/*.c)
BENCH_BINS   := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

BINS := $(BUILD)/tokend $(BUILD)/tokend-gateway $(BUILD)/tokenctl $(BUILD)/libtokend.a \
        $(BUILD)/libtokend.so $(BUILD)/tokend.pc $(BUILD)/tests/run $(BUILD)/tests/crash \
        $(BUILD)/tests/soak $(BENCH_BINS)

.PHONY: all deps check-deps run test asan valgrind crash soak fuzz fuzz-build bench install \
        uninstall format format-check clean
.DEFAULT_GOAL := all

all: check-deps
	@$(MAKE) --no-print-directory build-all

# The recipe that does nothing keeps make from printing "Nothing to be done
# for 'build-all'" under `make`, `make run` and `make test` when all is built.
.PHONY: build-all
build-all: $(BINS)
	@:

# What the build needs, checked without installing anything: a clear line
# naming `make deps` instead of a compiler error three screens down.
check-deps:
	@missing=""; \
	for t in protoc-c pkg-config; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	for m in rocksdb libprotobuf-c libcrypto libmicrohttpd jansson; do \
	  pkg-config --exists $$m 2>/dev/null || missing="$$missing $$m"; done; \
	[ -e /usr/include/nng/nng.h ] || missing="$$missing nng"; \
	if [ -n "$$missing" ]; then \
	  echo "make: missing to build tokend:$$missing. Run 'make deps' (installs Debian's packages)," \
	    "or 'make run' / 'make test', which do it first." >&2; exit 1; \
	fi

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

# --- generated protobuf code (never committed) ---
$(PROTO_GEN): proto/tokend.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto proto/tokend.proto

# The OpenAPI document, embedded as a byte array (od and sed: no xxd needed).
$(GEN)/openapi_json.c: gateway/openapi.json
	@mkdir -p $(GEN)
	{ printf '/* Generated from gateway/openapi.json by the Makefile. */\n'; \
	  printf '#include <stddef.h>\nconst unsigned char gateway_openapi_json[] = {\n'; \
	  od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  printf '};\nconst size_t gateway_openapi_json_len = sizeof(gateway_openapi_json);\n'; \
	} > $@.tmp && mv $@.tmp $@

# Every object depends on the generated header: simplest correct ordering.
$(OBJ)/gen/%.o: $(GEN)/%.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -std=c11 -fPIC -I$(GEN) -MMD -MP -c $< -o $@

$(OBJ)/%.o: %.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(call inc_of,$<) $(SAN) -MMD -MP -c $< -o $@

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)

# --- client library ---
$(BUILD)/libtokend.a: $(PROTO_OBJS) $(CLIENT_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The shared library exports the functions of include/tokend.h and nothing
# else (client/libtokend.map): not the shared layer's rpc_*, not the
# generated protobuf-c code.
$(BUILD)/libtokend.so: $(PROTO_OBJS) $(CLIENT_OBJS) client/libtokend.map
	$(CC) $(CFLAGS) $(SAN) -shared -Wl,-soname,libtokend.so.$(SOVERSION) \
	  -Wl,--version-script=client/libtokend.map -o $@ $(filter %.o,$^) $(LDLIBS_CLIENT)

# A program linked with `pkg-config --libs tokend` finds libtokend.so at
# run time without LD_LIBRARY_PATH or ldconfig: Libs carries an rpath to
# libdir, except under PREFIX=/usr, whose lib is on the loader's own path.
PC_RPATH = $(if $(filter /usr /usr/,$(PREFIX)),, -Wl$(comma)-rpath$(comma)$${libdir})
comma := ,
PC_SED   = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
             -e 's|@RPATH@|$(PC_RPATH)|g'

$(BUILD)/tokend.pc: client/tokend.pc.in include/tokend.h Makefile
	$(PC_SED) $< > $@

# tokenctl events --verify recomputes the audit log's SHA-256 chain.
$(BUILD)/tokenctl: $(OBJ)/client/tokenctl.o $(BUILD)/libtokend.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_CLIENT) $(call pc_libs,libcrypto)

# --- service ---
$(BUILD)/tokend: $(OBJ)/service/main.o $(SERVICE_OBJS) $(PROTO_OBJS)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_SERVICE)

# --- gateway: HTTP in front of the shared layer's RPC client ---
$(BUILD)/tokend-gateway: $(GATEWAY_OBJS) $(PROTO_OBJS)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_GATEWAY)

# --- tests: unit tests link the service modules; integration tests drive
# the real binaries through libtokend, tokenctl and curl (jansson reads the
# gateway's JSON) ---
$(BUILD)/tests/run: $(TEST_OBJS) $(SERVICE_OBJS) $(PROTO_OBJS) $(CLIENT_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_SERVICE) $(JSON_LIBS)

# --- crash-durability driver (tests/crash/README.md) ---
$(BUILD)/tests/crash: $(OBJ)/tests/crash/crash.o $(BUILD)/libtokend.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_CLIENT)

# --- soak driver (docs/reliability.md): plain sockets, no client library ---
$(BUILD)/tests/soak: $(OBJ)/tests/soak/soak.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ -lpthread

# --- fuzz targets (fuzz/README.md): built only by `make fuzz`, with clang ---
FUZZ_LINK := -fsanitize=fuzzer,address,undefined
$(BUILD)/fuzz/fuzz_rpc: $(OBJ)/fuzz/fuzz_rpc.o $(OBJ)/fuzz/inproc.o $(SERVICE_OBJS) \
    $(PROTO_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUZZ_LINK) -o $@ $^ $(LDLIBS_SERVICE)

$(BUILD)/fuzz/fuzz_token: $(OBJ)/fuzz/fuzz_token.o $(OBJ)/proto/token.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUZZ_LINK) -o $@ $^ -lpthread

# The gateway's modules without its main.c, in front of the service's: one
# process, the gateway's own request handling (fuzz/fuzz_gateway.c).
$(BUILD)/fuzz/fuzz_gateway: $(OBJ)/fuzz/fuzz_gateway.o $(OBJ)/fuzz/inproc.o \
    $(filter-out $(OBJ)/gateway/main.o,$(GATEWAY_OBJS)) $(SERVICE_OBJS) $(PROTO_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUZZ_LINK) -o $@ $^ $(LDLIBS_SERVICE) $(LDLIBS_GATEWAY)

fuzz-build: $(BUILD)/fuzz/fuzz_rpc $(BUILD)/fuzz/fuzz_token $(BUILD)/fuzz/fuzz_gateway

# --- bench programs (built by `make`, so they cannot rot; `make bench` runs
# them, bench/README.md). The bulk loader and the raw RocksDB reference are
# built on the service's own modules; the rest are libtokend clients.
BENCH_STORE_BINS := $(BUILD)/bench/bulk_load $(BUILD)/bench/rocksdb_put
$(BENCH_STORE_BINS): $(BUILD)/bench/%: $(OBJ)/bench/%.o $(SERVICE_OBJS) $(PROTO_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_SERVICE)

$(filter-out $(BENCH_STORE_BINS),$(BENCH_BINS)): $(BUILD)/bench/%: $(OBJ)/bench/%.o \
		$(BUILD)/libtokend.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_CLIENT)

# --- running ---
# make run's data dir and addresses. Each is a Makefile variable
# (`make run HTTP=127.0.0.1:8081`), else the programs' own environment
# variable (`TOKEND_GATEWAY_LISTEN=127.0.0.1:8081 make run`), else the
# default. LISTEN and SERVICE may be comma lists, as their variables may;
# the gateway calls tokend's first LISTEN URL unless SERVICE says else.
# Every other TOKEND_* and TOKEND_GATEWAY_* variable reaches the programs
# as it is.
DATA_DIR ?= $(or $(TOKEND_DATA_DIR),./data)
LISTEN   ?= $(or $(TOKEND_LISTEN),tcp://127.0.0.1:7450)
HTTP     ?= $(or $(TOKEND_GATEWAY_LISTEN),127.0.0.1:8080)
SERVICE  ?= $(or $(TOKEND_GATEWAY_SERVICE),$(firstword $(subst $(comma), ,$(LISTEN))))
each_flag = $(foreach v,$(subst $(comma), ,$(2)),$(1) '$(v)')

# tokend and the gateway run side by side under one shell. Its trap turns
# Ctrl-C (SIGINT to the terminal's process group) or a SIGTERM to the shell
# into SIGTERM for both, and the shell waits until both have drained and
# exited; if tokend stops on its own, the gateway is stopped too.
run: deps
	@$(MAKE) --no-print-directory build-all
	@if [ ! -e $(DATA_DIR)/CURRENT ]; then \
	  echo "First start: initialising $(DATA_DIR). The admin token follows; it is shown"; \
	  echo "only this once and stored nowhere (only its digest is kept):"; \
	  echo; \
	  $(BUILD)/tokend init --data-dir '$(DATA_DIR)' || exit 1; \
	  echo; \
	else \
	  echo "$(DATA_DIR) is initialised: use the admin token printed at its first start."; \
	  echo "(Lost it? Stop tokend and remove $(DATA_DIR) to start over.)"; \
	fi
	@printf '%s\n' \
	  "" \
	  "tokend is starting on $(LISTEN), tokend-gateway on http://$(HTTP)" \
	  "(calling tokend on $(SERVICE)). Log lines say proc=tokend or proc=gateway." \
	  "In another terminal, with the CLI:" \
	  "" \
	  "  export TOKEND_URL=$(firstword $(subst $(comma), ,$(LISTEN)))" \
	  "  export TOKEND_CREDENTIAL=<the admin token>" \
	  "  $(BUILD)/tokenctl create --owner partner:acme --name 'ERP sync' --ability orders:read" \
	  "  $(BUILD)/tokenctl verify TOKEN --ability orders:read" \
	  "  $(BUILD)/tokenctl list --owner partner:acme" \
	  "  $(BUILD)/tokenctl revoke ID" \
	  "" \
	  "or over HTTP, with curl:" \
	  "" \
	  "  ADMIN=<the admin token>" \
	  "  curl -si -X POST http://$(HTTP)/v1/tokens -H \"Authorization: Bearer \$$ADMIN\" \\" \
	  "    -H 'Content-Type: application/json' \\" \
	  "    -d '{\"owner\":\"partner:acme\",\"name\":\"ERP sync\",\"abilities\":[\"orders:read\"]}'   # 201" \
	  "  T=<\"token\" of the reply>  ID=<\"id\" of the reply>" \
	  "  curl -i 'http://$(HTTP)/v1/auth?ability=orders:read' -H \"Authorization: Bearer \$$T\"   # 200" \
	  "  curl -i 'http://$(HTTP)/v1/auth?ability=orders:write' -H \"Authorization: Bearer \$$T\"  # 403" \
	  "  curl -i -X DELETE http://$(HTTP)/v1/tokens/\$$ID -H \"Authorization: Bearer \$$ADMIN\"   # 204" \
	  "  curl -i http://$(HTTP)/v1/auth -H \"Authorization: Bearer \$$T\"                        # 401" \
	  "" \
	  "Stop with Ctrl-C." ""
	@$(BUILD)/tokend serve --data-dir '$(DATA_DIR)' $(call each_flag,--listen,$(LISTEN)) & \
	tokend=$$!; \
	$(BUILD)/tokend-gateway --listen '$(HTTP)' $(call each_flag,--service,$(SERVICE)) & \
	gateway=$$!; \
	trap 'kill -TERM $$gateway $$tokend 2>/dev/null' INT TERM; \
	wait $$tokend; status=$$?; \
	while kill -0 $$tokend 2>/dev/null; do wait $$tokend; status=$$?; done; \
	kill -TERM $$gateway 2>/dev/null; wait $$gateway; \
	exit $$status

# The suite, after a short crash-durability run (5 SIGKILLs under load);
# the runner's "N passed, N failed" (", N skipped" where a test may not
# mount, tests/test_faults.c) stays the last line.
KILLS ?= 50
test: deps
	@$(MAKE) --no-print-directory build-all
	$(BUILD)/tests/run

# The benchmark suite (bench/README.md): a table of figures, their
# references and targets, and bench/out/results.json; about 3 minutes.
bench: all
	bash bench/run.sh $(BUILD)

# SIGKILL tokend KILLS times under load; every acknowledged write must survive.
crash: all
	$(BUILD)/tests/crash --kills $(KILLS)

# SOAK_SECONDS of mixed load through the gateway, after a warm-up that lasts
# until tokend's memory levels off; fails on any unexpected error or on RSS
# 5% or more above the warm-up's peak (docs/reliability.md, Soak).
SOAK_SECONDS ?= 600
soak: all
	$(BUILD)/tests/soak --seconds $(SOAK_SECONDS)

# Each fuzz target for FUZZ_SECONDS, on a copy of its committed seeds.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := rpc token gateway
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build BUILD=build-fuzz CC=clang OPT="-O1 -g" \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
	@for t in $(FUZZ_TARGETS); do \
	  rm -rf build-fuzz/work/$$t && mkdir -p build-fuzz/work/$$t/corpus && \
	  cp fuzz/corpus/$$t/* build-fuzz/work/$$t/corpus/ && \
	  dict="" && if [ -f fuzz/$$t.dict ]; then \
	    cp fuzz/$$t.dict build-fuzz/work/$$t/ && dict=-dict=$$t.dict; fi && \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s" && \
	  (cd build-fuzz/work/$$t && ../../fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=8192 -print_final_stats=1 $$dict corpus > fuzz.log 2>&1; rc=$$?; \
	    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)' \
	      fuzz.log; [ $$rc -eq 0 ] || tail -n 40 fuzz.log; exit $$rc) || exit 1; \
	done

# AddressSanitizer + UndefinedBehaviorSanitizer build of everything, in its
# own build dir, then the whole suite against the sanitized binaries.
asan: deps
	@$(MAKE) --no-print-directory build-all BUILD=build-asan OPT="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  build-asan/tests/run

# The integration tests (service_, cli_, gateway_ of tests/list.h) with
# every tokend, tokenctl and tokend-gateway they start run under valgrind
# (TEST_WRAPPER, tests/harness.c). Valgrind's exit code 99 on an error or a
# definite leak fails the test, with the report: tokend's and the gateway's
# through harness_stop/harness_gateway_stop (their log), tokenctl's through
# harness_exec. "Possibly lost" (thread-local storage of RocksDB's and NNG's
# threads still running at exit) is not reported. Valgrind runs a program's
# threads one at a time, so the tests run as two runners side by side (odd
# and even ones of the list), each printing its own lines and counts.
# VALGRIND_EXCLUDE: tests to leave out, should one assume timing that
# valgrind's 10-50x slowdown breaks (none at present).
VALGRIND := valgrind -q --leak-check=full --show-leak-kinds=definite \
            --errors-for-leak-kinds=definite --error-exitcode=99 --track-fds=no
VALGRIND_EXCLUDE ?=
VALGRIND_LIST = sed -n 's/^ *X(\(\(service\|cli\|gateway\)_[a-z0-9_]*\)).*/\1/p' tests/list.h
VALGRIND_RUN  = TEST_WRAPPER="$(VALGRIND)" TEST_TIMEOUT=300 $(BUILD)/tests/run
valgrind: all
	@$(VALGRIND_RUN) $(filter-out $(VALGRIND_EXCLUDE),$(shell $(VALGRIND_LIST) | awk 'NR%2==1')) \
	  > $(BUILD)/valgrind-1.log 2>&1 & one=$$!; \
	$(VALGRIND_RUN) $(filter-out $(VALGRIND_EXCLUDE),$(shell $(VALGRIND_LIST) | awk 'NR%2==0')) \
	  > $(BUILD)/valgrind-2.log 2>&1; two=$$?; \
	wait $$one; one=$$?; \
	cat $(BUILD)/valgrind-1.log $(BUILD)/valgrind-2.log; \
	[ $$one -eq 0 ] && [ $$two -eq 0 ]

# --- install ---
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/tokend
	install -m 755 $(BUILD)/tokend $(BUILD)/tokenctl $(BUILD)/tokend-gateway \
	  $(DESTDIR)$(PREFIX)/bin/
	install -m 644 include/tokend.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 proto/tokend.proto $(DESTDIR)$(PREFIX)/share/tokend/
	install -m 644 $(BUILD)/libtokend.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libtokend.so $(DESTDIR)$(PREFIX)/lib/libtokend.so.$(VERSION)
	ln -sf libtokend.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libtokend.so.$(SOVERSION)
	ln -sf libtokend.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libtokend.so
	$(PC_SED) client/tokend.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tokend.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/tokend.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tokend $(DESTDIR)$(PREFIX)/bin/tokenctl \
	  $(DESTDIR)$(PREFIX)/bin/tokend-gateway \
	  $(DESTDIR)$(PREFIX)/include/tokend.h $(DESTDIR)$(PREFIX)/lib/libtokend.* \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/tokend.pc \
	  $(DESTDIR)$(PREFIX)/share/tokend/tokend.proto
	rmdir $(DESTDIR)$(PREFIX)/share/tokend 2>/dev/null || true

FORMAT_SRCS = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' \
                2>/dev/null || find proto service client gateway tests bench -name '*.[ch]')

format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf build build-asan build-fuzz
