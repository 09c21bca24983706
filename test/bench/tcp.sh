#!/bin/bash
# SPDX-License-Identifier: MIT
#
# TCP benchmark (part of make bench): the pause a TCP peer sees while the other end is dumped
# and restored.  A server holding 64 MiB of touched (pseudo-random) memory streams with a
# client in another network namespace (two namespaces of our own joined by a veth pair), both
# ways, about 4000 8-byte messages a second, each side checking every number
# (test/live/tcp_stream.c).  The server is dumped with --tcp-established (which kills it) and
# restored, in its namespace, BENCH_TCP_ITER times (default 3); each time the client reports
# the longest wait between two reads that brought it data: the pause.  Prints it in ms with
# the dump's and the restore's wall times, and the medians.  At the end both sides must
# still agree on every number (their verdicts).  Exits non-zero when anything fails.

set -u
cd "$(dirname "$0")/../.." || exit 1

CREST=${CREST:-criu/crest}
STREAM=test/live/bin/tcp_stream
ITER=${BENCH_TCP_ITER:-3}
MEM_MB=64
PORT=7100
NS_S=crest-btcp-s-$$
NS_C=crest-btcp-c-$$
S4=10.197.0.1
C4=10.197.0.2

# The restored server is reparented to the nearest child subreaper: that must be us, so it is
# reaped at once (see tree.sh).
if [ "${CREST_BENCH_SUBREAPER:-}" != "$$" ]; then
	if ! make -s --no-print-directory test/live/bin/subreaper "$STREAM" >/dev/null; then
		echo "bench: cannot build test/live/bin/subreaper and $STREAM" >&2
		exit 1
	fi
	export CREST_BENCH_SUBREAPER=$$
	exec test/live/bin/subreaper bash "$0" "$@"
fi

for bin in "$CREST" "$STREAM"; do
	if [ ! -x "$bin" ]; then
		echo "bench: $bin is missing; run 'make bench'" >&2
		exit 1
	fi
done

work=$(mktemp -d "${BENCH_DIR:-/tmp}/crest-bench-tcp.XXXXXX") || exit 1
server=
client=
ns_made=0

