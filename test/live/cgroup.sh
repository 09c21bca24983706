# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# --manage-cgroups tests, sourced by run.sh (which provides start_prog, wait_ready, verdict,
# one_line_err, ...).  Every cgroup a test makes is a child of the runner's own cgroup in its
# hierarchy, named crest-cg-<runner pid>-..., and is removed after the test, pass or fail,
# with the test's own processes killed first; a controller a test turns on in a
# cgroup.subtree_control is turned off again.
#
#   cgroup/v2       counter in a new v2 cgroup with limits (cgroup.max.descendants and
#                   cgroup.max.depth always; memory.max, pids.max, a hugetlb limit where
#                   this machine's v2 hierarchy has the controller), dumped with
#                   --manage-cgroups; the cgroup removed (and a controller the test turned
#                   on in the root's subtree_control off again, so the restore must turn it
#                   on); restored: the task is back in the same cgroups with the same limits
#   cgroup/v1       the same in every v1 hierarchy of memory, pids, cpu, cpuset mounted here,
#                   two levels deep (the restore makes both; a v1 cpuset needs cpus and mems
#                   before it takes a task)
#   cgroup/none     dumped without --manage-cgroups: no cgroup.img; the restore (with the
#                   option) leaves the task in crest's own cgroups and makes nothing
#   cgroup/subtree  tree3 in a cgroup, with A in a sub-cgroup (its children A1 and A2 not),
#                   B1 in another, and in a v1 pids hierarchy A1 alone in a sub-cgroup: every
#                   task comes back in its own cgroups
#   cgroup/strict   the cgroup's limit changed between dump and restore: a bad mode and then
#                   --manage-cgroups=strict are refused in one line, no process and no
#                   cgroup made (a missing v1 one included), the limit untouched; the soft
#                   default then restores into it and leaves its limit as it is
#   cgroup/full     the same change: --manage-cgroups=full puts the recorded limit back
#   cgroup/undo     a restore that fails after making the cgroup (the PID is taken): one line,
#                   and the cgroup it made is gone

CGROUP_TESTS=(cgroup/v2 cgroup/v1 cgroup/none cgroup/subtree cgroup/strict cgroup/full
	cgroup/undo)
declare -A CG_PROG=([cgroup/subtree]=tree3 [cgroup/undo]=files)
for _cg_t in "${CGROUP_TESTS[@]}"; do : "${CG_PROG[$_cg_t]:=counter}"; done
unset _cg_t

CG_NAME=crest-cg-$$
CG_MADE=()    # directories the test made, parents first
CG_ON=()      # "dir ctrl": controllers the test turned on in dir's cgroup.subtree_control
CG_PIDS=()    # the test's tree, killed before the cgroups go
CG_LIMITS=()  # "file" of every limit the test set, compared after the restore
CG_BEFORE=""  # the limits' values before the dump
CG_SNAP=""    # /proc/PID/cgroup of every task of the tree before the dump

# Where a hierarchy is mounted: cg_mount v2 | cg_mount CONTROLLER ("" when it is not).
cg_mount() {
	awk -v want="$1" '{
		for (i = 7; $i != "-"; i++)
			;
		if (want == "v2" && $(i + 1) == "cgroup2") { print $5; exit }
		if (want != "v2" && $(i + 1) == "cgroup" && ("," $(i + 3) ",") ~ ("," want ",")) {
			print $5
			exit
		}
	}' /proc/self/mountinfo
}

# The runner's own cgroup in a hierarchy (v2 or a controller), as /proc/PID/cgroup says.
cg_own() {
	awk -F: -v want="$1" '
		want == "v2" && $1 == "0" && $2 == "" { print $3; exit }
		want != "v2" && ("," $2 ",") ~ ("," want ",") { print $3; exit }' "/proc/$$/cgroup"
}

# The directory of a new cgroup NAME below the runner's own in a hierarchy; "" if unmounted.
cg_base() {
	local mnt own
	mnt=$(cg_mount "$1")
	[ -n "$mnt" ] || return 0
	own=$(cg_own "$1")
	[ "$own" = / ] && own=""
	echo "$mnt$own"
}

