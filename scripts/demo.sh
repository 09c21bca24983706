#!/bin/bash
# SPDX-License-Identifier: MIT
#
# crest demo: checkpoint a running counter, show it is gone, restore it with the same PID and
# show it counting on from where it stopped; then the same for the sample container
# (scripts/demo-container.sh).  Run through `make demo` (which builds first), as
# root.  Exits non-zero when the restored counter did not continue.

set -u
cd "$(dirname "$0")/.." || exit 1

CREST=${CREST:-criu/crest}
COUNTER=build/demo-counter

for bin in "$CREST" "$COUNTER"; do
	if [ ! -x "$bin" ]; then
		echo "demo: $bin is missing; run 'make demo'" >&2
		exit 1
	fi
done

work=$(mktemp -d /tmp/crest-demo.XXXXXX) || exit 1
imgs=$work/images
log=$work/counter.log
mkdir "$imgs"
pid=

step() {
	printf '\n==> %s\n' "$*"
}

# True while $1 is our counter and not yet dead.  A zombie counts as dead: after a detached
# restore the counter's parent is whoever adopted it, and that may take its time to reap.
counter_alive() {
	local state
	[ -n "$1" ] || return 1
	grep -qs demo-counter "/proc/$1/cmdline" || return 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ]
}

# Kill only our counter (checked by name, so a reused PID is left alone) and wait for it.
stop_counter() {
	counter_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 50); do
		counter_alive "$pid" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	for _ in $(seq 50); do
		counter_alive "$pid" || return 0
		sleep 0.1
	done
	echo "demo: could not stop pid $pid" >&2
}

cleanup() {
	stop_counter
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "demo: FAILED: $*" >&2
	for f in "$imgs/dump.log" "$imgs/restore.log"; do
		if [ -s "$f" ]; then
			echo "--- last lines of $f:" >&2
			tail -n 15 "$f" >&2
		fi
	done
	exit 1
}

last_count() {
	sed -n 's/^count \([0-9][0-9]*\)$/\1/p' "$log" | tail -n 1
}

step "Starting the counter: it appends 'count N' to $log every 100 ms"
"$COUNTER" </dev/null >>"$log" 2>&1 &
pid=$!
# Bash still reaps a disowned child, but does not report its death by SIGKILL at the dump.
disown "$pid"
echo "counter pid: $pid"
sleep 1
tail -n 3 "$log"

step "crest dump -t $pid -D $imgs -o dump.log -v4"
"$CREST" dump -t "$pid" -D "$imgs" -o dump.log -v4 || fail "dump"
# The counter is our child: the restore needs its PID, so wait until bash has reaped it.
for _ in $(seq 50); do
	[ -e "/proc/$pid" ] || break
	sleep 0.1
done
counter_alive "$pid" && fail "pid $pid is still running after the dump"
[ -e "/proc/$pid" ] && fail "pid $pid was not reaped after the dump"
lines_at_dump=$(wc -l <"$log")
before=$(last_count)
[ -n "$before" ] || fail "the counter wrote nothing before the dump"
echo "dumped; the last line written was 'count $before'"

step "The process is gone"
if kill -0 "$pid" 2>/dev/null; then
	fail "pid $pid still exists after the dump"
fi
echo "kill -0 $pid: no such process"
ps -o pid,cmd -p "$pid" || true

step "The images"
ls -l "$imgs"
if [ -e "$imgs/core-$pid.img" ]; then
	echo "crest show $imgs/core-$pid.img | head -n 20:"
	"$CREST" show "$imgs/core-$pid.img" | head -n 20
fi

step "crest restore -D $imgs -d -o restore.log -v4"
"$CREST" restore -D "$imgs" -d -o restore.log -v4 || fail "restore"
sleep 1

step "The same PID is back"
ps -o pid,cmd -p "$pid" || fail "pid $pid is not running after the restore"
counter_alive "$pid" || fail "pid $pid is not the running counter"

step "The log goes on from where it stopped"
tail -n +"$((lines_at_dump > 3 ? lines_at_dump - 2 : 1))" "$log" | head -n 6
echo "..."
tail -n 2 "$log"

# Every line written after the dump must continue the sequence exactly: count before+1,
# before+2, ...  A restart from 0, a gap or a repeat means the restore did not resume.
after=$(tail -n +"$((lines_at_dump + 1))" "$log" | sed -n 's/^count \([0-9][0-9]*\)$/\1/p')
[ -n "$after" ] || fail "the restored counter wrote nothing"
expect=$((before + 1))
for n in $after; do
	[ "$n" -eq "$expect" ] || fail "expected 'count $expect' after the restore, found 'count $n'"
	expect=$((expect + 1))
done
now=$((expect - 1))
[ "$now" -gt "$before" ] || fail "the count did not advance past $before"

step "Stopping the restored counter (pid $pid)"
stop_counter
counter_alive "$pid" && fail "pid $pid did not stop"

printf '\ndemo: OK: pid %s stopped at count %s, was restored and counted on to %s\n' \
	"$pid" "$before" "$now"

# Part 2: a whole container, with its namespaces, IPC objects and mounts.
bash scripts/demo-container.sh || exit 1