# True while pid is one of our stream programs (the PID may have been reused otherwise).
ours() {
	local arg0=""
	[ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
	IFS= read -r -d '' arg0 <"/proc/$1/cmdline" 2>/dev/null
	[ "$arg0" = "$STREAM" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

stop() {
	local pid=$1
	ours "$pid" || return 0
	kill -KILL "$pid" 2>/dev/null
	for _ in $(seq 100); do
		ours "$pid" || break
		sleep 0.05
	done
}

cleanup() {
	stop "$client"
	stop "$server"
	if [ "$ns_made" = 1 ]; then
		ip netns del "$NS_S" 2>/dev/null
		ip netns del "$NS_C" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	local f
	echo "bench: $*" >&2
	for f in "$work"/server.log "$work"/client.log "$work"/img/dump.log "$work"/img/restore.log; do
		if [ -s "$f" ]; then
			echo "--- last lines of $f:" >&2
			tail -n 15 "$f" >&2
		fi
	done
	exit 1
}

in_ns() {
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" "$@"
}

ns_up() {
	ns_made=1
	{ ip netns add "$NS_S" && ip netns add "$NS_C" &&
		ip link add cbs$$ netns "$NS_S" type veth peer name cbc$$ netns "$NS_C" &&
		ip -n "$NS_S" addr add "$S4/24" dev cbs$$ &&
		ip -n "$NS_C" addr add "$C4/24" dev cbc$$ &&
		ip -n "$NS_S" link set cbs$$ up && ip -n "$NS_C" link set cbc$$ up &&
		ip -n "$NS_S" link set lo up && ip -n "$NS_C" link set lo up; } \
		>"$work/netns.err" 2>&1 || die "cannot set up the namespaces: $(head -n 1 "$work/netns.err")"
}

# wait_for FILE REGEX PID WHAT: up to 10 s for a line, while pid lives.
wait_for() {
	for _ in $(seq 500); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		[ -e "/proc/$3" ] || break
		sleep 0.02
	done
	grep -qE "$2" "$1" 2>/dev/null || die "$4"
}

# report PID LOG: ask for a report; sets RX and GAP (ms, the longest wait since the last one).
report() {
	local n line
	n=$(grep -c '^# report ' "$2")
	kill -USR2 "$1" 2>/dev/null || die "cannot signal $1"
	for _ in $(seq 250); do
		[ "$(grep -c '^# report ' "$2")" -gt "$n" ] && break
		sleep 0.02
	done
	line=$(grep '^# report ' "$2" | tail -n 1)
	[[ $line =~ rx=([0-9]+)\ tx=[0-9]+\ gap_ms=([0-9.]+) ]] || die "no report from $1"
	RX=${BASH_REMATCH[1]}
	GAP=${BASH_REMATCH[2]}
}

# secs T0 T1: seconds between two $EPOCHREALTIME values.
secs() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "TCP benchmark: the pause a TCP client sees while its server ($MEM_MB MiB of memory) is" \
	"dumped and restored, $ITER runs, images in $work"
ns_up

# nsenter itself, not in_ns: a function would run in a subshell, with a pid of its own
nsenter --net="/run/netns/$NS_S" "$STREAM" server "$S4" "$PORT" 1 "mem=$MEM_MB" </dev/null \
	>"$work/server.log" 2>&1 &
server=$!
disown "$server"
wait_for "$work/server.log" '^# listening' "$server" "the server is not listening"
nsenter --net="/run/netns/$NS_C" "$STREAM" client "$PORT" "$S4" </dev/null >"$work/client.log" 2>&1 &
client=$!
disown "$client"
wait_for "$work/client.log" '^ready ' "$client" "the client did not connect"
wait_for "$work/server.log" '^ready ' "$server" "the server did not accept"

dumps=()
restores=()
pauses=()
for i in $(seq "$ITER"); do
	rm -rf "$work/img"
	sleep 0.5
	report "$client" "$work/client.log" # from here on: the pause
	t0=$EPOCHREALTIME
	in_ns "$NS_S" "$CREST" dump -t "$server" -D "$work/img" --tcp-established -o dump.log \
		-v4 </dev/null >/dev/null 2>"$work/dump.err" ||
		die "run $i: dump failed: $(head -n 1 "$work/dump.err")"
	t1=$EPOCHREALTIME
	for _ in $(seq 100); do
		[ -e "/proc/$server" ] || break
		sleep 0.01
	done
	[ -e "/proc/$server" ] && die "run $i: pid $server is still there after the dump"
	t2=$EPOCHREALTIME
	size=$(du -sb --exclude='*.log' "$work/img" | awk '{ print $1 }')
	in_ns "$NS_S" "$CREST" restore -D "$work/img" -d -o restore.log -v4 </dev/null \
		>/dev/null 2>"$work/restore.err" ||
		die "run $i: restore failed: $(head -n 1 "$work/restore.err")"
	t3=$EPOCHREALTIME
	ours "$server" || die "run $i: pid $server is not running after the restore"
	# the stream flows again (400 messages, 0.1 s of it), then a little more; each report
	# restarts the longest wait, so the pause is the longest of them all
	report "$client" "$work/client.log"
	base=$RX
	pause=$GAP
	for _ in $(seq 100); do
		sleep 0.1
		report "$client" "$work/client.log"
		pause=$(awk -v a="$pause" -v b="$GAP" 'BEGIN { print (b > a) ? b : a }')
		[ "$RX" -ge $((base + 400)) ] && break
	done
	[ "$RX" -ge $((base + 400)) ] || die "run $i: the stream does not flow after the restore"
	sleep 0.3
	report "$client" "$work/client.log"
	pause=$(awk -v a="$pause" -v b="$GAP" 'BEGIN { print (b > a) ? b : a }')
	d=$(secs "$t0" "$t1")
	r=$(secs "$t2" "$t3")
	printf 'run %d: client pause %8.1f ms   dump %6.3f s   restore %6.3f s   images %d MiB\n' \
		"$i" "$pause" "$d" "$r" $((size >> 20))
	dumps+=("$d")
	restores+=("$r")
	pauses+=("$pause")
done

# both ends must still agree on every number
kill -TERM "$client" "$server" 2>/dev/null
wait_for "$work/client.log" '^(PASS|FAIL)' "$client" "no verdict from the client"
wait_for "$work/server.log" '^(PASS|FAIL)' "$server" "no verdict from the server"
grep -q '^PASS' "$work/client.log" || die "the client: $(grep -m1 '^FAIL' "$work/client.log")"
grep -q '^PASS' "$work/server.log" || die "the server: $(grep -m1 '^FAIL' "$work/server.log")"

echo
echo "results (median of $ITER runs)"
printf 'client pause:  %8.1f ms  (longest wait for data across dump + restore)\n' \
	"$(median "${pauses[@]}")"
printf 'dump:          %8.3f s\n' "$(median "${dumps[@]}")"
printf 'restore:       %8.3f s\n' "$(median "${restores[@]}")"
exit 0
