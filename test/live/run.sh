#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Live test runner.  Each test program (test/live/<name>.c) builds one piece of state, prints
# "ready <pid>", waits for SIGTERM, checks its state and prints PASS or FAIL.  Modes:
#
#   <prog>                  start, dump (the process dies), check it is gone, restore with the
#                           same PID, SIGTERM, read the verdict
#   leave_running/<prog>    dump with --leave-running, check the process runs on untouched,
#                           SIGTERM it, read the verdict
#   plain/<prog>            (--plain only) no dump at all: checks the program itself
#
# and negative tests: dump_nopid, dump_unsupported, dump_enospc, restore_pid_taken,
# restore_file_changed, restore_corrupt/<variant>.
#
# Usage: run.sh [--plain] [--keep] [--list] [TEST|GROUP|PROGRAM|GLOB ...]
# Prints "PASS name" or "FAIL name (reason)" per test and ends with "N passed, N failed";
# exits 1 when anything failed.

set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/test/live/bin
CREST=${CREST:-$ROOT/criu/crest}

PROGRAMS=(counter nanosleep poll futex memory fpu signals itimer posix_timer files
	cwd_umask_rlimit pid brk creds rseq
	tree3 prefork threads200 futex_threads zombies reparent shared_anon tg_signals forker)
HELPERS=(unsupported) # programs only the negative tests use
CORRUPTIONS=(inventory_version core_magic core_flip_tail core_flip_middle core_truncated
	core_extended mm_missing pagemap_flip pages_truncated control)

READY_MS=10000	 # a program must say ready within this
VERDICT_MS=15000 # and give its verdict this long after SIGTERM
GONE_MS=5000	 # a killed or finished process must be gone within this
CREST_TIMEOUT=60 # hard limit for one crest command
RUN_BEFORE=0.2	 # let a program run this long (seconds) after ready before the dump,
RUN_AFTER=0.3	 # and a restored or dumped one this long before SIGTERM

# A restored process is detached: its restorer exits and the kernel reparents it to the nearest
# child subreaper.  That must be us, so that it is reaped when it exits (bash reaps any child),
# rather than lingering as a zombie that holds the PID the next restore needs.  Bash cannot
# call prctl, hence the helper.  The guard holds our PID, which exec keeps, so an inherited
# variable cannot fool it.
if [ "${CREST_LIVE_SUBREAPER:-}" != "$$" ]; then
	if ! make -s -C "$ROOT" --no-print-directory test/live/bin/subreaper >/dev/null; then
		echo "FAIL build (cannot build test/live/bin/subreaper)"
		echo "0 passed, 1 failed"
		exit 1
	fi
	export CREST_LIVE_SUBREAPER=$$
	exec "$BIN/subreaper" bash "${BASH_SOURCE[0]}" "$@"
fi

PLAIN=0
KEEP=0
LIST=0
PATTERNS=()
for arg in "$@"; do
	case $arg in
	--plain) PLAIN=1 ;;
	--keep) KEEP=1 ;;
	--list) LIST=1 ;;
	-h | --help)
		awk 'NR > 3 && /^#/ { sub(/^# ?/, ""); print; next } NR > 3 { exit }' "${BASH_SOURCE[0]}"
		exit 0
		;;
	-*)
		echo "run.sh: unknown option $arg" >&2
		exit 2
		;;
	*) PATTERNS+=("$arg") ;;
	esac
done

# --- bookkeeping and cleanup ---------------------------------------------------------------

PASSED=0
FAILED=0
STARTED=() # "pid:program" of every process we started or restored
MOUNTS=()
RUN=""

# True when pid is still a process we started: our programs lead their own session and run
# from $BIN/<prog>.  Checked before every kill so that a recycled PID is never hit.
ours() {
	local pid=$1 prog=$2 arg0="" stat sid
	[ -r "/proc/$pid/cmdline" ] || return 1
	IFS= read -r -d '' arg0 <"/proc/$pid/cmdline" 2>/dev/null
	[ "$arg0" = "$BIN/$prog" ] || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	read -r _ _ _ sid _ <<<"$stat"
	[ "$sid" = "$pid" ]
}

# State letter of a process ("" when there is none).
proc_state() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	echo "${stat%% *}"
}

