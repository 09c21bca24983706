#!/bin/bash
# SPDX-License-Identifier: MIT
#
# make bench: dump and restore a process holding 1 GiB of anonymous memory (half random, a
# quarter zero pages, a quarter repetitive text) BENCH_ITER times (default 5), and compare the
# median times with two baselines measured in the same run on the same filesystem: memcpy of
# 1 GiB and writing 1 GiB to the page cache.  Targets (issue 2): dump <= 2x and restore <= 3x
# the page-cache write.  Then test/bench/tree.sh: a tree of 100 processes x 4 threads, and
# test/bench/predump.sh: pre-dump rounds of 1 GiB rewritten at 50 MB/s, then the final dump,
# and test/bench/pageserver.sh: page server throughput against a plain TCP stream, and lz4,
# and test/bench/tcp.sh: the pause a TCP peer sees across a dump and restore of its server,
# and test/bench/migrate.sh: live migration of 1 GiB rewritten at 50 MB/s between two emulated
# hosts, against stop-and-copy of the same workload.
# Exits non-zero when a dump or restore fails; with BENCH_STRICT=1 also when a target is missed.
# BENCH_DIR picks the directory for images (default /tmp).

set -u
cd "$(dirname "$0")/../.." || exit 1

CREST=${CREST:-criu/crest}
WORKLOAD=build/bench/bench-workload
BASELINE=build/bench/baseline
ITER=${BENCH_ITER:-5}
DUMP_TARGET=2
RESTORE_TARGET=3

for bin in "$CREST" "$WORKLOAD" "$BASELINE"; do
	if [ ! -x "$bin" ]; then
		echo "bench: $bin is missing; run 'make bench'" >&2
		exit 1
	fi
done

work=$(mktemp -d "${BENCH_DIR:-/tmp}/crest-bench.XXXXXX") || exit 1
imgs=$work/images
pid=

# True while $1 is our workload and not dead yet; a zombie is dead (its memory is freed) even
# if whoever adopted it after a detached restore has not reaped it yet.
workload_alive() {
	local state
	[ -n "$1" ] || return 1
	grep -qs bench-workload "/proc/$1/cmdline" || return 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ]
}

# Kill only our workload (checked by name: the PID may have been reused) and wait for it.
stop_workload() {
	workload_alive "$pid" || return 0
	kill -KILL "$pid" 2>/dev/null
	for _ in $(seq 100); do
		workload_alive "$pid" || break
		sleep 0.05
	done
	pid=
}

cleanup() {
	stop_workload
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "bench: $*" >&2
	for f in "$imgs/dump.log" "$imgs/restore.log"; do
		if [ -s "$f" ]; then
			echo "--- last lines of $f:" >&2
			tail -n 15 "$f" >&2
		fi
	done
	exit 1
}

# After a dump the workload must be gone, and reaped (bash does that for its children), so its
# PID is free for the restore.  Bounded: a dump that wrongly left it running must not hang us.
reap_dumped() {
	for _ in $(seq 100); do
		[ -e "/proc/$pid" ] || return 0
		sleep 0.05
	done
	return 1
}