cg_mkdir() {
	if ! mkdir "$1" 2>"$TDIR/mkdir.err"; then
		REASON="cannot make cgroup $1: $(head -n 1 "$TDIR/mkdir.err")"
		return 1
	fi
	CG_MADE+=("$1")
}

# cg_set FILE VALUE: set a limit and remember it for the comparison.
cg_set() {
	if ! echo "$2" >"$1" 2>"$TDIR/set.err"; then
		REASON="cannot set $1 to $2: $(head -n 1 "$TDIR/set.err")"
		return 1
	fi
	CG_LIMITS+=("$1")
}

# Turn a controller on in a cgroup's subtree_control, to be turned off after the test.
cg_enable() {
	local dir=$1 ctrl=$2
	grep -qw "$ctrl" "$dir/cgroup.subtree_control" && return 0
	echo "+$ctrl" >"$dir/cgroup.subtree_control" 2>/dev/null || return 1
	CG_ON+=("$dir $ctrl")
}

cg_move() {
	if ! echo "$1" >"$2/cgroup.procs" 2>"$TDIR/move.err"; then
		REASON="cannot move $1 into $2: $(head -n 1 "$TDIR/move.err")"
		return 1
	fi
}

cg_limits() {
	local f
	for f in "${CG_LIMITS[@]}"; do
		echo "${f#"$RUN"} $(cat "$f" 2>&1)"
	done
}

cg_snapshot() {
	local p
	for p in "${CG_PIDS[@]}"; do
		echo "$p: $(tr '\n' ' ' <"/proc/$p/cgroup" 2>&1)"
	done
}

