# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2034 # CONTAINER_TESTS and REASON are for run.sh
#
# Container tests, sourced by run.sh (which provides new_test, wait_gone, untouched,
# one_line_err, ...).
#
# The container is scripts/container.sh's sample: busybox and build/ctr-service in new pid,
# mount, uts, ipc and network namespaces, init (PID 1, a busybox sh script) and the service
# (PID 2), its own root (a bind mount of a rootfs directory, or an overlayfs), proc, sysfs,
# a tmpfs /dev with device nodes, devpts, mqueue, tmpfs /dev/shm, /tmp and /run, a bind
# mount /data and a read-only bind mount /etc/ro; the service keeps a counter in SysV shared
# memory, a SysV message queue, a SysV semaphore set, a POSIX message queue and files in /tmp,
# /run, /data and its root, and answers "get" (count one request) and "peek" (the state, read
# back from the kernel) on TCP port 7000.  The container's veth pair joins it to a "host"
# network namespace the test makes (container.sh start --netns): the veth's outside end is
# there, the queries go from there, crest runs there (ip netns exec): no traffic leaves
# namespaces the test made.  The dump takes the init as the tree's root (crest dump -t INIT:
# the namespaces are found and dumped with it), and kills the container.
#
#   container/e2e        three gets, then the state (the service's peek; inside: ps, hostname,
#                        domainname, /proc/mounts, mountinfo without ids, ls -l of /tmp, /run,
#                        /data, /etc/ro, /mnt/stack, the nodes of /dev (no times: the kernel's),
#                        the files' contents, the SysV objects' ids, keys, modes, sizes and
#                        counts, the ipc sysctls, the processes' fds, the SysV mapping, writes
#                        to /etc/ro and /sys refused; from the host: eth0's link, addresses
#                        and routes, the veth's outside end: flags, MAC, IPv4).  The dump
#                        writes ns.img, ipc.img and netns.img; the init, the service and the
#                        veth's outside end are gone after it.  The restore brings the init
#                        back with the same PID, PID 1 of new pid, mount, uts, ipc and network
#                        namespaces, the runner's child, the service its only child with PID 2
#                        there and the same namespaces, the veth's outside end back with its
#                        address; the state must be identical, then a get continues at
#                        counter+1 (each value one step on), its files landing in the rootfs
#                        on the host; the stop leaves nothing (no process, veth, mount, dir)
#   container/overlay    the same with the root on an overlayfs (lowerdir the rootfs): the file
#                        the service wrote in its root before the dump is in the upper
#                        directory (not in the rootfs) and is read back inside after the
#                        restore; the get after it writes into the upper directory again
#   container/new_root   dumped, the rootfs copied (cp -a) to a new directory and removed, the
#                        restore with --root NEWDIR: the same state inside (its /proc/mounts),
#                        the root and /data now NEWDIR and NEWDIR/srv/data (same inodes), the
#                        get after it writes there
#   container/stack      with a tmpfs mounted over another at /mnt/stack: after the restore
#                        it shows "upper", and once unmounted inside (nsenter), "lower"
#   container/pidns_refused  a dump of the service (a task of the container's pid namespace
#                        whose init is not in the tree) is refused: non-zero exit, one line on
#                        stderr naming the pid namespace; both processes untouched, the
#                        service answers as before and counts on
#   container/cgroup     the container in a cgroup v2 cgroup (where cgroup2 is mounted, below
#                        the runner's own) and in one with pids.max 64 (the same when the pids
#                        controller is enabled there, else in the v1 pids hierarchy: hybrid
#                        machines); crest run with nsenter --net instead of ip netns exec,
#                        whose own sysfs hides /sys/fs/cgroup; dumped with --manage-cgroups
#                        (cgroup.img), the cgroups removed, restored with --manage-cgroups: the
#                        cgroups are back, pids.max 64, the init and the service in them and
#                        nothing else, the state identical
#   container/root_missing  the rootfs moved away: the restore fails in one line naming it
#                        and leaves nothing behind; moved back, the restore works
#   container/pidns_threads  test/live/threads200 as the init of a pid namespace of its own, with
#                        a proc of it (unshare -pf --mount-proc: its mount namespace differs
#                        from crest's only by that proc): the dump ends (its 200 threads die in
#                        whatever order), the restore brings back every TID at both levels and
#                        that proc, and the program's own checks of its threads pass
#   container/leave_running  dumped with --leave-running: the same processes run on (not
#                        stopped, not traced), the veth stays, the state is identical and the
#                        service counts on
#
# Cleanup, also when a test fails half way and at the runner's exit: container.sh stop, then
# the processes the test started or restored, by PID and only while they are still the
# container's init or service; the host namespace (and the veth with it), the directories and
# cgroups the test made.

CONTAINER_TESTS=(container/e2e container/overlay container/new_root container/stack
	container/pidns_refused container/cgroup container/leave_running container/root_missing
	container/pidns_threads)

CTR_SH=$ROOT/scripts/container.sh
CTR_NS=crest-ctrh-$$ # the host namespace: the veth's outside end, container.sh and crest
CTR_NS_MADE=0
CTR_VETH=ctrh0
CTR_PREFIX=10.88.0
CTR_BUILT=0
CTR_DIR=""	   # container.sh's directory of the container
CTR_INIT=""	   # its init's PID, as we see it
CTR_SVC=""	   # its service's PID, as we see it
CTR_UNSHARE=""	   # the unshare that started it
CTR_TOKEN=""	   # what its root's /.crest-ctr-id holds
CTR_OTHER=""	   # the PID a restore wrote in its pidfile when it is not the init's
CTR_EXTRA_DIRS=()  # more directories a test made (new_root's copy)
CTR_CGROUPS=()	   # cgroups a test made
CTR_CG_NAME=crest-ctr-$$