alive() {
	local s
	s=$(proc_state "$1")
	[ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

NOW=0
now_ms() {
	NOW=$((${EPOCHREALTIME/./} / 1000))
}

# Wait until /proc/pid is gone: it is our child or reparented to us, and bash reaps either.
wait_gone() {
	local pid=$1 limit=${2:-$GONE_MS}
	now_ms
	local end=$((NOW + limit))
	while [ -e "/proc/$pid" ]; do
		now_ms
		[ "$NOW" -ge "$end" ] && return 1
		sleep 0.02
	done
	return 0
}

kill_ours() {
	local pid=$1 prog=$2
	if ours "$pid" "$prog"; then
		kill -KILL "$pid" 2>/dev/null
		wait_gone "$pid" 2000
	fi
}

cleanup() {
	local entry m
	for entry in "${STARTED[@]}"; do
		kill_ours "${entry%%:*}" "${entry#*:}"
	done
	for m in "${MOUNTS[@]}"; do
		umount -l "$m" 2>/dev/null
	done
	if [ -n "$RUN" ] && [ -d "$RUN" ]; then
		if [ "$KEEP" = 1 ]; then
			echo "run directory kept: $RUN" >&2
		else
			rm -rf "$RUN"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- test list and selection ---------------------------------------------------------------

ALL_TESTS=()
if [ "$PLAIN" = 1 ]; then
	for p in "${PROGRAMS[@]}" "${HELPERS[@]}"; do ALL_TESTS+=("plain/$p"); done
else
	ALL_TESTS+=("${PROGRAMS[@]}")
	for p in "${PROGRAMS[@]}"; do ALL_TESTS+=("leave_running/$p"); done
	ALL_TESTS+=(dump_nopid dump_unsupported dump_enospc restore_pid_taken restore_file_changed)
	for c in "${CORRUPTIONS[@]}"; do ALL_TESTS+=("restore_corrupt/$c"); done
fi

# A pattern selects a test by full name, group (before the slash), program (after it) or glob.
matches() {
	local t=$1 pat=$2
	# shellcheck disable=SC2053
	[ "$t" = "$pat" ] || [ "${t%%/*}" = "$pat" ] || [ "${t#*/}" = "$pat" ] || [[ $t == $pat ]]
}

TESTS=()
for t in "${ALL_TESTS[@]}"; do
	if [ ${#PATTERNS[@]} -eq 0 ]; then
		TESTS+=("$t")
		continue
	fi
	for pat in "${PATTERNS[@]}"; do
		if matches "$t" "$pat"; then
			TESTS+=("$t")
			break
		fi
	done
done
for pat in "${PATTERNS[@]}"; do
	found=0
	for t in "${ALL_TESTS[@]}"; do
		matches "$t" "$pat" && found=1 && break
	done
	if [ $found = 0 ]; then
		echo "FAIL $pat (no such test; see run.sh --list)"
		FAILED=$((FAILED + 1))
	fi
done

if [ "$LIST" = 1 ]; then
	printf '%s\n' "${TESTS[@]}"
	exit 0
fi

# --- build ---------------------------------------------------------------------------------

bins=()
for p in "${PROGRAMS[@]}" "${HELPERS[@]}"; do bins+=("test/live/bin/$p"); done
if ! MAKEFLAGS='' make -s -C "$ROOT" --no-print-directory "${bins[@]}" >/dev/null; then
	echo "FAIL build (cannot build the test programs)"
	echo "$PASSED passed, $((FAILED + 1)) failed"
	exit 1
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/crest-live.XXXXXX") || exit 1

# Work on a copy: a rebuild of criu/crest while we run must not pull the binary from under us.
if [ -x "$CREST" ] && cp "$CREST" "$RUN/crest"; then
	CREST=$RUN/crest
fi

# --- per-test helpers ----------------------------------------------------------------------

T=""	  # current test name
TDIR=""	  # its directory
LOG=""	  # the log its program writes
REASON="" # why it failed

pass() {
	echo "PASS $T"
	PASSED=$((PASSED + 1))
}

show_tail() {
	[ -s "$1" ] || return 0
	echo "    --- ${1#"$RUN"/} (last 20 lines)"
	tail -n 20 "$1" | sed 's/^/    | /'
}

fail() {
	local f
	echo "FAIL $T ($REASON)"
	FAILED=$((FAILED + 1))
	show_tail "$LOG"
	for f in "$TDIR"/*.err "$TDIR"/img/*.log "$TDIR"/*.log; do
		[ "$f" = "$LOG" ] && continue
		[ -e "$f" ] && show_tail "$f"
	done
}

# Start a program with its output in $TDIR/test.log; sets PID.
start_prog() {
	local prog=$1
	mkdir -p "$TDIR/work"
	LOG=$TDIR/test.log
	TL_DIR=$TDIR/work "$BIN/$prog" >"$LOG" 2>&1 </dev/null &
	PID=$!
	STARTED+=("$PID:$prog")
	# No job: bash still reaps it (as it reaps restored ones) but does not report "Killed"
	# on our stderr when a dump ends it.  The verdict line is what counts, not the status.
	disown "$PID"
}

# Wait for a line matching a regex in the test log while pid lives (or has just died).
wait_line() {
	local re=$1 pid=$2 limit=$3
	now_ms
	local end=$((NOW + limit))
	while :; do
		grep -qE "$re" "$LOG" 2>/dev/null && return 0
		if ! alive "$pid"; then
			grep -qE "$re" "$LOG" 2>/dev/null && return 0
			return 2
		fi
		now_ms
		[ "$NOW" -ge "$end" ] && return 1
		sleep 0.02
	done
}

wait_ready() {
	local pid=$1 line
	wait_line '^ready ' "$pid" "$READY_MS"
	case $? in
	1)
		REASON="no ready line within $((READY_MS / 1000)) s"
		return 1
		;;
	2)
		REASON="program died before ready"
		return 1
		;;
	esac
	line=$(grep -m1 '^ready ' "$LOG")
	if [ "$line" != "ready $pid" ]; then
		REASON="program said '$line', expected 'ready $pid'"
		return 1
	fi
}

# Send SIGTERM and read the verdict; sets REASON on anything but PASS.
verdict() {
	local pid=$1 v n
	kill -TERM "$pid" 2>/dev/null
	wait_line '^(PASS|FAIL)' "$pid" "$VERDICT_MS"
	case $? in
	1)
		REASON="no verdict within $((VERDICT_MS / 1000)) s of SIGTERM"
		return 1
		;;
	2)
		REASON="program died without a verdict (state: $(proc_state "$pid"))"
		return 1
		;;
	esac
	v=$(grep -m1 -E '^(PASS|FAIL)' "$LOG")
	if [ "$v" != PASS ]; then
		REASON="program: $v"
		return 1
	fi
	# A second "ready" means the program started over instead of continuing.
	n=$(grep -c '^ready ' "$LOG")
	if [ "$n" != 1 ]; then
		REASON="$n ready lines: the program restarted"
		return 1
	fi
}

# run_crest TAG ARGS...: crest with a hard time limit, stderr in $TDIR/TAG.err.  Sets RC.
run_crest() {
	local tag=$1
	shift
	if [ ! -x "$CREST" ]; then
		echo "$CREST is not built" >"$TDIR/$tag.err"
		RC=127
		return
	fi
	timeout -k 5 "$CREST_TIMEOUT" "$CREST" "$@" </dev/null >"$TDIR/$tag.out" 2>"$TDIR/$tag.err"
	RC=$?
	[ "$RC" = 124 ] && echo "(killed after ${CREST_TIMEOUT} s)" >>"$TDIR/$tag.err"
}

first_err() {
	local line
	line=$(head -n 1 "$TDIR/$1.err" 2>/dev/null)
	echo "${line:-no message}"
}

# A failing crest command must say why in exactly one line.
one_line_err() {
	local n
	n=$(grep -c '' "$TDIR/$1.err")
	if [ "$n" != 1 ] || [ ! -s "$TDIR/$1.err" ]; then
		REASON="$1 failed with $n lines on stderr, not one"
		return 1
	fi
}

# The process runs, is not stopped and nobody traces it.
untouched() {
	local pid=$1 s tracer
	s=$(proc_state "$pid")
	case $s in
	"" | Z | X)
		REASON="process $pid is gone"
		return 1
		;;
	T | t)
		REASON="process $pid is left stopped (state $s)"
		return 1
		;;
	esac
	tracer=$(awk '/^TracerPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
	if [ "${tracer:-0}" != 0 ]; then
		REASON="process $pid is still traced by $tracer"
		return 1
	fi
}

# Processes whose session is sid (restored or half-restored leftovers included).
session_members() {
	local sid=$1 f stat s
	for f in /proc/[0-9]*/stat; do
		stat=$(cat "$f" 2>/dev/null) || continue
		stat=${stat##*) }
		read -r _ _ _ s _ <<<"$stat"
		[ "$s" = "$sid" ] && echo "${f//[^0-9]/}"
	done
}

new_test() {
	T=$1
	TDIR=$RUN/${T//\//_}
	LOG=$TDIR/test.log
	REASON=""
	mkdir -p "$TDIR/img"
}

finish() {
	if [ "$1" = 0 ]; then
		pass
	else
		fail
		kill_ours "$PID" "$2"
	fi
	[ -n "${PID:-}" ] && ! alive "$PID" && wait_gone "$PID" 2000
}

# --- the modes -----------------------------------------------------------------------------

# Dump (which kills), check the process is gone, restore, check the PID, SIGTERM, verdict.
restore_body() {
	local prog=$1 got ppid
	start_prog "$prog"
	wait_ready "$PID" || return 1
	sleep "$RUN_BEFORE"
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists $((GONE_MS / 1000)) s after the dump (state $(proc_state "$PID"))"
		return 1
	fi
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	got=$(cat "$TDIR/pidfile" 2>/dev/null)
	if [ "$got" != "$PID" ]; then
		REASON="pidfile holds '${got}', not $PID"
		return 1
	fi
	if ! alive "$PID"; then
		REASON="no process $PID after the restore"
		return 1
	fi
	ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$PID/status" 2>/dev/null)
	if [ "$ppid" != "$$" ]; then
		REASON="restored process's parent is ${ppid:-?}, not the runner ($$)"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

exited() {
	if ! wait_gone "$1"; then
		REASON="process $1 did not exit after its verdict"
		return 1
	fi
}

leave_running_body() {
	local prog=$1
	start_prog "$prog"
	wait_ready "$PID" || return 1
	sleep "$RUN_BEFORE"
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 --leave-running
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	if [ ! -s "$TDIR/img/core-$PID.img" ]; then
		REASON="no core-$PID.img in the images"
		return 1
	fi
	verdict "$PID" || return 1
	exited "$PID"
}

plain_body() {
	local prog=$1
	start_prog "$prog"
	wait_ready "$PID" || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# --- negative tests ------------------------------------------------------------------------

dump_nopid_body() {
	local max pid
	PID=""
	max=$(cat /proc/sys/kernel/pid_max)
	for ((pid = max - 1; pid > 300; pid--)); do
		[ -e "/proc/$pid" ] || break
	done
	run_crest dump dump -t "$pid" -D "$TDIR/img" -o dump.log
	if [ "$RC" = 0 ]; then
		REASON="dump of nonexistent pid $pid succeeded"
		return 1
	fi
	one_line_err dump || return 1
	if [ -e "/proc/$pid" ]; then
		REASON="pid $pid exists after the failed dump"
		return 1
	fi
}

# Restore while the original still runs: a clear error, and the original untouched.
restore_pid_taken_body() {
	local others
	start_prog pid
	wait_ready "$PID" || return 1
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 --leave-running
	if [ "$RC" != 0 ]; then
		REASON="setup: dump --leave-running exited $RC: $(first_err dump)"
		return 1
	fi
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile"
	if [ "$RC" = 0 ]; then
		REASON="restore succeeded although pid $PID is taken"
		return 1
	fi
	one_line_err restore || return 1
	untouched "$PID" || return 1
	others=$(session_members "$PID" | grep -vx "$PID" | tr '\n' ' ')
	if [ -n "$others" ]; then
		REASON="restore left processes behind in session $PID: $others"
		return 1
	fi
	if [ -e "$TDIR/pidfile" ]; then
		REASON="the failed restore wrote a pidfile"
		return 1
	fi
	verdict "$PID" || return 1
	exited "$PID"
}

# A resource crest does not handle: one line naming it, and the process left untouched.
dump_unsupported_body() {
	start_prog unsupported
	wait_ready "$PID" || return 1
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4
	if [ "$RC" = 0 ]; then
		REASON="dump of a process holding an io_uring succeeded"
		return 1
	fi
	one_line_err dump || return 1
	if ! grep -q 'fd 42\b' "$TDIR/dump.err"; then
		REASON="the error does not name fd 42: $(first_err dump)"
		return 1
	fi
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# A file whose size changed since the dump: the restore refuses it by name and leaves nothing
# behind; with the size put back, the same images restore.
restore_file_changed_body() {
	local file=$TDIR/work/ro.txt others
	start_prog files
	wait_ready "$PID" || return 1
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4
	if [ "$RC" != 0 ]; then
		REASON="setup: dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="setup: process $PID still exists after the dump"
		return 1
	fi
	printf 'more' >>"$file"
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile"
	if [ "$RC" = 0 ]; then
		REASON="restore succeeded although ro.txt grew"
		return 1
	fi
	one_line_err restore || return 1
	if ! grep -qF ro.txt "$TDIR/restore.err"; then
		REASON="the error does not name ro.txt: $(first_err restore)"
		return 1
	fi
	others=$(session_members "$PID" | tr '\n' ' ')
	if [ -e "/proc/$PID" ] || [ -n "$others" ]; then
		REASON="restore left a process behind: pid $PID $(proc_state "$PID"), session: $others"
		return 1
	fi
	truncate -s -4 "$file"
	run_crest restore2 restore -D "$TDIR/img" -d -o restore2.log -v4 --pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		REASON="restore with the size put back exited $RC: $(first_err restore2)"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# A dump that fails half way (the images' filesystem fills up) must leave the process running
# exactly as before: the memory test then verifies every byte and mapping itself.
dump_enospc_body() {
	start_prog memory
	wait_ready "$PID" || return 1
	if ! mount -t tmpfs -o size=1m crest-live "$TDIR/img" 2>"$TDIR/mount.err"; then
		REASON="cannot mount a small tmpfs: $(head -n 1 "$TDIR/mount.err")"
		return 1
	fi
	MOUNTS+=("$TDIR/img")
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o "$TDIR/dump.log" -v4
	if [ "$RC" = 0 ]; then
		REASON="dump into a 1 MiB filesystem succeeded"
		return 1
	fi
	one_line_err dump || return 1
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# One good dump (--leave-running, then the original is SIGKILLed so that the log file it writes
# stays as dumped) serves every corruption variant; each works on a copy.
CORRUPT_BASE=""
CORRUPT_PID=""
CORRUPT_SETUP_ERR=""

corrupt_setup() {
	[ -n "$CORRUPT_BASE" ] && return 0
	local saved_t=$T saved_dir=$TDIR
	T=restore_corrupt
	TDIR=$RUN/restore_corrupt
	CORRUPT_BASE=$TDIR
	mkdir -p "$TDIR/img"
	start_prog pid
	CORRUPT_PID=$PID
	if ! wait_ready "$PID"; then
		CORRUPT_SETUP_ERR="setup: $REASON"
	else
		run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 --leave-running
		if [ "$RC" != 0 ]; then
			CORRUPT_SETUP_ERR="setup: dump --leave-running exited $RC: $(first_err dump)"
		fi
	fi
	kill -KILL "$PID" 2>/dev/null
	if [ -z "$CORRUPT_SETUP_ERR" ] && ! wait_gone "$PID"; then
		CORRUPT_SETUP_ERR="setup: the dumped process does not go away"
	fi
	T=$saved_t
	TDIR=$saved_dir
	LOG=$TDIR/test.log
}

# Overwrite bytes at an offset: put_bytes FILE OFFSET HEXBYTES
put_bytes() {
	local hex=$3 esc="" i
	for ((i = 0; i < ${#hex}; i += 2)); do esc+="\\x${hex:i:2}"; done
	printf '%b' "$esc" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# Flip (xor 0xff) count bytes at an offset: flip_bytes FILE OFFSET COUNT
flip_bytes() {
	local hex
	hex=$(od -An -tx1 -v -j "$2" -N "$3" "$1" | tr -d ' \n')
	hex=$(for ((i = 0; i < ${#hex}; i += 2)); do printf '%02x' $((0x${hex:i:2} ^ 0xff)); done)
	put_bytes "$1" "$2" "$hex"
}

restore_corrupt_body() {
	local variant=$1 pid img file size others
	PID=""
	corrupt_setup
	if [ -n "$CORRUPT_SETUP_ERR" ]; then
		REASON=$CORRUPT_SETUP_ERR
		LOG=$CORRUPT_BASE/test.log
		cp "$CORRUPT_BASE"/*.err "$CORRUPT_BASE"/img/*.log "$TDIR/" 2>/dev/null
		return 1
	fi
	pid=$CORRUPT_PID
	PID=$pid # so that finish() kills whatever a bad restore leaves behind
	img=$TDIR/img
	rm -rf "$img"
	cp -a "$CORRUPT_BASE/img" "$img"
	case $variant in
	inventory_*) file=inventory.img ;;
	core_*) file=core-$pid.img ;;
	mm_*) file=mm-$pid.img ;;
	pagemap_*) file=pagemap-$pid.img ;;
	pages_*) file=pages-$pid.img ;;
	*) file="" ;;
	esac
	if [ -n "$file" ] && [ ! -e "$img/$file" ]; then
		REASON="the dump has no $file to corrupt"
		return 1
	fi
	[ -n "$file" ] && size=$(stat -c %s "$img/$file")
	# Only the magic (bytes 0-3) and version (4-5) have fixed offsets in the image header;
	# everything else is placed so as not to depend on the header's size: the middle and the
	# end of a file are message payload, which the reader must check.
	case $variant in
	inventory_version) put_bytes "$img/$file" 4 ffff ;;
	core_magic) flip_bytes "$img/$file" 0 4 ;;
	core_flip_tail) flip_bytes "$img/$file" $((size - 4)) 4 ;;
	core_flip_middle | pagemap_flip) flip_bytes "$img/$file" $((size / 2)) 1 ;;
	core_truncated) truncate -s $((size - 3)) "$img/$file" ;;
	core_extended) printf 'garbage!' >>"$img/$file" ;;
	mm_missing) rm -f "$img/$file" ;;
	# Keep the page-sized header and half of the data, in whole pages.
	pages_truncated) truncate -s $((4096 + 4096 * ((size - 4096) / 8192))) "$img/$file" ;;
	esac
	run_crest restore restore -D "$img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile"
	if [ -z "$file" ]; then
		# The untouched copy must restore: the failures above are the corruption's doing.
		if [ "$RC" != 0 ]; then
			REASON="restore of the intact images exited $RC: $(first_err restore)"
			return 1
		fi
		LOG=$CORRUPT_BASE/test.log
		verdict "$pid" || return 1
		exited "$pid"
		return
	fi
	if [ "$RC" = 0 ]; then
		REASON="restore succeeded from a corrupted $file"
		return 1
	fi
	one_line_err restore || return 1
	if ! grep -qF "$file" "$TDIR/restore.err"; then
		REASON="the error does not name $file: $(first_err restore)"
		return 1
	fi
	others=$(session_members "$pid" | tr '\n' ' ')
	if [ -e "/proc/$pid" ] || [ -n "$others" ]; then
		REASON="restore left a process behind: pid $pid $(proc_state "$pid"), session: $others"
		return 1
	fi
	if [ -e "$TDIR/pidfile" ]; then
		REASON="the failed restore wrote a pidfile"
		return 1
	fi
}

# --- main loop -----------------------------------------------------------------------------

for t in "${TESTS[@]}"; do
	new_test "$t"
	PID=""
	prog=${t#*/}
	case $t in
	plain/*) plain_body "$prog" ;;
	leave_running/*) leave_running_body "$prog" ;;
	dump_nopid) dump_nopid_body ;;
	dump_unsupported) prog=unsupported && dump_unsupported_body ;;
	restore_file_changed) prog=files && restore_file_changed_body ;;
	restore_pid_taken) prog=pid && restore_pid_taken_body ;;
	dump_enospc) prog=memory && dump_enospc_body ;;
	restore_corrupt/*) prog=pid && restore_corrupt_body "${t#*/}" ;;
	*) restore_body "$prog" ;;
	esac
	rc=$?
	finish "$rc" "$prog"
	for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
	MOUNTS=()
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
