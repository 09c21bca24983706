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
#   predump/<prog>          pre-dump rounds while it runs (each on top of the last, the
#                           program making progress between them), the final dump on top,
#                           tracking gone, restore from the chain, SIGTERM, verdict
#   predump_leave_running/<prog>  the same with a --leave-running final dump: runs on untracked
#
# check (crest check exits 0 and says yes to what the tests rely on); and negative tests:
# dump_nopid, dump_unsupported, dump_enospc, restore_pid_taken, restore_file_changed,
# dump_flags_changed and dump_vmas_changed (VMA flags changed just before the freeze),
# restore_corrupt/<variant>; and for pre-dump chains: predump_dirtypages (each round holds
# exactly the pages written since the last), predump_writer (200 MB/s of writes during the
# rounds), predump_uffd, predump_missing_parent, predump_stop_tracking,
# predump_other_pid.  page_server/<variant>, compress/<prog>: see test/live/page_server.sh.
# tcp/<variant>, udp/<variant>: TCP and UDP sockets, see test/live/tcp.sh.
# netns/<variant>: a tree with its own network namespace, see test/live/netns.sh.
# lazy/<prog>: the restore test with --lazy-pages (memory filled after the tree runs).
# migrate/<variant>: live migration between two emulated hosts, see test/live/migrate.sh.
# cgroup/<variant>: --manage-cgroups on cgroup v1 and v2, see test/live/cgroup.sh.
# container/<variant>: the sample container (pid, mount, uts, ipc, net namespaces, IPC,
# cgroups), see test/live/container.sh.
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
	tree3 prefork threads200 futex_threads zombies reparent shared_anon tg_signals forker
	pipes fifo eventfd epoll signalfd timerfd shared_offset fd_tree memfd
	ghost_files ghost_mmap ghost_tmpfile ghost_remap locks pty inotify
	sk_unix sk_unix2 sysv_shm)
HELPERS=(unsupported ghost_big inherit_fd vmaflags) # programs only the special tests use
# Extra dump options of a program, in its restore and leave_running tests.
declare -A DUMP_ARGS=([ghost_remap]=--link-remap [locks]=--file-locks)
HELPERS+=(dirtypages memwriter uffd lazyops) # and those of the pre-dump and lazy tests
# The page server's tests: their program, names and bodies.
# shellcheck source=test/live/page_server.sh
source "$ROOT/test/live/page_server.sh"
# The socket tests: their names and bodies.
# shellcheck source=test/live/tcp.sh
source "$ROOT/test/live/tcp.sh"
# shellcheck source=test/live/netns.sh
source "$ROOT/test/live/netns.sh"
# shellcheck source=test/live/migrate.sh
source "$ROOT/test/live/migrate.sh"
# shellcheck source=test/live/cgroup.sh
source "$ROOT/test/live/cgroup.sh"
# shellcheck source=test/live/container.sh
source "$ROOT/test/live/container.sh"
PREDUMP_LEAVE_RUNNING=(counter memory tree3)
# Restored with --lazy-pages (lazy/<prog>): memory-heavy, threaded, forking, signal-heavy ones.
LAZY_PROGRAMS=(memory memwriter counter brk threads200 forker tree3 prefork futex_threads signals
	rseq shared_anon fpu zombies lazyops)
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

# Tracking holders ("crest-track") that our pre-dumps started: "pid start" each, start being
# the holder's start time in clock ticks as track.img records it.
HOLDERS=()

# "pid start" of the holder a pre-dump round recorded in DIR/track.img.
holder_of() {
	local out pid start
	out=$("$CREST" show "$1/track.img" 2>/dev/null) || return 1
	pid=$(sed -n 's/.*"holder_pid": *"\{0,1\}\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
	start=$(sed -n 's/.*"holder_start": *"\{0,1\}\([0-9a-fA-Fx]*\).*/\1/p' <<<"$out" | head -n 1)
	[ -n "$pid" ] && [ -n "$start" ] || return 1
	echo "$pid $((start))"
}

# True while that holder lives: neither dead, a zombie nor its pid reused.
holder_alive() {
	local stat f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	read -r -a f <<<"$stat"
	# f[0] is field 3 (state), starttime is field 22
	[ "${f[0]}" != Z ] && [ "${f[0]}" != X ] && [ "${f[19]}" = "$2" ]
}

kill_holders() {
	local h
	for h in "${HOLDERS[@]}"; do
		# shellcheck disable=SC2086
		set -- $h
		if holder_alive "$1" "$2" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = crest-track ]; then
			kill -KILL "$1" 2>/dev/null
		fi
	done
	HOLDERS=()
}