# --- bookkeeping and cleanup ---------------------------------------------------------------

# Is pid one of the container's processes, as a test started or restored it: its root holds
# the container's token, or (a restore gone wrong may have put it anywhere) it is the init
# (/bin/sh /init) or the service (/bin/ctr-service) and our child, the init's or unshare's?
ctr_ours() {
	local pid=$1 cmd="" ppid
	[ -n "$pid" ] && alive "$pid" || return 1
	if [ -n "$CTR_TOKEN" ] &&
		[ "$(cat "/proc/$pid/root/.crest-ctr-id" 2>/dev/null)" = "$CTR_TOKEN" ]; then
		return 0
	fi
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
	ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
	case $cmd in
	"/bin/sh /init " | "/bin/ctr-service ") ;;
	*) return 1 ;;
	esac
	[ -n "$ppid" ] || return 1
	[ "$ppid" = "$$" ] || [ "$ppid" = "$CTR_INIT" ] || [ "$ppid" = "$CTR_UNSHARE" ] ||
		[ "$ppid" = "$CTR_OTHER" ]
}

# The processes of the container we know of, killed by PID: the init, the service, what a
# restore said it made (the pidfile), their children.
ctr_kill_known() {
	local p pids="$CTR_INIT $CTR_SVC" killed=""
	[[ $CTR_OTHER =~ ^[0-9]+$ ]] && pids+=" $CTR_OTHER"
	for p in $pids; do
		pids+=" $(ctr_children "$p")"
	done
	for p in $pids; do
		if ctr_ours "$p" && kill -KILL "$p" 2>/dev/null; then
			killed+=" $p"
		fi
	done
	for p in $killed; do
		wait_gone "$p" 2000
	done
}

# rmdir a cgroup once its tasks are gone.
ctr_rmdir_cgroup() {
	local i
	[ -d "$1" ] || return 0
	for ((i = 0; i < GONE_MS / 20; i++)); do
		rmdir "$1" 2>/dev/null && return 0
		sleep 0.02
	done
	return 1
}