# Remove the cgroups the test made, deepest first, once the tasks in them are gone.
cg_rmdirs() {
	local i d n
	for ((i = ${#CG_MADE[@]} - 1; i >= 0; i--)); do
		d=${CG_MADE[$i]}
		for ((n = 0; n < 100 && ${#d} > 0; n++)); do
			[ -d "$d" ] || break
			rmdir "$d" 2>/dev/null && break
			sleep 0.02
		done
	done
}

cgroup_cleanup() {
	local p d on
	for p in "${CG_PIDS[@]}"; do
		# only the test's own program, by the PID it had
		if [ "$(tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | head -n 1)" = \
			"$BIN/${CG_PROG[$T]:-counter}" ]; then
			kill -KILL "$p" 2>/dev/null
		fi
	done
	for p in "${CG_PIDS[@]}"; do wait_gone "$p" 2000; done
	cg_rmdirs
	for ((p = ${#CG_ON[@]} - 1; p >= 0; p--)); do
		on=${CG_ON[$p]}
		d=${on% *}
		echo "-${on##* }" >"$d/cgroup.subtree_control" 2>/dev/null
	done
	CG_MADE=() CG_ON=() CG_PIDS=() CG_LIMITS=()
	return 0
}

# Dump with ARGS (the tree dies), check the image, remove the cgroups.
cg_dump() {
	local p
	CG_SNAP=$(cg_snapshot)
	CG_BEFORE=$(cg_limits)
	run_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 "$@"
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	for p in "${CG_PIDS[@]}"; do
		if ! wait_gone "$p"; then
			REASON="task $p still exists after the dump"
			return 1
		fi
	done
}

# Restore with ARGS; the root back with its PID, our child.
cg_restore() {
	local got ppid
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile" "$@"
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	got=$(cat "$TDIR/pidfile" 2>/dev/null)
	ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$PID/status" 2>/dev/null)
	if [ "$got" != "$PID" ] || ! alive "$PID" || [ "$ppid" != "$$" ]; then
		REASON="restored root: pidfile '$got', alive $(alive "$PID" && echo yes), parent $ppid"
		return 1
	fi
}

# Every task in the cgroups it was in, the limits as they were; then the verdict.
cg_check_back() {
	local now
	now=$(cg_snapshot)
	if [ "$now" != "$CG_SNAP" ]; then
		REASON="cgroups differ after the restore: $(diff <(echo "$CG_SNAP") <(echo "$now") |
			grep '^[<>]' | head -n 2 | tr '\n' ' ')"
		return 1
	fi
	now=$(cg_limits)
	if [ "$now" != "$CG_BEFORE" ]; then
		REASON="limits differ after the restore: $(diff <(echo "$CG_BEFORE") <(echo "$now") |
			grep '^[<>]' | head -n 2 | tr '\n' ' ')"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

cg_start() {
	start_prog "$1"
	CG_PIDS=("$PID")
	wait_ready "$PID"
}

# A v2 cgroup below the runner's with the limits this machine's v2 hierarchy allows: sets X.
cg_v2_setup() {
	local base ctrl f
	base=$(cg_base v2)
	if [ -z "$base" ]; then
		REASON="no cgroup v2 hierarchy is mounted"
		return 1
	fi
	# controllers can be turned on for children only where no process is: in the root
	if [ "$(cg_own v2)" = / ]; then
		for ctrl in memory pids hugetlb; do
			grep -qw "$ctrl" "$base/cgroup.controllers" && cg_enable "$base" "$ctrl"
		done
	fi
	X=$base/$CG_NAME-${T#*/}
	cg_mkdir "$X" || return 1
	cg_set "$X/cgroup.max.descendants" 7 && cg_set "$X/cgroup.max.depth" 3 || return 1
	if [ -e "$X/memory.max" ]; then
		cg_set "$X/memory.max" $((256 << 20)) || return 1
	fi
	if [ -e "$X/pids.max" ]; then
		cg_set "$X/pids.max" 64 || return 1
	fi
	# 4 huge pages of 2 MB (a 1 GB limit would round that down to 0)
	f=$(find "$X" -maxdepth 1 -name 'hugetlb.2MB.max' | head -n 1)
	if [ -n "$f" ]; then
		cg_set "$f" $((4 << 21)) || return 1
	fi
	return 0
}

cgroup_v2_body() {
	local on
	cg_start counter || return 1
	cg_v2_setup || return 1
	cg_move "$PID" "$X" || return 1
	echo "    limits: $(cg_limits | awk '{ sub(".*/", "", $1); printf "%s=%s ", $1, $2 }')"
	cg_dump --manage-cgroups || return 1
	if [ ! -s "$TDIR/img/cgroup.img" ]; then
		REASON="no cgroup.img in the images"
		return 1
	fi
	cg_rmdirs
	# what the test turned on goes off: the restore must turn it on for its limits
	for on in "${CG_ON[@]}"; do
		echo "-${on##* }" >"${on% *}/cgroup.subtree_control" 2>/dev/null
	done
	cg_restore --manage-cgroups || return 1
	if [ ! -d "$X" ] || ! grep -q "made cgroup $X" "$TDIR/img/restore.log"; then
		REASON="the restore did not make $X"
		return 1
	fi
	for on in "${CG_ON[@]}"; do
		if ! grep -q "turned on the ${on##* } controller" "$TDIR/img/restore.log"; then
			REASON="the restore did not turn the ${on##* } controller on for its limit"
			return 1
		fi
	done
	cg_check_back
}

cgroup_v1_body() {
	local ctrl base d n=0
	cg_start counter || return 1
	for ctrl in memory pids cpu cpuset; do
		base=$(cg_base "$ctrl")
		[ -n "$base" ] || continue
		[ "$(cg_mount "$ctrl")" = "$(cg_mount v2)" ] && continue
		cg_mkdir "$base/$CG_NAME-v1" && cg_mkdir "$base/$CG_NAME-v1/inner" || return 1
		d=$base/$CG_NAME-v1/inner
		case $ctrl in
		memory)
			cg_set "$d/memory.limit_in_bytes" $((256 << 20)) &&
				cg_set "$d/memory.soft_limit_in_bytes" $((128 << 20))
			;;
		pids) cg_set "$d/pids.max" 64 ;;
		cpu)
			cg_set "$d/cpu.shares" 512 && cg_set "$d/cpu.cfs_period_us" 50000 &&
				cg_set "$d/cpu.cfs_quota_us" 40000
			;;
		cpuset)
			cat "$base/cpuset.cpus" >"$base/$CG_NAME-v1/cpuset.cpus" &&
				cat "$base/cpuset.mems" >"$base/$CG_NAME-v1/cpuset.mems" &&
				cg_set "$d/cpuset.cpus" 0 && cg_set "$d/cpuset.mems" 0
			;;
		esac || return 1
		cg_move "$PID" "$d" || return 1
		n=$((n + 1))
	done
	if [ "$n" = 0 ]; then
		echo "    no v1 hierarchy of memory, pids, cpu or cpuset here: nothing to test"
		return 0
	fi
	echo "    limits: $(cg_limits | awk '{ sub(".*/", "", $1); printf "%s=%s ", $1, $2 }')"
	cg_dump --manage-cgroups || return 1
	cg_rmdirs
	cg_restore --manage-cgroups || return 1
	for d in "${CG_MADE[@]}"; do
		if [ ! -d "$d" ]; then
			REASON="the restore did not make $d"
			return 1
		fi
	done
	cg_check_back
}

cgroup_none_body() {
	local now own
	cg_start counter || return 1
	cg_v2_setup || return 1
	cg_move "$PID" "$X" || return 1
	cg_dump || return 1
	if [ -e "$TDIR/img/cgroup.img" ]; then
		REASON="a dump without --manage-cgroups wrote cgroup.img"
		return 1
	fi
	cg_rmdirs
	cg_restore --manage-cgroups || return 1
	if [ -e "$X" ]; then
		REASON="the restore made $X without a cgroup.img"
		return 1
	fi
	now=$(cat "/proc/$PID/cgroup")
	own=$(cat "/proc/$$/cgroup")
	if [ "$now" != "$own" ]; then
		REASON="restored task is not in crest's cgroups: $(diff <(echo "$own") <(echo "$now") |
			grep '^[<>]' | head -n 2 | tr '\n' ' ')"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# tree3's PID of task NAME, from its log.
cg_tree_pid() {
	awk -v n="$1" '$1 == "#" && $2 == n && $3 == "pid" { print $4; exit }' "$LOG"
}

cgroup_subtree_body() {
	local name p a a1 b1 base y=""
	cg_start tree3 || return 1
	for name in A A1 A2 B B1 B2; do
		p=$(cg_tree_pid "$name")
		if [ -z "$p" ]; then
			REASON="tree3 did not log the PID of $name"
			return 1
		fi
		CG_PIDS+=("$p")
	done
	a=$(cg_tree_pid A) a1=$(cg_tree_pid A1) b1=$(cg_tree_pid B1)
	base=$(cg_base v2)
	X=$base/$CG_NAME-subtree
	cg_mkdir "$X" && cg_mkdir "$X/a" && cg_mkdir "$X/b" || return 1
	cg_set "$X/cgroup.max.descendants" 5 && cg_set "$X/a/cgroup.max.depth" 2 || return 1
	base=$(cg_base pids)
	if [ -n "$base" ] && [ "$(cg_mount pids)" != "$(cg_mount v2)" ]; then
		y=$base/$CG_NAME-subtree
		cg_mkdir "$y" && cg_mkdir "$y/a1" && cg_set "$y/a1/pids.max" 9 || return 1
	fi
	for p in "${CG_PIDS[@]}"; do
		cg_move "$p" "$X" || return 1
		[ -z "$y" ] || cg_move "$p" "$y" || return 1
	done
	cg_move "$a" "$X/a" && cg_move "$b1" "$X/b" || return 1
	[ -z "$y" ] || cg_move "$a1" "$y/a1" || return 1
	cg_dump --manage-cgroups || return 1
	cg_rmdirs
	cg_restore --manage-cgroups || return 1
	cg_check_back
}

# strict and full: X's limit changed to 9 after the dump; a v1 pids cgroup removed.
cg_changed_setup() {
	local base
	cg_start counter || return 1
	base=$(cg_base v2)
	X=$base/$CG_NAME-${T#*/}
	cg_mkdir "$X" && cg_set "$X/cgroup.max.descendants" 5 && cg_move "$PID" "$X" || return 1
	base=$(cg_base pids)
	Y=""
	if [ -n "$base" ] && [ "$(cg_mount pids)" != "$(cg_mount v2)" ]; then
		Y=$base/$CG_NAME-${T#*/}
		cg_mkdir "$Y" && cg_set "$Y/pids.max" 50 && cg_move "$PID" "$Y" || return 1
	fi
	cg_dump --manage-cgroups || return 1
	echo 9 >"$X/cgroup.max.descendants"
	[ -z "$Y" ] || rmdir "$Y"
}

cgroup_strict_body() {
	cg_changed_setup || return 1
	run_crest bogus restore -D "$TDIR/img" -d -o bogus.log -v4 --manage-cgroups=bogus
	if [ "$RC" = 0 ] || ! one_line_err bogus || ! grep -q bogus "$TDIR/bogus.err"; then
		REASON="${REASON:-a restore with mode 'bogus' was not refused naming it}"
		return 1
	fi
	run_crest strict restore -D "$TDIR/img" -d -o strict.log -v4 --manage-cgroups=strict
	if [ "$RC" = 0 ]; then
		REASON="--manage-cgroups=strict restored into a cgroup with another limit"
		return 1
	fi
	one_line_err strict || return 1
	if ! grep -q strict "$TDIR/strict.err"; then
		REASON="the refusal does not say why: $(first_err strict)"
		return 1
	fi
	if [ -e "/proc/$PID" ] || [ -n "$(session_members "$PID")" ]; then
		REASON="the refused restore left a process behind"
		return 1
	fi
	if [ -n "$Y" ] && [ -e "$Y" ]; then
		REASON="the refused restore made $Y"
		return 1
	fi
	if [ "$(cat "$X/cgroup.max.descendants")" != 9 ]; then
		REASON="the refused restore changed the limit of $X"
		return 1
	fi
	# soft leaves the existing cgroup as it is
	cg_restore || return 1
	if [ "$(cat "$X/cgroup.max.descendants")" != 9 ]; then
		REASON="the soft restore changed the limit of an existing cgroup"
		return 1
	fi
	CG_BEFORE=${CG_BEFORE/cgroup.max.descendants 5/cgroup.max.descendants 9}
	cg_check_back
}

cgroup_full_body() {
	cg_changed_setup || return 1
	cg_restore --manage-cgroups=full || return 1
	cg_check_back
}

cgroup_undo_body() {
	local file=$TDIR/work/ro.txt
	cg_start files || return 1
	X=$(cg_base v2)/$CG_NAME-undo
	cg_mkdir "$X" && cg_set "$X/cgroup.max.depth" 4 && cg_move "$PID" "$X" || return 1
	cg_dump --manage-cgroups || return 1
	cg_rmdirs
	printf 'more' >>"$file"
	run_crest fails restore -D "$TDIR/img" -d -o fails.log -v4 --manage-cgroups
	if [ "$RC" = 0 ]; then
		REASON="restore succeeded although ro.txt grew"
		return 1
	fi
	one_line_err fails || return 1
	if ! grep -q "made cgroup $X" "$TDIR/img/fails.log"; then
		REASON="the restore failed before it made $X: $(first_err fails)"
		return 1
	fi
	if [ -e "$X" ]; then
		REASON="the failed restore left $X behind"
		return 1
	fi
	if [ -e "/proc/$PID" ] || [ -n "$(session_members "$PID")" ]; then
		REASON="the failed restore left a process behind"
		return 1
	fi
	truncate -s -4 "$file"
	cg_restore --manage-cgroups || return 1
	cg_check_back
}

# cgroup_body VARIANT: one test, every cgroup it made gone afterwards, pass or fail.
cgroup_body() {
	local rc
	X="" Y=""
	"cgroup_${1}_body"
	rc=$?
	cgroup_cleanup
	return $rc
}