cleanup() {
	local entry m
	page_server_cleanup
	tcp_cleanup
	netns_cleanup
	migrate_cleanup
	cgroup_cleanup
	container_cleanup
	kill_holders
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
	ALL_TESTS+=(check dump_nopid dump_unsupported dump_enospc restore_pid_taken restore_file_changed)
	ALL_TESTS+=(dump_ghost_limit dump_locks_refused restore_inherit_fd restore_inotify_irmap)
	ALL_TESTS+=(dump_flags_changed dump_vmas_changed)
	for c in "${CORRUPTIONS[@]}"; do ALL_TESTS+=("restore_corrupt/$c"); done
	for p in "${PROGRAMS[@]}"; do ALL_TESTS+=("predump/$p"); done
	for p in "${PREDUMP_LEAVE_RUNNING[@]}"; do ALL_TESTS+=("predump_leave_running/$p"); done
	ALL_TESTS+=(predump_dirtypages predump_writer predump_uffd predump_missing_parent
		predump_stop_tracking predump_other_pid)
	ALL_TESTS+=("${PAGE_SERVER_TESTS[@]}")
	ALL_TESTS+=("${TCP_TESTS[@]}")
	ALL_TESTS+=("${NETNS_TESTS[@]}")
	for p in "${LAZY_PROGRAMS[@]}"; do ALL_TESTS+=("lazy/$p"); done
	ALL_TESTS+=("${MIG_TESTS[@]}")
	ALL_TESTS+=("${CGROUP_TESTS[@]}")
	ALL_TESTS+=("${CONTAINER_TESTS[@]}")
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
	# shellcheck disable=SC2086
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 ${DUMP_ARGS[$prog]:-}
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists $((GONE_MS / 1000)) s after the dump (state $(proc_state "$PID"))"
		return 1
	fi
	# shellcheck disable=SC2086
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile" \
		${RESTORE_ARGS:-}
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

# lazy_body PROG: the restore test of PROG with --lazy-pages: the tree runs before its memory
# is filled, which a server fills on demand and in the background; the program checks its
# state as always.  Programs with private memory of their own must really have gone lazy.
lazy_body() {
	local prog=$1 rc n
	RESTORE_ARGS=--lazy-pages restore_body "$prog"
	rc=$?
	[ "$rc" = 0 ] || return 1
	case $prog in
	memory | memwriter | counter | brk | threads200 | lazyops)
		if ! grep -q "lazy pages server" "$TDIR/img/restore.log"; then
			REASON="no lazy pages server was started"
			return 1
		fi
		;;
	prefork)
		# every worker's own page is in the region it inherited: that goes lazy too
		n=$(grep -c "lazy pages server" "$TDIR/img/restore.log")
		if [ "$n" -lt 50 ]; then
			REASON="$n lazy pages servers, not one for each of the 50 workers"
			return 1
		fi
		;;
	esac
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
	# shellcheck disable=SC2086
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 --leave-running \
		${DUMP_ARGS[$prog]:-}
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

# crest check on this machine: exit 0, and a yes for every feature the tests rely on.
check_body() {
	local f
	run_crest check check
	if [ "$RC" != 0 ]; then
		REASON="crest check exited $RC: $(first_err check)"
		return 1
	fi
	for f in ptrace process_vm_readv pidfd_getfd "clone3 set_tid" PAGEMAP_SCAN \
		"userfaultfd WP async" TCP_REPAIR "container namespaces" "SysV IPC ids" open_tree; do
		if ! grep -q "^$f.*: yes" "$TDIR/check.out"; then
			REASON="crest check does not say yes to $f: $(grep "^$f" "$TDIR/check.out")"
			return 1
		fi
	done
}

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
	dump_refused "of a process holding an io_uring" 'fd 42\b' || return 1
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

# The crest command run as TAG must have failed, in one line on stderr that matches PATTERN.
# Usage: refused TAG "WHAT (for the failure reason)" PATTERN
refused() {
	local tag=$1 what=$2 re=$3
	if [ "$RC" = 0 ]; then
		REASON="$what succeeded"
		return 1
	fi
	one_line_err "$tag" || return 1
	if ! grep -q -- "$re" "$TDIR/$tag.err"; then
		REASON="the error does not name $re: $(first_err "$tag")"
		return 1
	fi
}

# A dump of $PID that must be refused in one line naming OPTION, leaving the process as it
# was.  Usage: dump_refused "WHAT (for the failure reason)" OPTION
dump_refused() {
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4
	refused dump "dump $1" "$2" || return 1
	sleep "$RUN_AFTER"
	untouched "$PID"
}