container_cleanup() {
	local d m
	if [ -n "$CTR_DIR" ] && [ -e "$CTR_DIR" ]; then
		"$CTR_SH" stop "$CTR_DIR" >/dev/null 2>&1
	fi
	ctr_kill_known
	[ -n "$CTR_UNSHARE" ] && wait_gone "$CTR_UNSHARE" 2000
	if [ "$CTR_NS_MADE" = 1 ]; then
		ip netns del "$CTR_NS" 2>/dev/null
		CTR_NS_MADE=0
	fi
	for d in "$CTR_DIR" "${CTR_EXTRA_DIRS[@]}"; do
		if [ -z "$d" ] || [ ! -e "$d" ]; then continue; fi
		awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
			sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
		rm -rf "$d"
	done
	for ((m = ${#CTR_CGROUPS[@]} - 1; m >= 0; m--)); do
		ctr_rmdir_cgroup "${CTR_CGROUPS[m]}"
	done
	CTR_DIR="" CTR_INIT="" CTR_SVC="" CTR_UNSHARE="" CTR_TOKEN="" CTR_OTHER=""
	CTR_EXTRA_DIRS=()
	CTR_CGROUPS=()
	return 0
}

ctr_build() {
	[ "$CTR_BUILT" = 1 ] && return 0
	if ! MAKEFLAGS='' make -s -C "$ROOT" --no-print-directory build/ctr-service \
		>"$TDIR/build.err" 2>&1; then
		REASON="cannot build build/ctr-service: $(head -n 1 "$TDIR/build.err")"
		return 1
	fi
	if [ ! -x /bin/busybox ]; then
		REASON="no /bin/busybox: install busybox-static (scripts/install-deps.sh)"
		return 1
	fi
	CTR_BUILT=1
}

# --- helpers -------------------------------------------------------------------------------

ctr_children() {
	cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'
}

ctr_nspid() {
	awk '/^NSpid:/ { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status" 2>/dev/null
}

ctr_state_get() {
	sed -n "s/^$2=//p" "$1/ctr.state" 2>/dev/null
}

# crest in the host namespace: run_crest's rules (time limit, stderr in TAG.err, RC).  Through
# ip netns exec, or what a test puts in CTR_CREST_IN.
ctr_crest() {
	local tag=$1
	shift
	if [ ! -x "$CREST" ]; then
		echo "$CREST is not built" >"$TDIR/$tag.err"
		RC=127
		return
	fi
	timeout -k 5 "$CREST_TIMEOUT" "${CTR_CREST_IN[@]}" "$CREST" "$@" </dev/null \
		>"$TDIR/$tag.out" 2>"$TDIR/$tag.err"
	RC=$?
	[ "$RC" = 124 ] && echo "(killed after ${CREST_TIMEOUT} s)" >>"$TDIR/$tag.err"
}

# ctr_q CMD: the service's answer to one command (in ANSWER), logged.
ctr_q() {
	ANSWER=$("$CTR_SH" query "$CTR_DIR" "$1" 2>"$TDIR/query.err")
	local rc=$?
	echo "# $1: ${ANSWER:-(none) $(head -n 1 "$TDIR/query.err")}" >>"$LOG"
	if [ "$rc" != 0 ] || [ -z "$ANSWER" ]; then
		REASON="the service does not answer '$1': $(head -n 1 "$TDIR/query.err")"
		return 1
	fi
}

# ctr_x CMD...: run it inside the container.
ctr_x() {
	"$CTR_SH" exec "$CTR_INIT" "$@"
}

# ctr_field ANSWER KEY: one value of a peek or get answer.
ctr_field() {
	tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

# What a get must answer after the state BEFORE (a peek's answer): every value one step on.
ctr_next() {
	local b=$1 c s m k sem
	c=$(ctr_field "$b" counter)
	s=$(ctr_field "$b" shm)
	m=$(ctr_field "$b" msgs)
	k=$(ctr_field "$b" mq)
	sem=$(ctr_field "$b" sem)
	sed -e "s/\bcounter=$c\b/counter=$((c + 1))/" -e "s/\bshm=$s\b/shm=$((s + 1))/" \
		-e "s/\bsem=${sem%,*},/sem=$((${sem%,*} + 1)),/" -e "s/\bmsgs=$m\b/msgs=$((m + 1))/" \
		-e "s/\bmq=$k\b/mq=$((k < 10 ? k + 1 : 10))/" \
		-e "s/\bfile_lines=\([0-9]*\)\b/file_lines=$(($(ctr_field "$b" file_lines) + 1))/" \
		<<<"$b"
}

# ctr_gets N: N gets, each answering one step on from the state before it.  Sets PEEK.
ctr_gets() {
	local i want
	ctr_q peek || return 1
	PEEK=$ANSWER
	for ((i = 0; i < $1; i++)); do
		want=$(ctr_next "$PEEK")
		ctr_q get || return 1
		if [ "$ANSWER" != "$want" ]; then
			REASON="get answered '$ANSWER', expected '$want'"
			return 1
		fi
		PEEK=$ANSWER
	done
}

# The container's state as seen from inside (one nsenter), to compare before and after.
# shellcheck disable=SC2016 # run by the container's shell
CTR_INSIDE='
echo "## ps"; ps -o pid,ppid,pgid,sid,user,args | awk -v me=$$ "\$1 != me && \$2 != me"
echo "## uts: $(hostname) $(cat /proc/sys/kernel/domainname)"
echo "## /proc/mounts"; cat /proc/mounts
# peer group numbers are new after a restore
echo "## mountinfo"
sed -E "s/^[0-9]+ [0-9]+ [0-9]+:[0-9]+ //; s/(shared|master):[0-9]+/\1/g" /proc/self/mountinfo
echo "## ls"; ls -l /tmp /run /data /etc/ro /mnt/stack
# pseudo filesystems: their times are the kernel'"'"'s (mount, last message), not restorable
echo "## /dev"
stat -c "%n %A %h %U %G %s %t:%T %N" /dev/* /dev/mqueue/* /dev/pts/*
for f in /tmp/state /data/log /var/lib/ctr/last /run/started /dev/mqueue/ctr /etc/ro/motd; do
	echo "## $f"; cat "$f"
done
echo "## sysvipc"
awk "NR > 1 { print \"shm\", \$1, \$2, \$3, \$4, \$7, \$8, \$9, \$10, \$11 }" /proc/sysvipc/shm
awk "NR > 1 { print \"msg\", \$1, \$2, \$3, \$4, \$5, \$8, \$9, \$10, \$11 }" /proc/sysvipc/msg
awk "NR > 1 { print \"sem\", \$1, \$2, \$3, \$4, \$5, \$6, \$7, \$8 }" /proc/sysvipc/sem
echo "## sysctl"
for f in fs/mqueue/msg_max fs/mqueue/msgsize_max fs/mqueue/queues_max kernel/msgmax \
	kernel/msgmnb kernel/msgmni kernel/sem kernel/shmmax kernel/shmall kernel/shmmni; do
	echo "$f $(cat /proc/sys/$f)"
done
echo "## fds"
for f in /proc/1/fd/* /proc/2/fd/*; do echo "$f $(readlink $f)"; done |
	sed "s/socket:\[[0-9]*\]/socket/"
echo "## maps: $(grep -c " /SYSV43525354 " /proc/2/maps) SysV mapping(s) in the service"
echo "## read-only"; touch /etc/ro/x /sys/x 2>&1
echo "## devices"; echo x >/dev/null && head -c 4 /dev/urandom | wc -c && head -c 4 /dev/zero | wc -c
'

# ctr_snapshot FILE: the state, inside and from the host.
ctr_snapshot() {
	{
		ctr_x sh -c "$CTR_INSIDE" 2>&1
		echo "## eth0 (from the host)"
		nsenter -t "$CTR_INIT" -n ip -o link show | sed -n \
			's/^[0-9]*: \([^@:]*\).*<\([^>]*\)>.*\(mtu [0-9]*\).*\(link\/[a-z]* [0-9a-f:]*\).*/\1 \2 \3 \4/p'
		nsenter -t "$CTR_INIT" -n ip -o addr show | awk '{ print $2, $3, $4 }'
		nsenter -t "$CTR_INIT" -n ip route show
		echo "## the veth's outside end"
		ip -n "$CTR_NS" -o link show "$CTR_VETH" | sed -n \
			's/^[0-9]*: \([^@:]*\).*<\([^>]*\)>.*\(mtu [0-9]*\).*\(link\/[a-z]* [0-9a-f:]*\).*/\1 \2 \3 \4/p'
		ip -n "$CTR_NS" -o addr show dev "$CTR_VETH" | awk '$3 == "inet" { print $2, $3, $4 }'
	} >"$1"
}

# Wait until both ends of the veth report their carrier: the kernel sets the flag some time
# after the link is up (up to a second), which a snapshot must not catch half way.
ctr_settle() {
	local i
	for ((i = 0; i < GONE_MS / 20; i++)); do
		if ! nsenter -t "$CTR_INIT" -n ip -o link show eth0 2>/dev/null | grep -q NO-CARRIER &&
			! ip -n "$CTR_NS" -o link show "$CTR_VETH" 2>/dev/null | grep -q NO-CARRIER; then
			return 0
		fi
		sleep 0.02
	done
	return 0 # the snapshot shows it
}

# ctr_same WHAT BEFORE AFTER: the snapshots must be identical (state-diff.log: how not).
ctr_same() {
	if ! diff "$2" "$3" >"$TDIR/state-diff.log"; then
		REASON="$1 differs: $(grep '^[<>]' "$TDIR/state-diff.log" | head -n 2 | tr '\n' ' ')"
		return 1
	fi
	rm -f "$TDIR/state-diff.log"
}

# ctr_start [container.sh start options]: the container in the host namespace; sets CTR_*,
# PID, and checks its first answer.
ctr_start() {
	local out want
	ctr_build || return 1
	if ! ip netns add "$CTR_NS" 2>"$TDIR/netns.err"; then
		REASON="cannot make the host namespace: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
	CTR_NS_MADE=1
	ip -n "$CTR_NS" link set lo up
	CTR_DIR=$TDIR/ctr
	LOG=$TDIR/test.log
	out=$("$CTR_SH" start --dir "$CTR_DIR" --netns "$CTR_NS" --veth "$CTR_VETH" \
		--ip-prefix "$CTR_PREFIX" "$@" 2>"$TDIR/start.err")
	CTR_INIT=$(ctr_state_get "$CTR_DIR" init_pid)
	CTR_SVC=$(ctr_state_get "$CTR_DIR" service_pid)
	CTR_UNSHARE=$(ctr_state_get "$CTR_DIR" unshare_pid)
	CTR_TOKEN=$(ctr_state_get "$CTR_DIR" token)
	PID=$CTR_INIT
	echo "# started: init $CTR_INIT, service $CTR_SVC (container.sh start $*)" >>"$LOG"
	if [ -z "$out" ] || [ "$out" != "$CTR_INIT" ]; then
		REASON="setup: container.sh start failed: $(head -n 1 "$TDIR/start.err")"
		return 1
	fi
	if [ "$(ctr_nspid "$CTR_INIT")" != "$CTR_INIT 1" ] || [ -z "$CTR_SVC" ] ||
		[ "$(ctr_nspid "$CTR_SVC")" != "$CTR_SVC 2" ]; then
		REASON="setup: the container is not init (PID 1) and service (PID 2): NSpid"
		REASON+=" '$(ctr_nspid "$CTR_INIT")' and '$(ctr_nspid "$CTR_SVC")'"
		return 1
	fi
	ctr_q peek || return 1
	want="counter=0 shm=0 sem=7,11 msgs=0 mq=0 file_lines=0 started=[0-9]+ hostname=crest-ctr"
	want+=" pid=2 mqattr=16/64"
	if ! [[ $ANSWER =~ ^$want$ ]]; then
		REASON="setup: the new service answers '$ANSWER'"
		return 1
	fi
}

# Dump the container by its init; the images and the container's end.
ctr_dump() {
	local f
	ctr_crest dump dump -t "$CTR_INIT" -D "$TDIR/img" -o dump.log -v4 "$@"
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	for f in ns.img ipc.img netns.img; do
		if [ ! -s "$TDIR/img/$f" ]; then
			REASON="no $f in the images"
			return 1
		fi
	done
}

# After the dump: the init, the service, unshare and the veth's outside end are gone.
ctr_gone() {
	local p i
	for p in "$CTR_INIT" "$CTR_SVC" "$CTR_UNSHARE"; do
		if ! wait_gone "$p"; then
			REASON="process $p ($(cat "/proc/$p/comm" 2>/dev/null)) still exists"
			REASON+=" $((GONE_MS / 1000)) s after the dump (state $(proc_state "$p"))"
			return 1
		fi
	done
	for ((i = 0; i < GONE_MS / 20; i++)); do
		ip -n "$CTR_NS" link show "$CTR_VETH" >/dev/null 2>&1 || return 0
		sleep 0.02
	done
	REASON="the veth's outside end $CTR_VETH is still there $((GONE_MS / 1000)) s after the dump"
	return 1
}

# ctr_restore [crest restore options]: the same init PID back, in new namespaces, the runner's
# child, with the service its only child (PID 2 there, the same namespaces); sets CTR_SVC.
ctr_restore() {
	ctr_crest restore restore -D "$TDIR/img" -d -o restore.log -v4 --pidfile "$TDIR/pidfile" "$@"
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	CTR_OTHER=$(cat "$TDIR/pidfile" 2>/dev/null)
	if [ "$CTR_OTHER" != "$CTR_INIT" ]; then
		REASON="pidfile holds '$CTR_OTHER', not $CTR_INIT"
		return 1
	fi
	CTR_OTHER=""
	ctr_check_tree restore || return 1
	local ppid
	ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$CTR_INIT/status" 2>/dev/null)
	if [ "$ppid" != "$$" ]; then
		REASON="the restored init's parent is ${ppid:-?}, not the runner ($$)"
		return 1
	fi
}

# ctr_check_tree WHEN: the init and its service as they must be, from the host.
ctr_check_tree() {
	local when=$1 kids ns mine theirs
	if ! alive "$CTR_INIT"; then
		REASON="no process $CTR_INIT after the $when"
		return 1
	fi
	if [ "$(ctr_nspid "$CTR_INIT")" != "$CTR_INIT 1" ]; then
		REASON="after the $when, $CTR_INIT is not PID 1 of a pid namespace of its own"
		REASON+=" (NSpid: $(ctr_nspid "$CTR_INIT"))"
		return 1
	fi
	for ns in pid mnt uts ipc net; do
		mine=$(readlink "/proc/$$/ns/$ns")
		theirs=$(readlink "/proc/$CTR_INIT/ns/$ns")
		if [ -z "$theirs" ] || [ "$theirs" = "$mine" ]; then
			REASON="after the $when, the init is in the runner's $ns namespace ($theirs)"
			return 1
		fi
	done
	if [ "$(stat -L -c %i "/proc/$CTR_INIT/ns/net")" = "$(stat -L -c %i "/run/netns/$CTR_NS")" ]
	then
		REASON="after the $when, the init is in the host network namespace"
		return 1
	fi
	kids=$(ctr_children "$CTR_INIT" | tr '\n' ' ')
	kids=${kids% }
	if [ -z "$kids" ] || [ "${kids// /}" != "$kids" ]; then
		REASON="after the $when, the init's children are '$kids', not just the service"
		return 1
	fi
	CTR_SVC=$kids
	if [ "$(cat "/proc/$CTR_SVC/comm" 2>/dev/null)" != ctr-service ] ||
		[ "$(ctr_nspid "$CTR_SVC")" != "$CTR_SVC 2" ]; then
		REASON="after the $when, the init's child $CTR_SVC is not the service with PID 2"
		REASON+=" ($(cat "/proc/$CTR_SVC/comm" 2>/dev/null), NSpid $(ctr_nspid "$CTR_SVC"))"
		return 1
	fi
	for ns in pid mnt uts ipc net; do
		if [ "$(readlink "/proc/$CTR_SVC/ns/$ns")" != "$(readlink "/proc/$CTR_INIT/ns/$ns")" ]
		then
			REASON="after the $when, the service is not in the init's $ns namespace"
			return 1
		fi
	done
}

# Both processes run on: not stopped, not traced.
ctr_untouched() {
	untouched "$CTR_INIT" && untouched "$CTR_SVC"
}

# Stop the container; nothing of it may be left: processes, veth, mounts, its directory.
ctr_stop() {
	local p
	if ! "$CTR_SH" stop "$CTR_DIR" >"$TDIR/stop.err" 2>&1; then
		REASON="container.sh stop failed: $(head -n 1 "$TDIR/stop.err")"
		return 1
	fi
	for p in "$CTR_INIT" "$CTR_SVC"; do
		if ! wait_gone "$p"; then
			REASON="process $p still exists after container.sh stop"
			return 1
		fi
	done
	if ip -n "$CTR_NS" link show "$CTR_VETH" >/dev/null 2>&1; then
		REASON="the veth $CTR_VETH is still there after container.sh stop"
		return 1
	fi
	if [ -e "$CTR_DIR" ]; then
		REASON="$CTR_DIR is still there after container.sh stop"
		return 1
	fi
	if grep -qF "$CTR_DIR" /proc/self/mountinfo; then
		REASON="a mount of $CTR_DIR is left after container.sh stop"
		return 1
	fi
}

# The flow every restore test shares: start, gets, state, dump, gone, [between], restore,
# the same state, a get one step on, stop.  CTR_START_ARGS, CTR_DUMP_ARGS, CTR_RESTORE_ARGS;
# hooks (functions, or empty) CTR_BEFORE_DUMP, CTR_BETWEEN, CTR_AFTER_RESTORE, CTR_AFTER_GET.
CTR_START_ARGS=() CTR_DUMP_ARGS=() CTR_RESTORE_ARGS=()
CTR_BEFORE_DUMP="" CTR_BETWEEN="" CTR_AFTER_RESTORE="" CTR_AFTER_GET=""
CTR_SNAP_FILTER="cat" # applied to the snapshot after the restore before the comparison
CTR_CREST_IN=(ip netns exec "$CTR_NS")

ctr_flow() {
	local peek want
	ctr_start "${CTR_START_ARGS[@]}" || return 1
	ctr_gets 3 || return 1
	peek=$PEEK
	ctr_snapshot "$TDIR/before.txt"
	if [ "$(ctr_field "$peek" counter)" != 3 ] ||
		! grep -q '^## maps: 1 SysV' "$TDIR/before.txt"; then
		REASON="setup: the container's state is not as expected: see before.txt"
		return 1
	fi
	if [ -n "$CTR_BEFORE_DUMP" ]; then "$CTR_BEFORE_DUMP" || return 1; fi
	ctr_dump "${CTR_DUMP_ARGS[@]}" || return 1
	ctr_gone || return 1
	if [ -n "$CTR_BETWEEN" ]; then "$CTR_BETWEEN" || return 1; fi
	ctr_restore "${CTR_RESTORE_ARGS[@]}" || return 1
	ctr_q peek || return 1
	if [ "$ANSWER" != "$peek" ]; then
		REASON="after the restore the service answers '$ANSWER', before it '$peek'"
		return 1
	fi
	ctr_settle
	ctr_snapshot "$TDIR/after.raw"
	"$CTR_SNAP_FILTER" <"$TDIR/after.raw" >"$TDIR/after.txt"
	ctr_same "after the restore, the state" "$TDIR/before.txt" "$TDIR/after.txt" || return 1
	if [ -n "$CTR_AFTER_RESTORE" ]; then "$CTR_AFTER_RESTORE" || return 1; fi
	want=$(ctr_next "$peek")
	ctr_q get || return 1
	if [ "$ANSWER" != "$want" ]; then
		REASON="the first get after the restore answered '$ANSWER', expected '$want'"
		return 1
	fi
	if [ -n "$CTR_AFTER_GET" ]; then "$CTR_AFTER_GET" || return 1; fi
	ctr_stop
}

# --- the tests -----------------------------------------------------------------------------

# The files the service writes land where the host expects them: /data in the rootfs's
# srv/data, /var/lib/ctr/last in ROOT (the rootfs, the overlay's upper directory, ...).
# ctr_files_at ROOT DATA N
ctr_files_at() {
	local last data
	last=$(cat "$1/var/lib/ctr/last" 2>/dev/null)
	data=$(tail -n 1 "$2/log" 2>/dev/null)
	if [ "$last" != "req $3" ] || [ "$data" != "req $3" ]; then
		REASON="on the host, $1/var/lib/ctr/last holds '$last' and $2/log ends with '$data',"
		REASON+=" not 'req $3'"
		return 1
	fi
}

ctr_e2e_files() {
	ctr_files_at "$CTR_DIR/rootfs" "$CTR_DIR/rootfs/srv/data" 4
}

container_e2e_body() {
	CTR_AFTER_GET=ctr_e2e_files
	ctr_flow
}

ctr_overlay_before() {
	if ! grep -q '^overlay / overlay ' "$TDIR/before.txt"; then
		REASON="setup: the container's root is not an overlayfs"
		return 1
	fi
	ctr_files_at "$CTR_DIR/ovl/upper" "$CTR_DIR/rootfs/srv/data" 3 || return 1
	if [ -e "$CTR_DIR/rootfs/var/lib/ctr/last" ]; then
		REASON="setup: the service's file went into the overlay's lower directory"
		return 1
	fi
}

ctr_overlay_restored() {
	local last
	last=$(ctr_x cat /var/lib/ctr/last 2>&1)
	if [ "$last" != "req 3" ]; then
		REASON="after the restore the service's file in the root holds '$last', not 'req 3'"
		return 1
	fi
}

ctr_overlay_files() {
	ctr_files_at "$CTR_DIR/ovl/upper" "$CTR_DIR/rootfs/srv/data" 4 || return 1
	if [ -e "$CTR_DIR/rootfs/var/lib/ctr/last" ]; then
		REASON="after the restore the service wrote into the overlay's lower directory"
		return 1
	fi
}

container_overlay_body() {
	CTR_START_ARGS=(--overlay)
	CTR_BEFORE_DUMP=ctr_overlay_before
	CTR_AFTER_RESTORE=ctr_overlay_restored
	CTR_AFTER_GET=ctr_overlay_files
	ctr_flow
}

CTR_NEWROOT=""

ctr_newroot_move() {
	CTR_NEWROOT=$TDIR/newroot
	CTR_EXTRA_DIRS+=("$CTR_NEWROOT")
	if ! cp -a "$CTR_DIR/rootfs" "$CTR_NEWROOT" 2>"$TDIR/cp.err"; then
		REASON="cannot copy the rootfs: $(head -n 1 "$TDIR/cp.err")"
		return 1
	fi
	rm -rf "$CTR_DIR/rootfs"
}

# The mountinfo roots name the new directory: compare them as if they named the old one.
ctr_newroot_filter() {
	sed "s|$CTR_NEWROOT|$CTR_DIR/rootfs|g"
}

ctr_newroot_restored() {
	local what host inside
	for what in /:. /data:srv/data /etc/ro:srv/ro; do
		host=$(stat -c %d:%i "$CTR_NEWROOT/${what#*:}" 2>/dev/null)
		inside=$(stat -L -c %d:%i "/proc/$CTR_INIT/root${what%%:*}" 2>/dev/null)
		if [ -z "$host" ] || [ "$host" != "$inside" ]; then
			REASON="after the restore the container's ${what%%:*} is not"
			REASON+=" $CTR_NEWROOT/${what#*:} (inode $inside, not $host)"
			return 1
		fi
	done
	if [ -e "$CTR_DIR/rootfs" ]; then
		REASON="the old rootfs $CTR_DIR/rootfs is back after the restore"
		return 1
	fi
}

ctr_newroot_files() {
	ctr_files_at "$CTR_NEWROOT" "$CTR_NEWROOT/srv/data" 4
}

# A restore whose root directory is gone fails in one line naming it, and leaves nothing: no
# init, no veth, no staging directory; with the directory back the same images restore.
ctr_rootmissing_try() {
	local staged_before staged
	staged_before=$(find /tmp -maxdepth 1 -name 'crest-root.*' | wc -l)
	mv "$CTR_DIR/rootfs" "$CTR_DIR/rootfs.away"
	ctr_crest missing restore -D "$TDIR/img" -d -o missing.log -v4
	mv "$CTR_DIR/rootfs.away" "$CTR_DIR/rootfs"
	refused missing "a restore without its root directory" "$CTR_DIR/rootfs" || return 1
	# crest removes what it made before it exits: nothing to wait for
	if [ -e "/proc/$CTR_INIT" ]; then
		REASON="the failed restore left the init $CTR_INIT behind"
		return 1
	fi
	if ip -n "$CTR_NS" link show "$CTR_VETH" >/dev/null 2>&1; then
		REASON="the failed restore left the veth's outside end $CTR_VETH behind"
		return 1
	fi
	staged=$(find /tmp -maxdepth 1 -name 'crest-root.*' | wc -l)
	if [ "$staged" != "$staged_before" ]; then
		REASON="the failed restore left its staging directory in /tmp"
		return 1
	fi
}

container_root_missing_body() {
	CTR_BETWEEN=ctr_rootmissing_try
	ctr_flow
}

container_pidns_threads_body() {
	local u p="" i n tid
	LOG=$TDIR/test.log
	setsid unshare -pf --mount-proc "$BIN/threads200" >"$LOG" 2>/dev/null </dev/null &
	u=$!
	for ((i = 0; i < 250; i++)); do
		p=$(cat "/proc/$u/task/$u/children" 2>/dev/null)
		p=${p%% *}
		[ -n "$p" ] && break
		sleep 0.02
	done
	if [ -z "$p" ]; then
		REASON="threads200 did not start in a pid namespace"
		return 1
	fi
	STARTED+=("$p:threads200")
	if ! wait_line '^ready 1$' "$p" "$READY_MS"; then
		REASON="threads200 did not say 'ready 1'"
		return 1
	fi
	run_crest dump dump -t "$p" -D "$TDIR/img" -o dump.log -v4
	if [ "$RC" != 0 ]; then
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$p" || ! wait_gone "$u"; then
		REASON="the pid namespace's tasks are still there after the dump"
		return 1
	fi
	run_crest restore restore -D "$TDIR/img" -d -o restore.log -v4
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	n=$(find "/proc/$p/task" -mindepth 1 -maxdepth 1 | wc -l)
	tid=$(find "/proc/$p/task" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1)
	if [ "$n" != 201 ] || [ "$(awk '/^NSpid:/ { print $3 }' "/proc/$p/task/$tid/status")" != 201 ]; then
		REASON="after the restore: $n threads, the last TID $tid is not 201 inside"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$p" || return 1
	exited "$p"
}

container_new_root_body() {
	CTR_BETWEEN=ctr_newroot_move
	CTR_AFTER_RESTORE=ctr_newroot_restored
	CTR_AFTER_GET=ctr_newroot_files
	CTR_SNAP_FILTER=ctr_newroot_filter
	CTR_RESTORE_ARGS=(--root "$TDIR/newroot")
	ctr_flow
}

# ctr_stack_shows WHEN WANT: /mnt/stack holds just the file WANT, whose content is WANT.
ctr_stack_shows() {
	local ls cat
	ls=$(ctr_x ls /mnt/stack 2>&1 | tr '\n' ' ')
	cat=$(ctr_x cat "/mnt/stack/$2" 2>&1)
	if [ "$ls" != "$2 " ] || [ "$cat" != "$2" ]; then
		REASON="$1, /mnt/stack holds '$ls' ($2: '$cat'), not just '$2'"
		return 1
	fi
}

ctr_stack_before() {
	ctr_stack_shows "before the dump" upper
}

ctr_stack_restored() {
	ctr_stack_shows "after the restore" upper || return 1
	if ! ctr_x umount /mnt/stack >"$TDIR/umount.err" 2>&1; then
		REASON="cannot unmount the top of /mnt/stack: $(head -n 1 "$TDIR/umount.err")"
		return 1
	fi
	ctr_stack_shows "after the restore and unmounting the top" lower
}

container_stack_body() {
	CTR_START_ARGS=(--stack)
	CTR_BEFORE_DUMP=ctr_stack_before
	CTR_AFTER_RESTORE=ctr_stack_restored
	ctr_flow
}

container_pidns_refused_body() {
	local peek want
	ctr_start || return 1
	ctr_gets 2 || return 1
	peek=$PEEK
	ctr_crest dump dump -t "$CTR_SVC" -D "$TDIR/img" -o dump.log -v4
	if [ "$RC" = 0 ]; then
		REASON="dump of the service (PID 2 of a pid namespace whose init is not in the tree)"
		REASON+=" succeeded"
		return 1
	fi
	one_line_err dump || return 1
	if ! grep -Eqi 'pid namespace|pid ns|pidns' "$TDIR/dump.err"; then
		REASON="the error does not name the pid namespace: $(first_err dump)"
		return 1
	fi
	sleep "$RUN_AFTER"
	ctr_untouched || return 1
	ctr_check_tree "refused dump" || return 1
	ctr_q peek || return 1
	if [ "$ANSWER" != "$peek" ]; then
		REASON="after the refused dump the service answers '$ANSWER', before it '$peek'"
		return 1
	fi
	want=$(ctr_next "$peek")
	ctr_q get || return 1
	if [ "$ANSWER" != "$want" ]; then
		REASON="the get after the refused dump answered '$ANSWER', expected '$want'"
		return 1
	fi
	ctr_stop
}

CTR_CG_DIRS=() # the test's cgroups
CTR_CG_V2=""   # their paths as /proc/PID/cgroup shows them: in the unified hierarchy
CTR_CG_V1=""   # and in the v1 pids one ("" when pids is a v2 controller here)
CTR_CG_PIDS="" # the one with pids.max

# (cg_mount and cg_own, where a hierarchy is mounted and the runner's cgroup there, are
# test/live/cgroup.sh's.)
# A cgroup below the runner's own in the unified hierarchy, and one with pids.max 64: the
# same when pids is a v2 controller enabled there, else one in the v1 pids hierarchy.
ctr_cgroups_make() {
	local mnt own
	CTR_CG_DIRS=() CTR_CG_V1=""
	mnt=$(cg_mount v2)
	if [ -z "$mnt" ]; then
		REASON="setup: no cgroup2 hierarchy is mounted"
		return 1
	fi
	own=$(cg_own v2)
	own=${own%/}
	CTR_CG_V2=$own/$CTR_CG_NAME
	if ! mkdir "$mnt$CTR_CG_V2" 2>"$TDIR/cgroup.err"; then
		REASON="setup: cannot make $mnt$CTR_CG_V2: $(head -n 1 "$TDIR/cgroup.err")"
		return 1
	fi
	CTR_CGROUPS+=("$mnt$CTR_CG_V2")
	CTR_CG_DIRS+=("$mnt$CTR_CG_V2")
	if grep -qw pids "$mnt$own/cgroup.subtree_control" 2>/dev/null; then
		CTR_CG_PIDS=$mnt$CTR_CG_V2
	else
		# a hybrid machine: pids is a v1 controller
		mnt=$(cg_mount pids)
		if [ -z "$mnt" ]; then
			REASON="setup: no pids controller, neither enabled in the unified hierarchy here"
			REASON+=" nor in a v1 hierarchy"
			return 1
		fi
		own=$(cg_own pids)
		own=${own%/}
		CTR_CG_V1=$own/$CTR_CG_NAME
		CTR_CG_PIDS=$mnt$CTR_CG_V1
		if ! mkdir "$CTR_CG_PIDS" 2>"$TDIR/cgroup.err"; then
			REASON="setup: cannot make $CTR_CG_PIDS: $(head -n 1 "$TDIR/cgroup.err")"
			return 1
		fi
		CTR_CGROUPS+=("$CTR_CG_PIDS")
		CTR_CG_DIRS+=("$CTR_CG_PIDS")
	fi
	if ! echo 64 >"$CTR_CG_PIDS/pids.max" 2>"$TDIR/cgroup.err"; then
		REASON="setup: cannot set $CTR_CG_PIDS/pids.max: $(head -n 1 "$TDIR/cgroup.err")"
		return 1
	fi
}

# The init and the service, and nobody else, in each of the test's cgroups, with the limit.
ctr_cgroups_check() {
	local when=$1 d want got p
	want=$(printf '%s\n' "$CTR_INIT" "$CTR_SVC" | sort -n | tr '\n' ' ')
	for d in "${CTR_CG_DIRS[@]}"; do
		if [ ! -d "$d" ]; then
			REASON="$when, there is no cgroup $d"
			return 1
		fi
		got=$(sort -n "$d/cgroup.procs" | tr '\n' ' ')
		if [ "$got" != "$want" ]; then
			REASON="$when, $d holds the processes '$got', not '$want' (init, service)"
			return 1
		fi
	done
	for p in "$CTR_INIT" "$CTR_SVC"; do
		if ! grep -qxF "0::$CTR_CG_V2" "/proc/$p/cgroup" || { [ -n "$CTR_CG_V1" ] &&
			! grep -qE "^[0-9]+:([^:]*,)?pids(,[^:]*)?:$CTR_CG_V1\$" "/proc/$p/cgroup"; }; then
			REASON="$when, $p is in $(tr '\n' ' ' <"/proc/$p/cgroup"), not in $CTR_CG_V2"
			return 1
		fi
	done
	got=$(cat "$CTR_CG_PIDS/pids.max" 2>/dev/null)
	if [ "$got" != 64 ]; then
		REASON="$when, $CTR_CG_PIDS/pids.max is '$got', not 64"
		return 1
	fi
}

container_cgroup_body() {
	local peek d args=()
	# ip netns exec mounts a sysfs of its own over /sys, hiding /sys/fs/cgroup: crest joins
	# just the host network namespace here
	CTR_CREST_IN=(nsenter "--net=/run/netns/$CTR_NS")
	ctr_cgroups_make || return 1
	for d in "${CTR_CG_DIRS[@]}"; do args+=(--cgroup "$d"); done
	ctr_start "${args[@]}" || return 1
	ctr_cgroups_check "setup: before the dump" || return 1
	ctr_gets 3 || return 1
	peek=$PEEK
	ctr_snapshot "$TDIR/before.txt"
	ctr_dump --manage-cgroups || return 1
	if [ ! -s "$TDIR/img/cgroup.img" ]; then
		REASON="no cgroup.img in the images"
		return 1
	fi
	ctr_gone || return 1
	# the restore must make them again, with their limit
	for ((d = ${#CTR_CG_DIRS[@]} - 1; d >= 0; d--)); do
		if ! ctr_rmdir_cgroup "${CTR_CG_DIRS[d]}"; then
			REASON="cgroup ${CTR_CG_DIRS[d]} is still busy after the dump:"
			REASON+=" $(tr '\n' ' ' <"${CTR_CG_DIRS[d]}/cgroup.procs")"
			return 1
		fi
	done
	ctr_restore --manage-cgroups || return 1
	ctr_settle
	ctr_cgroups_check "after the restore" || return 1
	ctr_state_kept restore "$peek" || return 1
	ctr_stop
}

# ctr_state_kept WHEN PEEK: after WHEN the service answers PEEK, the state inside is
# before.txt's, and its next get goes on from there.
ctr_state_kept() {
	local want
	ctr_q peek || return 1
	if [ "$ANSWER" != "$2" ]; then
		REASON="after the $1 the service answers '$ANSWER', before it '$2'"
		return 1
	fi
	ctr_snapshot "$TDIR/after.txt"
	ctr_same "after the $1, the state" "$TDIR/before.txt" "$TDIR/after.txt" || return 1
	want=$(ctr_next "$2")
	ctr_q get || return 1
	if [ "$ANSWER" != "$want" ]; then
		REASON="the first get after the $1 answered '$ANSWER', expected '$want'"
		return 1
	fi
}

container_leave_running_body() {
	local peek svc
	ctr_start || return 1
	ctr_gets 3 || return 1
	peek=$PEEK
	svc=$CTR_SVC
	ctr_snapshot "$TDIR/before.txt"
	ctr_dump --leave-running || return 1
	sleep "$RUN_AFTER"
	ctr_untouched || return 1
	ctr_check_tree "dump with --leave-running" || return 1
	if [ "$CTR_SVC" != "$svc" ]; then
		REASON="the service is $CTR_SVC after the dump, not $svc"
		return 1
	fi
	ctr_state_kept dump "$peek" || return 1
	ctr_stop
}

# container_body VARIANT: one test; its container, namespaces, directories and cgroups gone
# afterwards.  The container's log (the service's stderr) is kept for fail() to show.
container_body() {
	local rc
	CTR_START_ARGS=() CTR_DUMP_ARGS=() CTR_RESTORE_ARGS=()
	CTR_BEFORE_DUMP="" CTR_BETWEEN="" CTR_AFTER_RESTORE="" CTR_AFTER_GET="" CTR_SNAP_FILTER="cat"
	CTR_CREST_IN=(ip netns exec "$CTR_NS")
	"container_${1}_body"
	rc=$?
	if [ "$rc" != 0 ]; then
		[ -n "$CTR_INIT" ] && cp "/proc/$CTR_INIT/root/run/init.log" "$TDIR/init.log" 2>/dev/null
	fi
	container_cleanup
	return $rc
}
