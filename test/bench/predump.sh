#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Pre-dump benchmark (part of make bench): a process with 1 GiB of private anonymous memory
# that rewrites it at 50 MB/s (build/bench/dirty-workload) is pre-dumped BENCH_PREDUMP_ROUNDS
# times (default 5), BENCH_PREDUMP_PAUSE seconds apart (default 0.2), then dumped on top of the
# last round; the chain is restored to show it is whole.  Reported from each round's --stats:
# pages scanned, copied and unchanged, the time the tree was stopped and the round's total.
# Compared with a plain dump (--leave-running) of the same workload in the same run.
# Target (issue 7): the final dump freezes the workload for under 100 ms (until it is killed;
# the kernel's teardown of its memory after SIGKILL is printed apart).  Exits non-zero when
# a dump or the restore fails; with BENCH_STRICT=1 also when the target is missed.  BENCH_DIR
# picks the directory for images (default /tmp).

set -u
cd "$(dirname "$0")/../.." || exit 1

CREST=${CREST:-criu/crest}
WORKLOAD=build/bench/dirty-workload
ROUNDS=${BENCH_PREDUMP_ROUNDS:-5}
PAUSE=${BENCH_PREDUMP_PAUSE:-0.2}
RATE_MBS=50
TARGET_MS=100

# Holders of the tracking between rounds and the restored workload are reparented to the
# nearest child subreaper: that must be us, so they are reaped at once (see tree.sh).
if [ "${CREST_BENCH_SUBREAPER:-}" != "$$" ]; then
	if ! make -s --no-print-directory test/live/bin/subreaper >/dev/null; then
		echo "bench: cannot build test/live/bin/subreaper" >&2
		exit 1
	fi
	export CREST_BENCH_SUBREAPER=$$
	exec test/live/bin/subreaper bash "$0" "$@"
fi

for bin in "$CREST" "$WORKLOAD"; do
	if [ ! -x "$bin" ]; then
		echo "bench: $bin is missing; run 'make bench'" >&2
		exit 1
	fi
done

work=$(mktemp -d "${BENCH_DIR:-/tmp}/crest-bench-predump.XXXXXX") || exit 1
pid=
last_log=

# True while $1 is our workload and not dead yet (a zombie is dead).
workload_alive() {
	local state
	[ -n "$1" ] || return 1
	grep -qs dirty-workload "/proc/$1/cmdline" || return 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ]
}

stop_workload() {
	workload_alive "$pid" || return 0
	kill -KILL "$pid" 2>/dev/null
	for _ in $(seq 100); do
		workload_alive "$pid" || break
		sleep 0.05
	done
}

# The tracking holder a round left, if it still runs: ours to end when we stop early.
stop_holder() {
	local h
	[ -e "$1/track.img" ] || return 0
	h=$("$CREST" show "$1/track.img" 2>/dev/null | sed -n 's/.*"holder_pid": *\([0-9]*\).*/\1/p')
	[ -n "$h" ] && [ "$(cat "/proc/$h/comm" 2>/dev/null)" = crest-track ] && kill -KILL "$h"
}