# A deleted file larger than --ghost-limit: the dump refuses it in one line naming the limit
# and leaves the process untouched; with a higher limit the same process dumps and restores.
dump_ghost_limit_body() {
	start_prog ghost_big
	wait_ready "$PID" || return 1
	dump_refused "of a 3 MiB deleted file within the default 1 MiB limit" --ghost-limit ||
		return 1
	run_crest dump2 dump -t "$PID" -D "$TDIR/img" -o dump2.log -v4 --ghost-limit 4M
	if [ "$RC" != 0 ]; then
		REASON="dump with --ghost-limit 4M exited $RC: $(first_err dump2)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists after the dump"
		return 1
	fi
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# File locks without --file-locks: refused in one line naming the option, the tree untouched
# (the program then finds its locks still held).
dump_locks_refused_body() {
	start_prog locks
	wait_ready "$PID" || return 1
	dump_refused "of a process holding file locks without --file-locks" --file-locks || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# The caller's files for the restored tree (--inherit-fd): old.txt's fd becomes crest's fd 7
# on new.txt, the pipe's write end crest's fd 8, a pipe the runner reads.  What the restored
# program writes must land there, and old.txt must not see it.
restore_inherit_fd_body() {
	local work=$TDIR/work key
	start_prog inherit_fd
	wait_ready "$PID" || return 1
	key=$(readlink "/proc/$PID/fd/4")
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists after the dump"
		return 1
	fi
	: >"$work/new.txt"
	exec 7>>"$work/new.txt" 8> >(cat >"$work/piped.txt")
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile" \
		--inherit-fd "fd[7]:${work#/}/old.txt" --inherit-fd "fd[8]:$key"
	exec 7>&- 8>&-
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID" || return 1
	for ((i = 0; i < 100; i++)); do
		[ -s "$work/piped.txt" ] && break
		sleep 0.02
	done
	if [ "$(cat "$work/new.txt")" != after ] || [ "$(cat "$work/old.txt")" != before ]; then
		REASON="new.txt holds '$(cat "$work/new.txt")', old.txt '$(cat "$work/old.txt")'"
		return 1
	fi
	if [ "$(cat "$work/piped.txt")" != "through the pipe" ]; then
		REASON="the inherited pipe carried '$(cat "$work/piped.txt")'"
		return 1
	fi
}

# The inotify program dumped with --force-irmap: the watched paths are found by scanning the
# test's directory instead of through the inodes' file handles.
restore_inotify_irmap_body() {
	local rc
	DUMP_ARGS[inotify]="--force-irmap --irmap-scan-path $TDIR"
	restore_body inotify
	rc=$?
	unset 'DUMP_ARGS[inotify]'
	[ "$rc" = 0 ] || return 1
	if ! grep -q 'irmap: looking for' "$TDIR/img/dump.log"; then
		REASON="the dump did not scan for the watched inodes"
		return 1
	fi
}

# A dump that fails half way (the images' filesystem fills up) must leave the process running
# exactly as before: the memory test then verifies every byte and mapping itself.
# vmas_changed_body SIGNAL LOG_LINE: the dump reads VMA flags before it freezes; just then
# (CREST_TEST_BEFORE_FREEZE) the vmaflags program changes the flags of three whole VMAs
# (SIGUSR1), or that and maps one more (SIGUSR2).  The restored VMAs must have the flags of
# the freeze, which the dump found by its check in the freeze (flags only) or by the changed
# maps lines; its log must say which (LOG_LINE).
vmas_changed_body() {
	local sig=$1 want=$2 rc
	CREST_TEST_BEFORE_FREEZE="kill -$sig \$(sed -n 's/^ready //p' '$LOG') &&
		timeout 5 sh -c 'until grep -q ^flipped \"$LOG\"; do sleep 0.01; done'"
	export CREST_TEST_BEFORE_FREEZE
	restore_body vmaflags
	rc=$?
	unset CREST_TEST_BEFORE_FREEZE
	[ "$rc" = 0 ] || return 1
	if ! grep -q "$want" "$TDIR/img/dump.log"; then
		REASON="the dump log does not say '$want'"
		return 1
	fi
}

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

# --- pre-dump chains -----------------------------------------------------------------------

PREDUMP_ROUNDS=3      # pre-dump rounds before the final dump
PREDUMP_BETWEEN=0.2   # seconds the tree runs between rounds
DIRTY_ROUNDS=5        # predump_dirtypages: the final dump's chain is this deep plus one

# Lines by which a program shows it is making progress (counter, memwriter).
progress_count() {
	grep -cE '^(count |# progress )' "$LOG" 2>/dev/null
}

# Every process and thread of the tree runs on: not stopped, not traced (zombies are fine).
running_tree() {
	local p bad
	untouched "$PID" || return 1
	for p in $(session_members "$PID"); do
		bad=$(cat /proc/"$p"/task/*/stat 2>/dev/null | sed 's/.*) //' |
			awk '$1 == "T" || $1 == "t" { print $1; exit }')
		if [ -n "$bad" ]; then
			REASON="a thread of $p is left stopped (state $bad)"
			return 1
		fi
		bad=$(grep -h '^TracerPid:' /proc/"$p"/task/*/status 2>/dev/null |
			grep -v 'TracerPid:[[:space:]]*0$' | head -n 1)
		if [ -n "$bad" ]; then
			REASON="a thread of $p is still traced ($bad)"
			return 1
		fi
	done
}

# VMAs of the tree registered for write-protection (smaps VmFlags "uw").
uw_count() {
	local p n=0 c
	for p in $(session_members "$PID"); do
		c=$(grep -c '^VmFlags:.* uw' "/proc/$p/smaps" 2>/dev/null)
		n=$((n + ${c:-0}))
	done
	echo "$n"
}

# A crest command failed: keep its log next to the others, where fail() shows it.
keep_log() {
	[ -e "$1" ] && cp "$1" "$TDIR/$2.log"
}

# Number after "KEY": in a stats file (one key a line).
json_num() {
	sed -n "s/^ *\"$2\": *\([0-9.]*\),\{0,1\}\$/\1/p" "$1"
}

# The round's --stats file must exist and agree with the summary line of its log.
stats_check() {
	local dir=$1 file=$2 log=$3 line key re want got
	if [ ! -s "$dir/$file" ]; then
		REASON="--stats wrote no $file in ${dir#"$TDIR"/}"
		return 1
	fi
	line=$(grep -m1 -E 'dumped [0-9]+ tasks:' "$dir/$log")
	while IFS='|' read -r key re; do
		want=$(sed -nE "s/.* ([0-9]+) $re.*/\1/p" <<<"$line")
		got=$(json_num "$dir/$file" "$key")
		if [ -z "$got" ] || [ "$got" != "$want" ]; then
			REASON="${dir#"$TDIR"/}/$file: $key is '${got}', the log says '${want}'"
			return 1
		fi
	done <<-'PAIRS'
		pages_scanned|pages scanned
		pages_written|written \(
		pages_zero|zero,
		pages_unchanged|unchanged since
	PAIRS
	for key in freezing_ms frozen_ms total_ms; do
		got=$(json_num "$dir/$file" "$key")
		if [ -z "$got" ]; then
			REASON="${dir#"$TDIR"/}/$file has no $key"
			return 1
		fi
	done
}

# predump_round N [PREV]: pre-dump round N into img/N, on top of img/PREV.
predump_round() {
	local n=$1 prev=${2:-} dir=$TDIR/img/$1 h
	mkdir -p "$dir"
	# shellcheck disable=SC2086
	run_crest "pd$n" pre-dump -t "$PID" -D "$dir" ${prev:+--prev-images-dir "../$prev"} \
		-o pd.log -v4 --stats ${DUMP_ARGS[$prog]:-}
	if [ "$RC" != 0 ]; then
		keep_log "$dir/pd.log" "pd$n"
		REASON="pre-dump round $n exited $RC: $(first_err "pd$n")"
		return 1
	fi
	if ! h=$(holder_of "$dir"); then
		REASON="pre-dump round $n recorded no tracking holder in img/$n/track.img"
		return 1
	fi
	HOLDERS+=("$h")
	stats_check "$dir" stats-predump.json pd.log
}

# predump_rounds N: N rounds while the tree runs on, making progress if it reports any.
predump_rounds() {
	local r prev="" before after
	for ((r = 1; r <= $1; r++)); do
		before=$(progress_count)
		predump_round "$r" "$prev" || return 1
		if ! running_tree; then
			REASON="after pre-dump round $r: $REASON"
			return 1
		fi
		sleep "$PREDUMP_BETWEEN"
		after=$(progress_count)
		if [ "$before" -gt 0 ] && [ "$after" -le "$before" ]; then
			REASON="no progress between pre-dump rounds $r and $((r + 1)) ($before -> $after lines)"
			return 1
		fi
		prev=$r
	done
}

# final_dump PREV [ARGS...]: the dump on top of img/PREV into img/final; ends the tracking.
final_dump() {
	local prev=$1 h i
	shift
	h=$(holder_of "$TDIR/img/$prev") || h=""
	# shellcheck disable=SC2086
	run_crest dump dump -t "$PID" -D "$TDIR/img/final" --prev-images-dir "../$prev" \
		-o dump.log -v4 --stats ${DUMP_ARGS[$prog]:-} "$@"
	if [ "$RC" != 0 ]; then
		keep_log "$TDIR/img/final/dump.log" dump
		REASON="final dump exited $RC: $(first_err dump)"
		return 1
	fi
	stats_check "$TDIR/img/final" stats-dump.json dump.log || return 1
	if ! grep -q 'stopped memory tracking' "$TDIR/img/final/dump.log"; then
		REASON="the final dump's log does not say it stopped the tracking"
		return 1
	fi
	if [ -n "$h" ]; then
		for ((i = 0; i < GONE_MS / 20; i++)); do
			# shellcheck disable=SC2086
			holder_alive $h || break
			sleep 0.02
		done
		# shellcheck disable=SC2086
		if holder_alive $h; then
			REASON="tracking holder ${h%% *} still runs after the final dump"
			return 1
		fi
	fi
}

# Restore the chain from img/final (the dump killed the tree): same PID, our child, running.
restore_final() {
	local got ppid
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists $((GONE_MS / 1000)) s after the final dump"
		return 1
	fi
	run_crest restore restore -D "$TDIR/img/final" -d -o restore.log -v4 \
		--pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		keep_log "$TDIR/img/final/restore.log" restore
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
}

# Pre-dump rounds while the program runs, the final dump on top, restore from the chain.
predump_body() {
	local prog=$1
	start_prog "$prog"
	wait_ready "$PID" || return 1
	sleep "$RUN_BEFORE"
	predump_rounds "$PREDUMP_ROUNDS" || return 1
	final_dump "$PREDUMP_ROUNDS" || return 1
	restore_final || return 1
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# The final dump with --leave-running: the tree runs on, untracked.
predump_leave_running_body() {
	local prog=$1 before n
	start_prog "$prog"
	wait_ready "$PID" || return 1
	sleep "$RUN_BEFORE"
	predump_rounds "$PREDUMP_ROUNDS" || return 1
	if [ "$(uw_count)" = 0 ]; then
		REASON="no VMA of the tree is registered for write-protection after the pre-dumps"
		return 1
	fi
	before=$(progress_count)
	final_dump "$PREDUMP_ROUNDS" --leave-running || return 1
	sleep "$RUN_AFTER"
	running_tree || return 1
	if [ ! -s "$TDIR/img/final/core-$PID.img" ]; then
		REASON="no core-$PID.img in the final images"
		return 1
	fi
	n=$(uw_count)
	if [ "$n" != 0 ]; then
		REASON="$n VMAs of the tree are still registered for write-protection (uw)"
		return 1
	fi
	if [ "$before" -gt 0 ] && [ "$(progress_count)" -le "$before" ]; then
		REASON="no progress after the final dump"
		return 1
	fi
	verdict "$PID" || return 1
	exited "$PID"
}

# page_map IMG BASE NPAGES: one letter per page of [BASE, BASE + NPAGES pages) in a pagemap
# image: P copied in this round, A in the parent images, Z zero, C shared with the parent task,
# - in no run, ? anything else.
page_map() {
	"$CREST" show "$1" | awk -v base="$2" -v n="$3" '
		function hex(s, v, i) {
			v = 0
			s = tolower(s)
			sub(/^0x/, "", s)
			for (i = 1; i <= length(s); i++)
				v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
			return v
		}
		/"vaddr":/ { gsub(/[",]/, "", $2); va = hex($2) }
		/"nr_pages":/ { gsub(/,/, "", $2); np = $2 + 0 }
		/"flags":/ {
			f = $0
			sub(/.*\[/, "", f)
			sub(/\].*/, "", f)
			gsub(/[" ]/, "", f)
			c = f == "PRESENT" ? "P" : f == "PARENT" ? "A" : f == "ZERO" ? "Z" : f == "COW" ? "C" : "?"
			for (i = 0; i < np; i++) {
				p = (va - base) / 4096 + i
				if (p >= 0 && p < n)
					m[p] = c
			}
		}
		END {
			for (p = 0; p < n; p++)
				printf "%s", (p in m) ? m[p] : "-"
			print ""
		}'
}

# runs_map NPAGES IN OUT "FIRST+COUNT ...": IN for the pages of the runs, OUT for the others.
runs_map() {
	awk -v n="$1" -v a="$2" -v b="$3" -v runs="$4" 'BEGIN {
		k = split(runs, r, " ")
		for (i = 1; i <= k; i++) {
			split(r[i], x, "+")
			for (p = x[1] + 0; p < x[1] + x[2]; p++)
				m[p] = 1
		}
		for (p = 0; p < n; p++)
			printf "%s", (p in m) ? a : b
		print ""
	}'
}

# map_diff GOT WANT: empty when equal, else where and how they differ.
map_diff() {
	awk -v g="$1" -v w="$2" 'BEGIN {
		if (length(g) != length(w)) {
			printf "%d pages, expected %d\n", length(g), length(w)
			exit
		}
		for (i = 1; i <= length(w); i++)
			if (substr(g, i, 1) != substr(w, i, 1)) {
				if (!f)
					f = i
				d++
			}
		if (d)
			printf "page %d is %s, expected %s (%d of %d pages differ)\n", f - 1,
				substr(g, f, 1), substr(w, f, 1), d, length(w)
	}'
}

# check_map WHAT IMG BASE NPAGES WANT: the image's letters for the range must be WANT.
check_map() {
	local got diff
	got=$(page_map "$2" "$3" "$4")
	diff=$(map_diff "$got" "$5")
	if [ -n "$diff" ]; then
		REASON="$1 in ${2#"$TDIR"/}: $diff"
		echo "$1: got  $got" >>"$TDIR/maps.log"
		echo "$1: want $5" >>"$TDIR/maps.log"
		return 1
	fi
}

# Each round holds exactly the pages written since the previous one (the whole region in the
# first, a new VMA whole in the round after it appeared, unchanged after that); the restore
# from the 6-level chain gives every page back as last written (the program checks).
predump_dirtypages_body() {
	local r prev="" f base npages runs dir nv_base="" nv_pages=0 nv_round=0 want
	start_prog dirtypages
	wait_ready "$PID" || return 1
	read -r -a f <<<"$(grep -m1 '^# region ' "$LOG")"
	base=$((f[2]))
	npages=${f[3]}
	if [ "$base" = 0 ] || [ -z "$npages" ]; then
		REASON="the program did not say where its region is"
		return 1
	fi
	for ((r = 1; r <= DIRTY_ROUNDS + 1; r++)); do
		if [ "$r" -le "$DIRTY_ROUNDS" ]; then
			dir=$TDIR/img/$r
			predump_round "$r" "$prev" || return 1
		else
			dir=$TDIR/img/final
			final_dump "$prev" || return 1
		fi
		if [ "$r" = 1 ]; then
			want=$(runs_map "$npages" P P "")
		else
			runs=$(sed -n "s/^# dirtied $((r - 1)): //p" "$LOG")
			want=$(runs_map "$npages" P A "$runs")
		fi
		check_map "round $r: the region" "$dir/pagemap-$PID.img" "$base" "$npages" \
			"$want" || return 1
		if [ "$nv_round" -gt 0 ]; then
			want=$(runs_map "$nv_pages" P A "$([ "$r" = "$nv_round" ] && echo "0+$nv_pages")")
			check_map "round $r: the new VMA" "$dir/pagemap-$PID.img" "$nv_base" \
				"$nv_pages" "$want" || return 1
		fi
		[ "$r" -gt "$DIRTY_ROUNDS" ] && break
		kill -USR1 "$PID"
		if ! wait_line "^# dirtied $r:" "$PID" "$READY_MS"; then
			REASON="no 'dirtied $r' line after SIGUSR1"
			return 1
		fi
		if [ "$nv_round" = 0 ] && grep -q '^# newvma ' "$LOG"; then
			read -r -a f <<<"$(grep -m1 '^# newvma ' "$LOG")"
			nv_base=$((f[2]))
			nv_pages=${f[3]}
			nv_round=$((r + 1))
		fi
		prev=$r
	done
	if [ "$nv_round" = 0 ]; then
		REASON="the program never mapped its new VMA"
		return 1
	fi
	restore_final || return 1
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# Memory written at 200 MB/s during the rounds; the program checks it after the restore.
predump_writer_body() {
	predump_body memwriter || return 1
	if ! grep -q '^# memory verified after a gap' "$LOG"; then
		REASON="the program never verified its memory after the restore"
		return 1
	fi
}

# A task with a userfaultfd of its own: refused in one line, left as it was, nothing tracked.
predump_uffd_body() {
	start_prog uffd
	wait_ready "$PID" || return 1
	run_crest pd1 pre-dump -t "$PID" -D "$TDIR/img/1" -o pd.log -v4
	if [ "$RC" = 0 ]; then
		HOLDERS+=("$(holder_of "$TDIR/img/1")")
		REASON="pre-dump of a task using userfaultfd succeeded"
		return 1
	fi
	keep_log "$TDIR/img/1/pd.log" pd1
	one_line_err pd1 || return 1
	if ! grep -qi userfaultfd "$TDIR/pd1.err"; then
		REASON="the error does not name userfaultfd: $(first_err pd1)"
		return 1
	fi
	if [ -e "$TDIR/img/1/track.img" ]; then
		REASON="the failed pre-dump left a track.img"
		return 1
	fi
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# Round 1 of a chain gone: the restore refuses in one line naming the parent images and
# leaves nothing behind; with it back, the same images restore.
predump_missing_parent_body() {
	local others
	start_prog memory
	wait_ready "$PID" || return 1
	predump_rounds 2 || return 1
	final_dump 2 || return 1
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists after the final dump"
		return 1
	fi
	mv "$TDIR/img/1" "$TDIR/img/1.away"
	run_crest restore1 restore -D "$TDIR/img/final" -d -o restore1.log -v4 \
		--pidfile "$TDIR/pidfile"
	if [ "$RC" = 0 ]; then
		REASON="restore succeeded without the first round's images"
		return 1
	fi
	keep_log "$TDIR/img/final/restore1.log" restore1
	one_line_err restore1 || return 1
	if ! grep -qi parent "$TDIR/restore1.err"; then
		REASON="the error does not name the parent images: $(first_err restore1)"
		return 1
	fi
	others=$(session_members "$PID" | tr '\n' ' ')
	if [ -e "/proc/$PID" ] || [ -n "$others" ]; then
		REASON="restore left a process behind: pid $PID $(proc_state "$PID"), session: $others"
		return 1
	fi
	if [ -e "$TDIR/pidfile" ]; then
		REASON="the failed restore wrote a pidfile"
		return 1
	fi
	mv "$TDIR/img/1.away" "$TDIR/img/1"
	restore_final || return 1
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# --stop-tracking ends a pre-dump's tracking: holder gone, no VMA write-protected; a second
# one has nothing to stop and says so.
predump_stop_tracking_body() {
	local i n
	start_prog counter
	wait_ready "$PID" || return 1
	predump_round 1 || return 1
	# shellcheck disable=SC2086
	if ! holder_alive ${HOLDERS[0]}; then
		REASON="no tracking holder runs after the pre-dump"
		return 1
	fi
	if [ "$(uw_count)" = 0 ]; then
		REASON="no VMA is registered for write-protection after the pre-dump"
		return 1
	fi
	run_crest stop pre-dump --stop-tracking -D "$TDIR/img/1" -o stop.log -v4
	if [ "$RC" != 0 ]; then
		keep_log "$TDIR/img/1/stop.log" stop
		REASON="pre-dump --stop-tracking exited $RC: $(first_err stop)"
		return 1
	fi
	for ((i = 0; i < GONE_MS / 20; i++)); do
		# shellcheck disable=SC2086
		holder_alive ${HOLDERS[0]} || [ "$(uw_count)" != 0 ] || break
		sleep 0.02
	done
	# shellcheck disable=SC2086
	if holder_alive ${HOLDERS[0]}; then
		REASON="the tracking holder still runs after --stop-tracking"
		return 1
	fi
	n=$(uw_count)
	if [ "$n" != 0 ]; then
		REASON="$n VMAs still registered for write-protection (uw) after --stop-tracking"
		return 1
	fi
	run_crest stop2 pre-dump --stop-tracking -D "$TDIR/img/1" -o stop2.log -v4
	if [ "$RC" = 0 ]; then
		REASON="a second --stop-tracking succeeded with nothing to stop"
		return 1
	fi
	one_line_err stop2 || return 1
	sleep "$RUN_AFTER"
	running_tree || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# --prev-images-dir naming another process's round: pre-dump and dump refuse it in one line
# and leave that process alone.
EXTRA_PIDS=() # "pid:program" of more processes a test started, killed after it
predump_other_pid_body() {
	local log1 pid1 pid2
	start_prog counter
	wait_ready "$PID" || return 1
	predump_round 1 || return 1
	pid1=$PID
	log1=$LOG
	# the second process: its own log, and PID for the helpers while we work on it
	TL_DIR=$TDIR/work "$BIN/counter" >"$TDIR/test2.log" 2>&1 </dev/null &
	pid2=$!
	STARTED+=("$pid2:counter")
	EXTRA_PIDS+=("$pid1:counter" "$pid2:counter")
	disown "$pid2"
	PID=$pid2
	LOG=$TDIR/test2.log
	wait_ready "$PID" || return 1
	run_crest pd2 pre-dump -t "$PID" -D "$TDIR/img/2" --prev-images-dir ../1 -o pd.log -v4
	if [ "$RC" = 0 ]; then
		HOLDERS+=("$(holder_of "$TDIR/img/2")")
		REASON="pre-dump of $PID on top of a round of $pid1 succeeded"
		return 1
	fi
	one_line_err pd2 || return 1
	if ! grep -q "$pid1" "$TDIR/pd2.err"; then
		REASON="the pre-dump error does not name $pid1: $(first_err pd2)"
		return 1
	fi
	run_crest dump dump -t "$PID" -D "$TDIR/img/final" --prev-images-dir ../1 -o dump.log -v4
	if [ "$RC" = 0 ]; then
		REASON="dump of $PID on top of a round of $pid1 succeeded"
		return 1
	fi
	one_line_err dump || return 1
	if [ -e "$TDIR/img/2/parent" ] || [ -e "$TDIR/img/final/parent" ]; then
		REASON="a refused round links to img/1 as its parent"
		return 1
	fi
	sleep "$RUN_AFTER"
	running_tree || return 1
	verdict "$PID" || return 1
	exited "$PID" || return 1
	PID=$pid1
	LOG=$log1
	run_crest stop pre-dump --stop-tracking -D "$TDIR/img/1" -o stop.log -v4
	if [ "$RC" != 0 ]; then
		REASON="pre-dump --stop-tracking exited $RC: $(first_err stop)"
		return 1
	fi
	running_tree || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# --- main loop -----------------------------------------------------------------------------

for t in "${TESTS[@]}"; do
	new_test "$t"
	PID=""
	prog=${t#*/}
	case $t in
	plain/*) plain_body "$prog" ;;
	leave_running/*) leave_running_body "$prog" ;;
	check) check_body ;;
	dump_nopid) dump_nopid_body ;;
	dump_unsupported) prog=unsupported && dump_unsupported_body ;;
	restore_file_changed) prog=files && restore_file_changed_body ;;
	restore_pid_taken) prog=pid && restore_pid_taken_body ;;
	dump_enospc) prog=memory && dump_enospc_body ;;
	dump_ghost_limit) prog=ghost_big && dump_ghost_limit_body ;;
	dump_locks_refused) prog=locks && dump_locks_refused_body ;;
	restore_inherit_fd) prog=inherit_fd && restore_inherit_fd_body ;;
	restore_inotify_irmap) prog=inotify && restore_inotify_irmap_body ;;
	dump_flags_changed) prog=vmaflags && vmas_changed_body USR1 "changed just before the freeze" ;;
	dump_vmas_changed) prog=vmaflags && vmas_changed_body USR2 "VMAs changed since they were read" ;;
	restore_corrupt/*) prog=pid && restore_corrupt_body "${t#*/}" ;;
	predump/*) predump_body "$prog" ;;
	predump_leave_running/*) predump_leave_running_body "$prog" ;;
	predump_dirtypages) prog=dirtypages && predump_dirtypages_body ;;
	predump_writer) prog=memwriter && predump_writer_body ;;
	predump_uffd) prog=uffd && predump_uffd_body ;;
	predump_missing_parent) prog=memory && predump_missing_parent_body ;;
	predump_stop_tracking) prog=counter && predump_stop_tracking_body ;;
	predump_other_pid) prog=counter && predump_other_pid_body ;;
	page_server/*) prog=migrate && page_server_body "${t#*/}" ;;
	compress/*) compress_body "$prog" ;;
	tcp/* | udp/*) prog=${TCP_PROG[$t]} && tcp_body "$t" ;;
	netns/*) prog=netns_echo && netns_body "${t#*/}" ;;
	lazy/*) lazy_body "$prog" ;;
	migrate/*) prog=mig_dirty && migrate_body "${t#*/}" ;;
	cgroup/*) prog=${CG_PROG[$t]} && cgroup_body "${t#*/}" ;;
	container/*) prog=ctr-service && container_body "${t#*/}" ;;
	*) restore_body "$prog" ;;
	esac
	rc=$?
	finish "$rc" "$prog"
	for p in "${EXTRA_PIDS[@]}"; do kill_ours "${p%%:*}" "${p#*:}"; done
	EXTRA_PIDS=()
	kill_holders
	for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
	MOUNTS=()
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
