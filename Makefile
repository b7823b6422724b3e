# tokend — build, test, run and install.
#
#   make            build everything (service, client library, tokenctl, tests, bench)
#   make run        install missing packages, build, init ./data, start tokend
#   make test       install missing packages, build, run the test suite
#   make asan       the test suite built with AddressSanitizer + UBSan
#   make install    PREFIX=/usr/local DESTDIR= : binaries, tokend.h, libs, tokend.pc
#   make format     clang-format every source file in place
#   make deps       apt-get install the Debian packages that are missing
#   make clean      remove build outputs

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
VERSION := 0.1.0

# Debian 12 packages the build and tests need; `make deps` installs the
# missing ones (and only those).
DEB_PACKAGES := gcc make pkg-config libc6-dev libnng-dev libprotobuf-c-dev \
                protobuf-c-compiler librocksdb-dev libssl-dev clang-format

CC      ?= cc
OPT     ?= -O2 -g
CFLAGS  ?= $(OPT)
XCFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC \
           -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Iproto -Iclient -Iservice -I$(BUILD)/gen
SAN     ?=
LDLIBS_CLIENT  := -lnng -lprotobuf-c -lpthread
LDLIBS_SERVICE := -lrocksdb -lnng -lprotobuf-c -lcrypto -lpthread

GEN      := $(BUILD)/gen
OBJ      := $(BUILD)/obj
PROTO_GEN := $(GEN)/tokend.pb-c.c $(GEN)/tokend.pb-c.h

PROTO_OBJS   := $(OBJ)/gen/tokend.pb-c.o $(OBJ)/proto/rpc.o
CLIENT_OBJS  := $(OBJ)/client/tokend.o
SERVICE_SRCS := $(filter-out service/main.c,$(wildcard service/*.c))
SERVICE_OBJS := $(SERVICE_SRCS:%.c=$(OBJ)/%.o)
TEST_SRCS    := $(wildcard tests/*.c)
TEST_OBJS    := $(TEST_SRCS:%.c=$(OBJ)/%.o)
BENCH_SRCS   := $(wildcard bench/*.c)
BENCH_BINS   := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

BINS := $(BUILD)/tokend $(BUILD)/tokenctl $(BUILD)/libtokend.a \
        $(BUILD)/libtokend.so $(BUILD)/tokend.pc $(BUILD)/tests/run $(BENCH_BINS)

.PHONY: all deps run test asan install uninstall format format-check clean bench-build
.DEFAULT_GOAL := all

all: deps
	@$(MAKE) --no-print-directory build-all

.PHONY: build-all
build-all: $(BINS)

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

# Every object depends on the generated header: simplest correct ordering.
$(OBJ)/gen/%.o: $(GEN)/%.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -std=c11 -fPIC -I$(GEN) -MMD -c $< -o $@

$(OBJ)/%.o: %.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(SAN) -MMD -c $< -o $@

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)

# --- client library ---
$(BUILD)/libtokend.a: $(PROTO_OBJS) $(CLIENT_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libtokend.so: $(PROTO_OBJS) $(CLIENT_OBJS)
	$(CC) $(CFLAGS) $(SAN) -shared -Wl,-soname,libtokend.so.0 -o $@ $^ $(LDLIBS_CLIENT)

$(BUILD)/tokend.pc: client/tokend.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

$(BUILD)/tokenctl: $(OBJ)/client/tokenctl.o $(BUILD)/libtokend.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_CLIENT)

# --- service ---
$(BUILD)/tokend: $(OBJ)/service/main.o $(SERVICE_OBJS) $(PROTO_OBJS)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_SERVICE)

# --- tests: unit tests link the service modules; integration tests drive
# the real binaries through libtokend and tokenctl ---
$(BUILD)/tests/run: $(TEST_OBJS) $(SERVICE_OBJS) $(PROTO_OBJS) $(CLIENT_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_SERVICE)

# --- bench programs (built by `make`, so they cannot rot; run by hand) ---
$(BUILD)/bench/%: $(OBJ)/bench/%.o $(BUILD)/libtokend.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS_CLIENT)

# --- running ---
DATA_DIR ?= ./data
LISTEN   ?= tcp://127.0.0.1:7450

run: all
	@if [ ! -e $(DATA_DIR)/CURRENT ]; then \
	  echo "First start: initialising $(DATA_DIR). The admin token follows; it is shown"; \
	  echo "only this once and stored nowhere (only its digest is kept):"; \
	  echo; \
	  $(BUILD)/tokend init --data-dir $(DATA_DIR) || exit 1; \
	  echo; \
	else \
	  echo "$(DATA_DIR) is initialised: use the admin token printed at its first start."; \
	  echo "(Lost it? Stop tokend and remove $(DATA_DIR) to start over.)"; \
	fi
	@printf '%s\n' \
	  "" \
	  "tokend is starting on $(LISTEN). In another terminal:" \
	  "" \
	  "  export TOKEND_URL=$(LISTEN)" \
	  "  export TOKEND_CREDENTIAL=<the admin token>" \
	  "  $(BUILD)/tokenctl create --owner partner:acme --name 'ERP sync' --ability orders:read" \
	  "  $(BUILD)/tokenctl verify TOKEN --ability orders:read" \
	  "  $(BUILD)/tokenctl list --owner partner:acme" \
	  "  $(BUILD)/tokenctl revoke ID" \
	  "" \
	  "Stop with Ctrl-C." ""
	exec $(BUILD)/tokend serve --data-dir $(DATA_DIR) --listen $(LISTEN)

test: all
	$(BUILD)/tests/run

# AddressSanitizer + UndefinedBehaviorSanitizer build of everything, in its
# own build dir, then the whole suite against the sanitized binaries.
asan: deps
	@$(MAKE) --no-print-directory build-all BUILD=build-asan OPT="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  build-asan/tests/run

# --- install ---
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/tokend $(BUILD)/tokenctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 client/tokend.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libtokend.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libtokend.so $(DESTDIR)$(PREFIX)/lib/libtokend.so.$(VERSION)
	ln -sf libtokend.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libtokend.so.0
	ln -sf libtokend.so.0 $(DESTDIR)$(PREFIX)/lib/libtokend.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' client/tokend.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tokend.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/tokend.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tokend $(DESTDIR)$(PREFIX)/bin/tokenctl \
	  $(DESTDIR)$(PREFIX)/include/tokend.h $(DESTDIR)$(PREFIX)/lib/libtokend.* \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/tokend.pc

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find proto service client tests bench -name '*.[ch]')

format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf build build-asan
