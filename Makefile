# crest: checkpoint/restore and live migration for Linux process trees.
#   make          build criu/crest and lib/libcrest.a
#   make test     install deps, build, run unit + live tests (ends with "N passed, N failed")
#   make demo     install deps, build, checkpoint and restore a sample counter
#   make bench    dump/restore benchmark against memcpy and page-cache baselines

CC	?= gcc
PREFIX	?= /usr/local
CFLAGS	?= -O2 -g
CFLAGS	+= -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	   -fno-strict-aliasing -MMD -MP
CPPFLAGS += -Iinclude -Icriu -Ibuild/images -I/usr/include/libnl3
LDLIBS	:= -lprotobuf-c -llz4 -lssl -lcrypto -lz -lnftables -lnet -lnl-route-3 -lnl-3

B	:= build
PROTOS	:= $(wildcard images/*.proto)
PB_C	:= $(patsubst images/%.proto,$(B)/images/%.pb-c.c,$(PROTOS))
PB_H	:= $(PB_C:.c=.h)
PB_O	:= $(PB_C:.c=.o)
ENGINE_SRCS := $(filter-out criu/main.c,$(wildcard criu/*.c)) $(wildcard lib/*.c)
ENGINE_O := $(patsubst %.c,$(B)/%.o,$(ENGINE_SRCS))
LIVE_SRCS := $(wildcard test/live/*.c)
LIVE_BINS := $(patsubst test/live/%.c,test/live/bin/%,$(filter-out test/live/testlib.c,$(LIVE_SRCS)))
UNIT_SRCS := $(wildcard test/unit/*.c)
BENCH_SRCS := $(wildcard test/bench/*.c)
BENCH_BINS := $(patsubst test/bench/%.c,$(B)/bench/%,$(BENCH_SRCS))

all: criu/crest lib/libcrest.a

$(B)/images/%.pb-c.c $(B)/images/%.pb-c.h: images/%.proto
	@mkdir -p $(B)/images
	protoc-c --proto_path=images --c_out=$(B)/images $<

$(B)/images/%.pb-c.o: $(B)/images/%.pb-c.c | $(PB_H)
	$(CC) $(CFLAGS) $(CPPFLAGS) -Wno-unused -c -o $@ $<

# Every engine object may include any generated header.
$(B)/%.o: %.c | $(PB_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPPFLAGS) -c -o $@ $<

lib/libcrest.a: $(ENGINE_O) $(PB_O)
	@mkdir -p lib
	$(AR) rcs $@ $^

criu/crest: $(B)/criu/main.o lib/libcrest.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

test/live/bin/%: test/live/%.c test/live/testlib.c test/live/testlib.h
	@mkdir -p test/live/bin
	$(CC) -O1 -g -std=gnu11 -D_GNU_SOURCE -Wall -o $@ $< test/live/testlib.c -lpthread -lrt -lm

test/unit/unit-tests: $(UNIT_SRCS) lib/libcrest.a
	$(CC) $(CFLAGS) $(CPPFLAGS) -o $@ $(UNIT_SRCS) lib/libcrest.a -lcriterion $(LDLIBS)

$(B)/bench/%: test/bench/%.c
	@mkdir -p $(B)/bench
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -o $@ $< -lm

deps:
	@bash scripts/install-deps.sh

build-tests: all $(LIVE_BINS) test/unit/unit-tests $(B)/ctr-service

test: deps
	@$(MAKE) --no-print-directory build-tests
	@bash test/run-all.sh

unit: build-tests
	@./test/unit/unit-tests

live: build-tests
	@bash test/live/run.sh

demo: deps
	@$(MAKE) --no-print-directory all $(B)/demo-counter $(B)/ctr-service
	@bash scripts/demo.sh

# The demo's workload: a counter that logs a line every 100 ms.
$(B)/demo-counter: scripts/demo-counter.c
	@mkdir -p $(B)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -o $@ $<

# The sample container's service (scripts/container.sh): static, it runs in a bare rootfs.
$(B)/ctr-service: scripts/ctr-service.c
	@mkdir -p $(B)
	$(CC) -O2 -static -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -o $@ $<

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@bash test/bench/run.sh

install: all
	install -D -m 0755 criu/crest $(DESTDIR)$(PREFIX)/sbin/crest
	install -D -m 0644 lib/libcrest.a $(DESTDIR)$(PREFIX)/lib/libcrest.a
	install -D -m 0644 include/crest.h $(DESTDIR)$(PREFIX)/include/crest.h
	install -D -m 0644 Documentation/crest.8 $(DESTDIR)$(PREFIX)/share/man/man8/crest.8

format:
	clang-format -i $(wildcard criu/*.c criu/*.h lib/*.c include/*.h include/compat/*.h test/live/*.c test/live/*.h test/unit/*.c test/bench/*.c scripts/*.c)

clean:
	rm -rf $(B) criu/crest lib/libcrest.a test/live/bin test/unit/unit-tests

.PHONY: all deps build-tests test unit live demo bench install format clean
.SECONDARY: $(PB_C) $(PB_H)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