cleanup() {
	local d
	stop_workload
	for d in "$work"/*/; do stop_holder "$d"; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "bench: $*" >&2
	if [ -n "$last_log" ] && [ -s "$last_log" ]; then
		echo "--- last lines of $last_log:" >&2
		tail -n 15 "$last_log" >&2
	fi
	exit 1
}

# Number after "KEY": in a stats file.
stat_of() {
	sed -n "s/^ *\"$2\": *\([0-9.]*\),\{0,1\}\$/\1/p" "$1"
}

# Run crest; prints its wall time in ms.
timed() {
	local t0=$EPOCHREALTIME rc
	"$CREST" "$@" >/dev/null 2>"$work/crest.err"
	rc=$?
	awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
	return $rc
}

# One result line from a round's stats: pages scanned / copied / unchanged, stopped, total.
report() {
	local name=$1 f=$2 wall=$3 stopped
	stopped=$(awk -v a="$(stat_of "$f" freezing_ms)" -v b="$(stat_of "$f" frozen_ms)" \
		'BEGIN { printf "%.1f", a + b }')
	printf '%-11s %9s %9s %9s %8d   %9s %9s %9s\n' "$name" "$(stat_of "$f" pages_scanned)" \
		"$(stat_of "$f" pages_written)" "$(stat_of "$f" pages_unchanged)" \
		$(($(stat_of "$f" bytes_written) >> 20)) "$stopped" \
		"$(printf '%.1f' "$(stat_of "$f" total_ms)")" "$wall"
	echo "$stopped" >"$f.stopped"
}

out=$work/workload.out
"$WORKLOAD" "$RATE_MBS" </dev/null >"$out" 2>&1 &
pid=$!
disown "$pid"
for _ in $(seq 600); do
	grep -q ready "$out" && break
	kill -0 "$pid" 2>/dev/null || die "the workload died: $(cat "$out")"
	sleep 0.05
done
grep -q ready "$out" || die "the workload did not get ready in 30 s"

echo "crest pre-dump benchmark: 1 GiB anonymous rewritten at $RATE_MBS MB/s, $ROUNDS pre-dump" \
	"rounds $PAUSE s apart, images in $work"
printf '%-11s %9s %9s %9s %8s   %9s %9s %9s\n' "" scanned copied unchanged MiB "stopped" \
	"total" "wall"
printf '%-11s %9s %9s %9s %8s   %9s %9s %9s\n' "" pages pages pages "" ms ms ms

# The plain dump first: it leaves the workload running and untracked.
last_log=$work/plain/dump.log
mkdir -p "$work/plain"
wall=$(timed dump -t "$pid" -D "$work/plain" -R --stats -o dump.log -v3) ||
	die "plain dump failed: $(head -n 1 "$work/crest.err")"
report "plain dump" "$work/plain/stats-dump.json" "$wall"
plain_ms=$(cat "$work/plain/stats-dump.json.stopped")
rm -rf "$work/plain/"*.img
workload_alive "$pid" || die "the workload does not run after the plain dump"
sleep 1

prev=""
for r in $(seq "$ROUNDS"); do
	last_log=$work/$r/pd.log
	mkdir -p "$work/$r"
	# shellcheck disable=SC2086
	wall=$(timed pre-dump -t "$pid" -D "$work/$r" ${prev:+--prev-images-dir ../$prev} --stats \
		-o pd.log -v3) || die "pre-dump round $r failed: $(head -n 1 "$work/crest.err")"
	report "pre-dump $r" "$work/$r/stats-predump.json" "$wall"
	prev=$r
	sleep "$PAUSE"
done

last_log=$work/final/dump.log
mkdir -p "$work/final"
wall=$(timed dump -t "$pid" -D "$work/final" --prev-images-dir "../$prev" --stats -o dump.log \
	-v3) || die "final dump failed: $(head -n 1 "$work/crest.err")"
report "final dump" "$work/final/stats-dump.json" "$wall"
final_ms=$(cat "$work/final/stats-dump.json.stopped")
for _ in $(seq 100); do
	[ -e "/proc/$pid" ] || break
	sleep 0.05
done
[ -e "/proc/$pid" ] && die "pid $pid is still there after the final dump"

last_log=$work/final/restore.log
wall=$(timed restore -D "$work/final" -d -o restore.log -v3) ||
	die "restore of the chain failed: $(head -n 1 "$work/crest.err")"
workload_alive "$pid" || die "pid $pid is not running after the restore"
echo "restore of the $((ROUNDS + 1))-image chain: $wall ms"
stop_workload

ok=$(awk -v f="$final_ms" -v t=$TARGET_MS 'BEGIN { print (f < t) ? "met" : "NOT met" }')
echo
printf 'final dump stopped the workload %.1f ms, a plain dump %.1f ms (%.0fx longer)\n' \
	"$final_ms" "$plain_ms" "$(awk -v a="$plain_ms" -v b="$final_ms" \
		'BEGIN { print (b > 0 ? a / b : 0) }')"
printf 'after the final dump the kernel took %.1f ms more to tear the killed workload down\n' \
	"$(stat_of "$work/final/stats-dump.json" teardown_ms)"
echo "target: final-dump freeze under $TARGET_MS ms: $ok"
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$ok" != met ]; then
	exit 1
fi
exit 0