# Run "$@" and print its wall time in seconds; the command's stderr goes to ours.
timed() {
	local t0=$EPOCHREALTIME rc
	"$@" >/dev/null
	rc=$?
	awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
	return $rc
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

start_workload() {
	local out=$work/workload.out
	: >"$out"
	# A regular file, not a pipe, for stdout: the engine dumps regular files.
	"$WORKLOAD" </dev/null >"$out" 2>&1 &
	pid=$!
	# Bash still reaps a disowned child, but does not report its death by SIGKILL.
	disown "$pid"
	for _ in $(seq 600); do
		grep -q ready "$out" && return 0
		kill -0 "$pid" 2>/dev/null || die "the workload died: $(cat "$out")"
		sleep 0.05
	done
	die "the workload did not get ready in 30 s"
}

echo "crest benchmark: 1 GiB anonymous (1/2 random, 1/4 zero, 1/4 text), $ITER runs, images in $work"
echo "measuring baselines..."
base=$("$BASELINE" "$work") || die "baseline failed"
memcpy_s=$(awk '$1 == "memcpy_s" { print $2 }' <<<"$base")
write_s=$(awk '$1 == "pagecache_write_s" { print $2 }' <<<"$base")
printf 'memcpy of 1 GiB:               %8.3f s\n' "$memcpy_s"
printf 'page-cache write of 1 GiB:     %8.3f s\n' "$write_s"

dumps=()
restores=()
size=0
for i in $(seq "$ITER"); do
	rm -rf "$imgs"
	mkdir "$imgs"
	sync
	start_workload

	d=$(timed "$CREST" dump -t "$pid" -D "$imgs" -o dump.log -v2) || die "run $i: dump of pid $pid failed"
	reap_dumped || die "run $i: pid $pid is still there after the dump"
	size=$(du -sb --exclude='*.log' "$imgs" | awk '{ print $1 }')

	r=$(timed "$CREST" restore -D "$imgs" -d -o restore.log -v2) || die "run $i: restore failed"
	workload_alive "$pid" || die "run $i: pid $pid is not running after the restore"
	stop_workload

	printf 'run %d: dump %6.3f s   restore %6.3f s   images %d MiB\n' "$i" "$d" "$r" \
		$((size >> 20))
	dumps+=("$d")
	restores+=("$r")
done

dump_med=$(median "${dumps[@]}")
restore_med=$(median "${restores[@]}")
dump_x=$(ratio "$dump_med" "$write_s")
restore_x=$(ratio "$restore_med" "$write_s")
dump_ok=$(awk -v r="$dump_x" -v t=$DUMP_TARGET 'BEGIN { print (r <= t) ? "met" : "NOT met" }')
restore_ok=$(awk -v r="$restore_x" -v t=$RESTORE_TARGET 'BEGIN { print (r <= t) ? "met" : "NOT met" }')

echo
echo "results (median of $ITER runs)"
printf 'dump:     %6.3f s  = %5sx page-cache write, %5sx memcpy   target <= %dx: %s\n' \
	"$dump_med" "$dump_x" "$(ratio "$dump_med" "$memcpy_s")" $DUMP_TARGET "$dump_ok"
printf 'restore:  %6.3f s  = %5sx page-cache write, %5sx memcpy   target <= %dx: %s\n' \
	"$restore_med" "$restore_x" "$(ratio "$restore_med" "$memcpy_s")" $RESTORE_TARGET \
	"$restore_ok"
printf 'images:   %d MiB (of 1024 MiB of memory)\n' $((size >> 20))

# The tree of 100 processes x 4 threads (issue 3); its own script, with its own images.
echo
bash test/bench/tree.sh
tree_rc=$?

# Iterative pre-copy (issue 7): its own script, with its own images.
echo
bash test/bench/predump.sh
predump_rc=$?
[ "$tree_rc" = 0 ] && tree_rc=$predump_rc

# The page server against a plain TCP stream on loopback, and lz4 (issue 7): its own script.
echo
bash test/bench/pageserver.sh
pageserver_rc=$?
[ "$tree_rc" = 0 ] && tree_rc=$pageserver_rc

# The pause a TCP client sees while its server is dumped and restored: its own script.
echo
bash test/bench/tcp.sh
tcp_rc=$?
[ "$tree_rc" = 0 ] && tree_rc=$tcp_rc

# Live migration against stop-and-copy between two emulated hosts: its own script.
echo
bash test/bench/migrate.sh
migrate_rc=$?
[ "$tree_rc" = 0 ] && tree_rc=$migrate_rc

if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$dump_ok$restore_ok" != metmet ]; then
	exit 1
fi
exit $tree_rc
