# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2034 # MIG_TESTS and REASON are for run.sh
#
# Live migration tests, sourced by run.sh (which provides wait_line, verdict, untouched,
# one_line_err, ...; and tcp.sh's tcp_counters, tcp_flowing, ...).
#
# Two "hosts" on one kernel: each is a network namespace with a PID, mount and UTS namespace
# of its own, whose PID 1 is test/live/bin/hostinit (it reaps orphans; a SIGKILL to it from
# here ends everything in that host).  They are joined by a veth pair, 10.201.0.1 (source) and
# 10.201.0.2 (destination), which carries crest's traffic.  The destination runs the agent
# (crest page-server --migrate, a daemon that exits by itself after a restore or an abort), the
# source runs crest migrate.  The source host's PID counter is raised to 5000 before the
# workload starts, so its PIDs are free on the destination.  Everything runs in namespaces the
# test makes; nothing outside them is ever touched.  The workload is test/live/mig_dirty.c (a
# root rewriting 64 MiB at 50 MB/s, a second thread, a child: each checks its own memory),
# unless said otherwise.
#
#   migrate/memory      the workload migrates: afterwards it runs only on the destination,
#                       with the same PIDs and TIDs, verifies its memory after the freeze and
#                       at SIGTERM (PASS); the progress shows a round and the summary; the
#                       agent is gone
#   migrate/lazy        the same with --lazy: the agent restores with lazy pages (its log
#                       shows a lazy pages server) and the workload verifies all its memory
#   migrate/tcp         a tcp_stream server in a "container" (a network namespace of its own
#                       in the source host, its veth's outside end vc0 a port of the host's
#                       bridge br0) with a client in a third namespace streaming both ways;
#                       a "switch" namespace bridges the client, the source's br0 and the
#                       destination's br0 into one L2 segment.  After the migration the
#                       container's namespace runs on the destination with eth0's MAC, vc0 is
#                       a port of the destination's br0 (and gone from the source), the switch
#                       has learnt the MAC on the destination's port, the stream flows on both
#                       ways with no number lost or doubled, the client's reset and abort
#                       counters did not move; the client's longest wait is printed
#   migrate/tcp_external  the same with the agent given --external veth[eth0]:vcmoved@br0
#   migrate/root        --root: test/live/mig_files.c rewrites (in place, same size),
#                       appends to, creates, renames and deletes files in a directory tree (its
#                       cwd, one file held open) during the first file pass; the destination
#                       host sees its own tree at the same path (a bind mount in its mount
#                       namespace).  The migration starts just after a second begins, so the
#                       first pass and the changes after it fall within one second.  The
#                       program goes quiet before the final dump (SIGUSR1 0.1 s after the first
#                       pass, which the pre-copy rounds of 16 MiB over a 200 Mbit/s link leave
#                       time for); the destination's tree must then be identical to the
#                       source's (diff -r, and rsync -c finds nothing to do), and the program
#                       finds every file as its model says
#   migrate/container   the sample container (scripts/container.sh: pid, mount, uts, ipc and
#                       network namespaces, SysV and POSIX IPC, tmpfs, a veth to its host)
#                       migrates with --root its rootfs while files change in it during the
#                       first pass: on the destination its init has the same PID in the host
#                       (1 inside), the service answers with the state it had (counter, shm,
#                       semaphores, queues, tmpfs file) through the veth's end there and goes
#                       on, ps/hostname//proc/mounts inside are as before, the destination's
#                       rootfs equals the source's, nothing of it is left on the source
#   migrate/agent_killed_precopy  the agent SIGKILLed in round 2, once 4 MiB of it arrived
#                       (the link slowed down to 200 Mbit/s, rounds of 32 MiB)
#   migrate/agent_killed_restore  the agent SIGKILLed once it logs that it restores a task
#                       (256 MiB to restore: the restore lasts)
#   migrate/link_down_final       the link goes down during the final dump (slowed down so that
#                       it lasts), and up again once migrate gave up, or after 10 s: migrate
#                       must give up within those 10 s (the tree is frozen meanwhile)
#                       Each of those three: migrate exits non-zero with one line on stderr
#                       naming the cause, the source runs on untouched (not stopped, traced or
#                       write-protected for tracking, no tracking holder left) and its memory
#                       is intact (PASS at SIGTERM there), no process of the tree is left on
#                       the destination, no partial round either: with the agent gone, a new
#                       agent on the same directory leaves none; with the agent still there
#                       (link_down_final: the source could not reach it), none within 10 s of
#                       the link coming back
#   migrate/drbd        --fs-sync drbd:r0 with CREST_DRBDADM="drbdadm -d -c CONF" (dry run,
#                       CONF a drbd.conf written for the two hosts' names): the source ran
#                       "drbdsetup secondary r0", the agent "drbdsetup primary r0", and the
#                       migration succeeded
#   migrate/refused     the destination has a process with the PID of the workload's child:
#                       migrate fails in one line saying the PID is taken, the source runs on
#                       untouched, the agent stored nothing and waits on; with the PID freed,
#                       migrating to that agent works

MIG_TESTS=(migrate/memory migrate/lazy migrate/tcp migrate/tcp_external migrate/root
	migrate/container
	migrate/agent_killed_precopy
	migrate/agent_killed_restore migrate/link_down_final migrate/drbd migrate/refused)
# mig_dirty runs as plain/mig_dirty too; the others are built by mig_build (not plain-runnable)
HELPERS+=(mig_dirty)
MIG_BUILT=0

MIG_NS=crest-mig-$$ # network namespaces: $MIG_NS-src, -dst, -sw (switch), -cl (client)
MIG_SRC_ADDR=10.201.0.1
MIG_DST_ADDR=10.201.0.2
MIG_PORT=7000
MIG_SRC_IF=mgs$$ # the crest link's ends, in the source host and the destination host
MIG_DST_IF=mgd$$
MIG_FIRST_PID=5000 # the source host's PID counter starts here

declare -A MIG_HI=() # host (src, dst) -> pid of its hostinit, as we see it
MIG_NSES=()	     # network namespaces made
MIG_PEERS=()	     # "pid:program" we started outside the hosts
MIG_AGENT=""	     # the agent daemon (our pid of it)
MIG_MPID=""	     # a migrate running in the background (the nsenter in front of it)
MIG_LPID=""	     # the workload's root, child and thread in the source host
MIG_LCHILD=""
MIG_LTHREAD=""

mig_ns() {
	echo "$MIG_NS-$1"
}

# mig_in HOST COMMAND...: run it inside a host (all of its namespaces).
mig_in() {
	local hi=${MIG_HI[$1]}
	shift
	nsenter -t "$hi" -p -m -n -u "$@"
}

# mig_hostinit_ours PID HOST: is pid the hostinit of that host of ours (PID 1 of a namespace
# other than ours, in the host's network namespace)?
mig_hostinit_ours() {
	local pid=$1 arg0="" nspid
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	IFS= read -r -d '' arg0 <"/proc/$pid/cmdline" 2>/dev/null
	[ "$arg0" = "$BIN/hostinit" ] || return 1
	nspid=$(awk '/^NSpid:/ { print $NF }' "/proc/$pid/status" 2>/dev/null)
	[ "$nspid" = 1 ] && [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] &&
		[ "$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" = \
			"$(stat -L -c %i "/run/netns/$(mig_ns "$2")" 2>/dev/null)" ]
}

# Processes of a host (their PIDs there), PID 1 left out.
mig_host_procs() {
	local hi=${MIG_HI[$1]} p
	for p in /proc/"$hi"/root/proc/[0-9]*; do
		p=${p##*/}
		[ "$p" = 1 ] || echo "$p"
	done
}

# What runs in a host: "PID:comm:state ..." (PID 1 left out).
mig_host_ps() {
	local p hi=${MIG_HI[$1]} st
	for p in $(mig_host_procs "$1"); do
		st=$(mig_host_state "$1" "$p")
		[ -n "$st" ] && echo -n "$p:$(cat "/proc/$hi/root/proc/$p/comm" 2>/dev/null):$st "
	done
}

# mig_host_empty HOST [EXCEPT...]: within GONE_MS nothing runs there (zombies reaped) but
# PID 1 and the PIDs given.
mig_host_empty() {
	local host=$1 left i p x keep
	shift
	for ((i = 0; i < GONE_MS / 20; i++)); do
		left=""
		for p in $(mig_host_procs "$host"); do
			keep=0
			for x in "$@"; do [ "$p" = "$x" ] && keep=1; done
			[ $keep = 1 ] || left+="$p "
		done
		[ -z "$left" ] && return 0
		sleep 0.02
	done
	REASON="left in the $host host: $(mig_host_ps "$host")"
	return 1
}

# State letter of the process with PID lpid in a host ("" when there is none).
mig_host_state() {
	local stat
	stat=$(cat "/proc/${MIG_HI[$1]}/root/proc/$2/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	echo "${stat%% *}"
}

mig_host_alive() {
	local s
	s=$(mig_host_state "$1" "$2")
	[ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# mig_outer HOST LPID: our pid of the process that has PID lpid in that host.
mig_outer() {
	local want f p
	want=$(readlink "/proc/${MIG_HI[$1]}/ns/pid") || return 1
	for f in /proc/[0-9]*/ns/pid; do
		[ "$(readlink "$f" 2>/dev/null)" = "$want" ] || continue
		p=${f#/proc/}
		p=${p%%/*}
		if [ "$(awk '/^NSpid:/ { print $NF }' "/proc/$p/status" 2>/dev/null)" = "$2" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

mig_kill_host() {
	local hi=${MIG_HI[$1]:-}
	if mig_hostinit_ours "$hi" "$1"; then
		kill -KILL "$hi" 2>/dev/null
		wait_gone "$hi" 3000
	fi
	unset "MIG_HI[$1]"
}

# Whatever a test leaves: hosts (and all in them), peers, namespaces.  Also at the runner's exit.
migrate_cleanup() {
	local h p ns
	for h in "${!MIG_HI[@]}"; do
		mig_kill_host "$h"
	done
	if [ -n "$MIG_MPID" ]; then
		# a migrate in the background died with its host: reap the subshell
		wait "$MIG_MPID" 2>/dev/null
		MIG_MPID=""
	fi
	for p in "${MIG_PEERS[@]}"; do
		kill_ours "${p%%:*}" "${p#*:}"
	done
	MIG_PEERS=()
	for ns in "${MIG_NSES[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	MIG_NSES=()
	MIG_AGENT=""
	return 0
}

# mig_netns NAME: a network namespace of ours with lo up.
mig_netns() {
	local ns
	ns=$(mig_ns "$1")
	ip netns del "$ns" 2>/dev/null
	if ! ip netns add "$ns" 2>"$TDIR/netns.err"; then
		REASON="cannot make network namespace $ns: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
	MIG_NSES+=("$ns")
	ip -n "$ns" link set lo up
}

# mig_host_up NAME: network namespace, hostinit as PID 1 of new PID, mount and UTS namespaces,
# hostname crest-NAME.
mig_host_up() {
	local name=$1 ns u c="" i
	mig_netns "$name" || return 1
	ns=$(mig_ns "$name")
	ip netns exec "$ns" unshare -pfmu --mount-proc "$BIN/hostinit" </dev/null >/dev/null \
		2>&1 &
	u=$!
	disown "$u"
	for ((i = 0; i < 250; i++)); do
		c=$(cat "/proc/$u/task/$u/children" 2>/dev/null)
		c=${c%% *}
		[ -n "$c" ] && [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$BIN/hostinit" ] && break
		c=""
		sleep 0.02
	done
	if [ -z "$c" ] || ! mig_hostinit_ours "$c" "$name"; then
		REASON="host $name: hostinit did not start"
		return 1
	fi
	MIG_HI[$name]=$c
	if ! mig_in "$name" hostname "crest-$name" 2>"$TDIR/netns.err"; then
		REASON="host $name: cannot set its hostname: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
}

# The two hosts and the link between them.
mig_hosts_up() {
	local s d
	mig_host_up src && mig_host_up dst || return 1
	s=$(mig_ns src)
	d=$(mig_ns dst)
	if ! { ip link add "$MIG_SRC_IF" netns "$s" type veth peer name "$MIG_DST_IF" netns "$d" &&
		ip -n "$s" addr add "$MIG_SRC_ADDR/24" dev "$MIG_SRC_IF" &&
		ip -n "$d" addr add "$MIG_DST_ADDR/24" dev "$MIG_DST_IF" &&
		ip -n "$s" link set "$MIG_SRC_IF" up && ip -n "$d" link set "$MIG_DST_IF" up; } \
		>"$TDIR/netns.err" 2>&1; then
		REASON="cannot link the hosts: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
}

# Slow the source's end of the link down to RATE (e.g. 200mbit).
mig_slow_link() {
	if ! ip -n "$(mig_ns src)" link set "$MIG_SRC_IF" up ||
		! ip netns exec "$(mig_ns src)" tc qdisc replace dev "$MIG_SRC_IF" root tbf \
			rate "$1" burst 64kb latency 500ms 2>"$TDIR/tc.err"; then
		REASON="cannot slow the link down: $(head -n 1 "$TDIR/tc.err")"
		return 1
	fi
}

# mig_spawn HOST LOG PROG ARGS...: a program in a host (exec'd by nsenter's child; with
# MIG_WRAP="unshare -n" in a network namespace of its own), its output in LOG.  Sets OUTER (our
# pid of it) and LPID (its pid in the host).
mig_spawn() {
	local host=$1 log=$2 prog=$3 n i c=""
	shift 3
	# nsenter itself, not mig_in: a function would run in a subshell, with a pid of its own
	# shellcheck disable=SC2086
	nsenter -t "${MIG_HI[$host]}" -p -m -n -u ${MIG_WRAP:-} "$BIN/$prog" "$@" >"$log" 2>&1 \
		</dev/null &
	n=$!
	disown "$n"
	for ((i = 0; i < 250; i++)); do
		c=$(cat "/proc/$n/task/$n/children" 2>/dev/null)
		c=${c%% *}
		[ -n "$c" ] && [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$BIN/$prog" ] && break
		c=""
		sleep 0.02
	done
	if [ -z "$c" ]; then
		REASON="$prog did not start in host $host: $(head -n 1 "$log")"
		return 1
	fi
	OUTER=$c
	LPID=$(awk '/^NSpid:/ { print $NF }' "/proc/$c/status")
}

# mig_workload [PROG [ARGS...]]: the workload (mig_dirty by default) in the source host, with
# PIDs from MIG_FIRST_PID on; waits for its ready line.  Sets PID (our pid of it), MIG_LPID
# (its pid there), MIG_LCHILD and MIG_LTHREAD (mig_dirty's), LOG.
mig_workload() {
	local prog=${1:-mig_dirty} line
	[ $# -gt 0 ] && shift
	mkdir -p "$TDIR/work"
	LOG=$TDIR/test.log
	if ! mig_in src sh -c "echo $MIG_FIRST_PID >/proc/sys/kernel/ns_last_pid" \
		2>"$TDIR/netns.err"; then
		REASON="cannot set the source host's PID counter: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
	TL_DIR=$TDIR/work mig_spawn src "$LOG" "$prog" "$@" || return 1
	PID=$OUTER
	MIG_LPID=$LPID
	STARTED+=("$PID:$prog")
	wait_line '^ready ' "$PID" "$READY_MS"
	case $? in
	1)
		REASON="no ready line within $((READY_MS / 1000)) s"
		return 1
		;;
	2)
		REASON="the workload died before ready: $(grep -m1 FAIL "$LOG")"
		return 1
		;;
	esac
	line=$(grep -m1 '^ready ' "$LOG")
	if [ "$line" != "ready $MIG_LPID" ] || [ "$MIG_LPID" -le "$MIG_FIRST_PID" ]; then
		REASON="the workload said '$line'; its pid in the source host is $MIG_LPID"
		return 1
	fi
	if [ "$prog" = mig_dirty ]; then
		read -r _ _ _ MIG_LCHILD MIG_LTHREAD <<<"$(grep -m1 '^# tree ' "$LOG")"
		if [ -z "$MIG_LTHREAD" ]; then
			REASON="the workload did not name its child and thread"
			return 1
		fi
	fi
}

mig_agent_ours() {
	local cmd
	[ -n "$MIG_AGENT" ] && [ -r "/proc/$MIG_AGENT/cmdline" ] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$MIG_AGENT/cmdline" 2>/dev/null)
	[[ $cmd == "$CREST page-server "* ]] && [[ $cmd == *" $TDIR/dst "* ]]
}

mig_agent_kill() {
	if mig_agent_ours; then
		kill -KILL "$MIG_AGENT" 2>/dev/null
		wait_gone "$MIG_AGENT" 3000
	fi
	MIG_AGENT=""
}

# mig_agent_start TAG [OPTIONS...]: the agent daemon in the destination host, its log in
# TAG.log; sets MIG_AGENT.
mig_agent_start() {
	local tag=$1 lpid
	shift
	rm -f "$TDIR/agent.pid"
	mig_in dst "$CREST" page-server -D "$TDIR/dst" --address "$MIG_DST_ADDR" \
		--port "$MIG_PORT" --migrate -d --pidfile "$TDIR/agent.pid" -o "$TDIR/$tag.log" -v4 \
		"$@" </dev/null >"$TDIR/$tag.out" 2>"$TDIR/$tag.err"
	RC=$?
	if [ "$RC" != 0 ]; then
		REASON="the agent exited $RC: $(first_err "$tag")"
		return 1
	fi
	lpid=$(cat "$TDIR/agent.pid" 2>/dev/null)
	MIG_AGENT=$(mig_outer dst "$lpid")
	if ! mig_agent_ours; then
		REASON="no agent runs in the destination host (pidfile: '$lpid')"
		MIG_AGENT=""
		return 1
	fi
}

# mig_migrate TAG [OPTIONS...]: crest migrate of the workload in the source host: progress in
# TAG-progress.log, stderr in TAG.err, log in TAG.log.  Sets RC.
mig_migrate() {
	local tag=$1
	shift
	mig_in src timeout -k 5 "$CREST_TIMEOUT" "$CREST" migrate -t "$MIG_LPID" -D "$TDIR/src" \
		--to "$MIG_DST_ADDR:$MIG_PORT" -o "$TDIR/$tag.log" -v4 "$@" </dev/null \
		>"$TDIR/$tag-progress.log" 2>"$TDIR/$tag.err"
	RC=$?
	[ "$RC" = 124 ] && echo "(killed after ${CREST_TIMEOUT} s)" >>"$TDIR/$tag.err"
	return 0
}

# The same in the background: MIG_MPID; mig_migrate_wait TAG then sets RC.
mig_migrate_bg() {
	rm -f "$TDIR/$1.rc"
	{
		mig_migrate "$@"
		echo "$RC" >"$TDIR/$1.rc"
	} &
	MIG_MPID=$!
}

mig_migrate_wait() {
	wait "$MIG_MPID"
	MIG_MPID=""
	RC=$(cat "$TDIR/$1.rc" 2>/dev/null)
	RC=${RC:-255}
}

# mig_wait_file FILE REGEX MS: until a line of FILE matches; 1 on timeout or when the
# migrate in the background ended without it.
mig_wait_file() {
	local i
	for ((i = 0; i < $3 / 10; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		if [ -n "$MIG_MPID" ] && ! kill -0 "$MIG_MPID" 2>/dev/null; then
			grep -qE "$2" "$1" 2>/dev/null
			return
		fi
		sleep 0.01
	done
	return 1
}

# A migration that worked: exit 0, a round, the summary; the tree gone from the source, the
# agent gone.  Prints the summary.
mig_succeeded() {
	local tag=$1 out=$TDIR/$1-progress.log sum
	if [ "$RC" != 0 ]; then
		REASON="migrate exited $RC: $(first_err "$tag")"
		return 1
	fi
	if ! grep -qE '^round 1: [0-9]+ pages .* estimated downtime [0-9]+ ms' "$out"; then
		REASON="the progress shows no round line"
		return 1
	fi
	sum=$(grep -E '^migrated in [0-9]+ ms: .*downtime [0-9]+ ms' "$out")
	if [ -z "$sum" ]; then
		REASON="the progress has no summary line"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="the workload still exists on the source after the migration"
		return 1
	fi
	mig_host_empty src || return 1
	if ! wait_gone "$MIG_AGENT" 3000; then
		REASON="the agent still runs after the migration"
		return 1
	fi
	MIG_AGENT=""
	echo "    $T: $sum"
}

# The workload runs in the destination host with its PIDs; sets PID to ours of it.
mig_on_destination() {
	local p arg0=""
	if ! mig_host_alive dst "$MIG_LPID"; then
		REASON="no process $MIG_LPID in the destination host"
		return 1
	fi
	p=$(mig_outer dst "$MIG_LPID")
	IFS= read -r -d '' arg0 <"/proc/$p/cmdline" 2>/dev/null
	if [ "$arg0" != "$BIN/${1:-mig_dirty}" ]; then
		REASON="process $MIG_LPID in the destination host is '$arg0'"
		return 1
	fi
	if [ -n "$MIG_LCHILD" ] && ! mig_host_alive dst "$MIG_LCHILD"; then
		REASON="the child $MIG_LCHILD is not in the destination host"
		return 1
	fi
	if [ -n "$MIG_LTHREAD" ] &&
		[ ! -e "/proc/${MIG_HI[dst]}/root/proc/$MIG_LPID/task/$MIG_LTHREAD" ]; then
		REASON="thread $MIG_LTHREAD is not in process $MIG_LPID on the destination"
		return 1
	fi
	PID=$p
	STARTED+=("$PID:${1:-mig_dirty}")
	untouched "$PID"
}

# --- migrate/memory -------------------------------------------------------------------------

mig_memory_body() {
	mig_hosts_up || return 1
	mig_workload || return 1
	mig_agent_start agent || return 1
	sleep "$RUN_BEFORE"
	mig_migrate mig
	mig_succeeded mig || return 1
	mig_on_destination || return 1
	if ! wait_line '^# memory verified after a gap' "$PID" 5000; then
		REASON="the workload never verified its memory after the move"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# migrate/lazy: the same with --lazy: the destination runs the tree before its memory is
# filled (a lazy pages server there fills it), and the workload verifies all of it.
mig_lazy_body() {
	mig_hosts_up || return 1
	MIG_MB=128 mig_workload || return 1
	mig_agent_start agent || return 1
	sleep "$RUN_BEFORE"
	mig_migrate mig --lazy
	mig_succeeded mig || return 1
	if ! grep -q "lazy pages server" "$TDIR/agent.log"; then
		REASON="the destination restored without lazy pages"
		return 1
	fi
	mig_on_destination || return 1
	if ! wait_line '^# memory verified after a gap' "$PID" 5000; then
		REASON="the workload never verified its memory after the move"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# --- migrate/tcp ----------------------------------------------------------------------------

MIG_TCP_PORT=7100
MIG_SERVER_ADDR=10.202.0.10
MIG_CLIENT_ADDR=10.202.0.100
MIG_SERVER_MAC=02:00:00:ca:00:0a
MIG_CPID="" # the client

# The L2 segment: a switch namespace with a bridge; the client's namespace and both hosts (a
# bridge br0 in each, uplink up0) are ports of it.
mig_switch_up() {
	local sw s d c
	mig_netns sw && mig_netns cl || return 1
	sw=$(mig_ns sw)
	s=$(mig_ns src)
	d=$(mig_ns dst)
	c=$(mig_ns cl)
	if ! {
		ip -n "$sw" link add br0 type bridge && ip -n "$sw" link set br0 up &&
			ip link add up0 netns "$s" type veth peer name swsrc netns "$sw" &&
			ip link add up0 netns "$d" type veth peer name swdst netns "$sw" &&
			ip link add eth0 netns "$c" type veth peer name swcl netns "$sw" &&
			for p in swsrc swdst swcl; do
				ip -n "$sw" link set "$p" master br0 up || exit 1
			done &&
			for h in "$s" "$d"; do
				ip -n "$h" link add br0 type bridge && ip -n "$h" link set br0 up &&
					ip -n "$h" link set up0 master br0 up || exit 1
			done &&
			ip -n "$c" addr add "$MIG_CLIENT_ADDR/24" dev eth0 &&
			ip -n "$c" link set eth0 up
	} >"$TDIR/netns.err" 2>&1; then
		REASON="cannot set up the switch: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
}

# The switch's port for the server's MAC ("" when it has not learnt it).
mig_switch_port() {
	bridge -n "$(mig_ns sw)" fdb show br br0 2>/dev/null |
		awk -v mac="$MIG_SERVER_MAC" '$1 == mac { print $3; exit }'
}

# mig_port_master HOST DEV: the bridge DEV is a port of ("" when the host has no DEV).
mig_port_master() {
	ip -n "$(mig_ns "$1")" -o link show "$2" 2>/dev/null |
		sed -n 's/.* master \([^ ]*\) .*/\1/p'
}

# mig_tcp_body [OUTSIDE]: with OUTSIDE, the agent names the veth's outside end so
# (--external veth[eth0]:OUTSIDE@br0) instead of as it was.
mig_tcp_body() {
	local s cb ca gap out=${1:-vc0} ext=()
	mig_hosts_up && mig_switch_up || return 1
	s=$(mig_ns src)
	mkdir -p "$TDIR/work"
	LOG=$TDIR/test.log
	if ! mig_in src sh -c "echo $MIG_FIRST_PID >/proc/sys/kernel/ns_last_pid"; then
		REASON="cannot set the source host's PID counter"
		return 1
	fi
	# the container: the server in a network namespace of its own, in the source host
	TL_DIR=$TDIR/work MIG_WRAP="unshare -n" mig_spawn src "$LOG" tcp_stream server \
		0.0.0.0 "$MIG_TCP_PORT" 1 || return 1
	PID=$OUTER
	MIG_LPID=$LPID
	STARTED+=("$PID:tcp_stream")
	if ! wait_line '^# listening' "$PID" "$READY_MS"; then
		REASON="the server is not listening"
		return 1
	fi
	if ! {
		ip -n "$s" link add vc0 type veth peer name eth0 netns "/proc/$PID/ns/net" &&
			ip -n "$s" link set vc0 master br0 up &&
			nsenter -t "$PID" -n sh -ec "
				ip link set lo up
				ip link set eth0 address $MIG_SERVER_MAC up
				ip addr add $MIG_SERVER_ADDR/24 dev eth0"
	} >"$TDIR/netns.err" 2>&1; then
		REASON="cannot set up the container's network: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
	TL_DIR=$TDIR/work nsenter --net="/run/netns/$(mig_ns cl)" "$BIN/tcp_stream" client \
		"$MIG_TCP_PORT" "$MIG_SERVER_ADDR" >"$TDIR/client.log" 2>&1 </dev/null &
	MIG_CPID=$!
	disown "$MIG_CPID"
	STARTED+=("$MIG_CPID:tcp_stream")
	MIG_PEERS+=("$MIG_CPID:tcp_stream")
	tcp_ready "$MIG_CPID" "$TDIR/client.log" client || return 1
	wait_line '^ready ' "$PID" "$READY_MS" || {
		REASON="the server did not get its connection"
		return 1
	}
	[ -n "${1:-}" ] && ext=(--external "veth[eth0]:$out@br0")
	mig_agent_start agent "${ext[@]}" || return 1
	sleep "$RUN_BEFORE"
	tcp_flowing "$MIG_CPID" "$TDIR/client.log" client || return 1
	if [ "$(mig_switch_port)" != swsrc ]; then
		REASON="the switch has the server's MAC on port '$(mig_switch_port)', not swsrc"
		return 1
	fi
	cb=$(tcp_counters "$(mig_ns cl)" "$TCP_CLIENT_COUNTERS")
	mig_migrate mig
	mig_succeeded mig || return 1
	MIG_LCHILD="" MIG_LTHREAD=""
	mig_on_destination tcp_stream || return 1
	if [ -n "$(mig_port_master src vc0)" ] || [ "$(mig_port_master dst "$out")" != br0 ]; then
		REASON="$out is a port of '$(mig_port_master dst "$out")' on the destination (and" \
			"vc0 of '$(mig_port_master src vc0)' on the source), not of br0 there only"
		return 1
	fi
	if [ "$out" != vc0 ] && ip -n "$(mig_ns dst)" link show vc0 >/dev/null 2>&1; then
		REASON="the destination has a vc0 although --external named the outside end $out"
		return 1
	fi
	if ! nsenter -t "$PID" -n ip -o link show eth0 2>/dev/null |
		grep -q "link/ether $MIG_SERVER_MAC .*UP\|UP.*link/ether $MIG_SERVER_MAC"; then
		REASON="the container's eth0 is not up with MAC $MIG_SERVER_MAC on the destination"
		return 1
	fi
	tcp_flowing "$PID" "$LOG" server || return 1
	tcp_flowing "$MIG_CPID" "$TDIR/client.log" client || return 1
	if [ "$(mig_switch_port)" != swdst ]; then
		REASON="the switch has the server's MAC on port '$(mig_switch_port)', not swdst"
		return 1
	fi
	ca=$(tcp_counters "$(mig_ns cl)" "$TCP_CLIENT_COUNTERS")
	tcp_counters_same "the client's namespace" "$cb" "$ca" || return 1
	kill -TERM "$MIG_CPID" "$PID" 2>/dev/null
	tcp_verdict "$MIG_CPID" "$TDIR/client.log" client || return 1
	MIG_PEERS=()
	tcp_verdict "$PID" "$LOG" server || return 1
	gap=$(sed -n 's/^# max gap \([0-9.]*\) ms$/\1/p' "$TDIR/client.log")
	echo "    $T: the client's longest wait for data: ${gap:-?} ms"
}

mig_tcp_external_body() {
	mig_tcp_body vcmoved
}

# --- migrate/root ---------------------------------------------------------------------------

# How two trees differ (content, type, presence; then attributes), "" when they do not.
mig_tree_diff() {
	local a=$1 b=$2 out n
	out=$(
		diff -rq --no-dereference "$a" "$b" 2>&1 |
			sed -e "s|^Files $a/\([^ ]*\) and .* differ\$|\1 differs|" -e "s|$a/*||g" -e "s|$b/*|(destination) |g"
		[ -n "$(diff -rq --no-dereference "$a" "$b" 2>&1)" ] ||
			rsync -naciH --delete "$a/" "$b/" 2>&1
	)
	[ -z "$out" ] && return 0
	n=$(grep -c . <<<"$out")
	echo "$n differences: $(head -n 4 <<<"$out" | tr '\n' ';' | sed 's/;$//')"
}

mig_root_body() {
	local sroot=$TDIR/srcroot droot=$TDIR/dstroot quiet d n0 n1 frac
	mig_hosts_up || return 1
	mkdir -p "$sroot" "$droot"
	# the destination host sees its own tree at the source's path, as a real one would
	if ! mig_in dst mount --bind "$droot" "$sroot" 2>"$TDIR/mount.err"; then
		REASON="cannot bind-mount the destination's root: $(head -n 1 "$TDIR/mount.err")"
		return 1
	fi
	MIG_MB=16 mig_workload mig_files "$sroot" || return 1
	mig_agent_start agent --root "$droot" || return 1
	# rounds of about 0.7 s: the program is quiet long before the final dump freezes it
	mig_slow_link 200mbit || return 1
	sleep 0.3
	# Start just after a second begins, so that the first pass and the changes after it fall
	# in one second: a comparison of sizes and mtimes in seconds cannot tell those files
	# changed.  (Whatever the timing, a correct second pass leaves the trees identical.)
	frac=${EPOCHREALTIME#*.}
	sleep "$(awk -v f="0.$frac" 'BEGIN { printf "%.3f", 1.02 - f }')"
	n0=$(grep '^# changes ' "$LOG" | tail -n 1 | cut -d' ' -f3)
	mig_migrate_bg mig --root "$sroot"
	if ! mig_wait_file "$TDIR/mig-progress.log" '^file system pass 1: ' 20000; then
		mig_migrate_wait mig
		REASON="no line for the first file pass (migrate exited $RC: $(first_err mig))"
		return 1
	fi
	sleep 0.1
	kill -USR1 "$PID" 2>/dev/null
	mig_migrate_wait mig
	mig_succeeded mig || return 1
	quiet=$(grep -m1 '^# quiet on ' "$LOG")
	if [[ $quiet != "# quiet on crest-src after "* ]]; then
		REASON="the program did not go quiet on the source before the final dump: '$quiet'"
		return 1
	fi
	n1=$(grep -m1 -oE 'after [0-9]+' <<<"$quiet" | cut -d' ' -f2)
	if [ "$((n1 - ${n0:-0}))" -lt 50 ]; then
		REASON="only $((n1 - ${n0:-0})) changes during the first pass"
		return 1
	fi
	if ! grep -q '^file system pass 2: .* synced' "$TDIR/mig-progress.log"; then
		REASON="the progress does not show the second file pass"
		return 1
	fi
	MIG_LCHILD="" MIG_LTHREAD=""
	mig_on_destination mig_files || return 1
	mig_host_empty dst "$MIG_LPID" || return 1
	d=$(mig_tree_diff "$sroot" "$droot")
	if [ -n "$d" ]; then
		REASON="the destination's root differs from the source's: $d"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# --- migrate/container ----------------------------------------------------------------------

# mig_ctr HOST ARGS...: scripts/container.sh in a host.
mig_ctr() {
	local host=$1
	shift
	mig_in "$host" bash "$ROOT/scripts/container.sh" "$@"
}

# Our pid of the container's init that has PID lpid in a host: 1 inside, the rootfs's token.
mig_ctr_outer() {
	local want=$2 token=$3 f p ids
	for f in /proc/[0-9]*/status; do
		ids=$(awk '/^NSpid:/ { $1 = ""; print }' "$f" 2>/dev/null)
		read -r -a ids <<<"$ids"
		[ "${#ids[@]}" = 3 ] && [ "${ids[1]}" = "$want" ] && [ "${ids[2]}" = 1 ] || continue
		p=${f#/proc/}
		p=${p%%/*}
		[ "$(cat "/proc/$p/root/.crest-ctr-id" 2>/dev/null)" = "$token" ] && echo "$p" && return 0
	done
	return 1
}

# What the container looks like from inside: ps, hostname, mounts, its files.
mig_ctr_view() {
	nsenter -t "$1" -a -r -w env PATH=/bin sh -c \
		'ps -o pid,user,args; hostname; domainname; cat /proc/mounts; ls -l /tmp /run' \
		2>&1 | grep -v ' ps -o '
}

mig_container_body() {
	local dir=$TDIR/ctr droot=$TDIR/ctrroot token before after now d view0 view1 i n
	mig_hosts_up || return 1
	# the destination's copy of the root is elsewhere: its restore mounts that as the root
	mkdir -p "$droot"
	mig_in src sh -c "echo $MIG_FIRST_PID >/proc/sys/kernel/ns_last_pid"
	if ! MIG_LPID=$(mig_ctr src start --dir "$dir" 2>"$TDIR/ctr.err"); then
		REASON="the container did not start: $(tail -n 1 "$TDIR/ctr.err")"
		return 1
	fi
	token=$(cat "$dir/rootfs/.crest-ctr-id")
	PID=$(mig_ctr_outer src "$MIG_LPID" "$token")
	for i in 1 2 3; do
		mig_ctr src query 10.88.0.2 get >/dev/null || {
			REASON="the service does not answer on the source"
			return 1
		}
	done
	before=$(mig_ctr src query 10.88.0.2 peek)
	view0=$(mig_ctr_view "$PID")
	mig_agent_start agent --root "$droot" || return 1
	# files change in the root while the first pass copies it, and stop before the freeze
	(for ((i = 0; i < 400; i++)); do
		echo "$i" >"$dir/rootfs/srv/data/changing-$((i % 50))"
		[ -e "$TDIR/quiet" ] && exit 0
		sleep 0.005
	done) &
	mig_migrate_bg mig --root "$dir/rootfs"
	mig_wait_file "$TDIR/mig-progress.log" '^file system pass 1: ' 20000
	touch "$TDIR/quiet"
	wait %1 2>/dev/null
	mig_migrate_wait mig
	mig_succeeded mig || return 1
	MIG_LCHILD="" MIG_LTHREAD=""
	if ! PID=$(mig_ctr_outer dst "$MIG_LPID" "$token"); then
		REASON="no container init $MIG_LPID in the destination host"
		return 1
	fi
	after=$(mig_ctr dst query 10.88.0.2 peek 2>&1)
	if [ "$before" != "$after" ]; then
		REASON="the service's state changed: '$before' -> '$after'"
		return 1
	fi
	view1=$(mig_ctr_view "$PID")
	if [ "$view0" != "$view1" ]; then
		REASON="the container looks different inside: $(diff <(echo "$view0") \
			<(echo "$view1") | grep '^[<>]' | head -n 4 | tr '\n' ' ')"
		return 1
	fi
	# before the service writes there again
	d=$(mig_tree_diff "$dir/rootfs" "$droot")
	if [ -n "$d" ]; then
		REASON="the destination's root differs from the source's: $d"
		return 1
	fi
	now=$(mig_ctr dst query 10.88.0.2 get 2>&1)
	n=$(sed -n 's/^counter=\([0-9]*\) .*/\1/p' <<<"$before")
	if [[ $now != "counter=$((n + 1)) "* ]]; then
		REASON="the service did not go on: '$before' then '$now'"
		return 1
	fi
	echo "    $T: $now"
}

# mig_wait_partial GLOB BYTES: until the round being stored (GLOB) holds BYTES, the migrate in
# the background ended, or 10 s passed.
mig_wait_partial() {
	local i
	for ((i = 0; i < 1000; i++)); do
		# shellcheck disable=SC2086 # the glob is meant
		[ "$(stat -c %s $1 2>/dev/null || echo 0)" -ge "$2" ] && break
		kill -0 "$MIG_MPID" 2>/dev/null || break
		sleep 0.01
	done
}

# --- failures -------------------------------------------------------------------------------

# migrate failed: not 0, one line on stderr matching a regex.
mig_failed() {
	local tag=$1 re=$2
	if [ "$RC" = 0 ]; then
		REASON="migrate succeeded"
		return 1
	fi
	one_line_err "$tag" || return 1
	if ! grep -qE "$re" "$TDIR/$tag.err"; then
		REASON="the error does not say '$re': $(first_err "$tag")"
		return 1
	fi
	echo "    $T: $(first_err "$tag")"
}

# After a failed migration: the tree runs on in the source host, untouched and untracked, the
# destination holds none of it, its agent is gone (unless told it stays), and a new agent
# leaves no partial round in its directory.
mig_source_kept() {
	local n
	sleep "$RUN_AFTER"
	running_tree || return 1
	n=$(uw_count)
	if [ "$n" != 0 ]; then
		REASON="$n VMAs of the tree are still registered for write-protection (uw) after the failure; the source host runs: $(mig_host_ps src)"
		return 1
	fi
	if ! mig_host_alive src "$MIG_LCHILD"; then
		REASON="the workload's child is gone from the source"
		return 1
	fi
	# no tracking holder, no crest left behind
	mig_host_empty src "$MIG_LPID" "$MIG_LCHILD"
}

# mig_destination_clean [stays|maybe]: the agent is gone (by default), still runs (stays,
# after a refusal) or either (maybe: the source could not tell it the migration is off).
mig_destination_clean() {
	local agent=${1:-gone} left i note=""
	if [ "$agent" = maybe ] && mig_agent_ours; then
		# it learns that the round is over when the source's connection ends
		for ((i = 0; i < 500; i++)); do
			[ -z "$(find "$TDIR/dst" -mindepth 1 -maxdepth 1 -name '.*')" ] && break
			sleep 0.02
		done
		agent=stays
		note=" 10 s after the link came back (the agent still runs)"
	fi
	if [ "$agent" = stays ]; then
		mig_agent_ours || {
			REASON="the agent did not survive"
			return 1
		}
		mig_host_empty dst "$(cat "$TDIR/agent.pid")" "${@:2}" || return 1
	else
		if [ -n "$MIG_AGENT" ] && ! wait_gone "$MIG_AGENT" 3000; then
			REASON="the agent still runs"
			return 1
		fi
		MIG_AGENT=""
		mig_host_empty dst || return 1
		mig_agent_start agent2 || return 1
	fi
	left=$(find "$TDIR/dst" -mindepth 1 -maxdepth 1 -name '.*' -printf '%f ')
	if [ -n "$left" ]; then
		REASON="partial rounds left on the destination$note: $left"
		return 1
	fi
}

mig_agent_killed_precopy_body() {
	local part
	mig_hosts_up || return 1
	MIG_MB=32 mig_workload || return 1
	mig_agent_start agent || return 1
	mig_slow_link 200mbit || return 1
	mig_migrate_bg mig
	# round 1 (32 MiB at 25 MB/s) done; kill the agent in the middle of round 2
	part="$TDIR/dst/.*-2.partial/pages-$MIG_LPID.img" # rounds are named ID-N
	if ! mig_wait_file "$TDIR/mig-progress.log" '^round 1: ' 20000; then
		mig_migrate_wait mig
		REASON="no round 1 line (migrate exited $RC: $(first_err mig))"
		return 1
	fi
	mig_wait_partial "$part" $((4 << 20))
	mig_agent_kill
	mig_migrate_wait mig
	mig_failed mig 'page server|agent|destination' || return 1
	mig_source_kept || return 1
	verdict "$PID" || return 1
	exited "$PID" || return 1
	mig_destination_clean
}

mig_agent_killed_restore_body() {
	local i
	mig_hosts_up || return 1
	MIG_MB=256 mig_workload || return 1
	mig_agent_start agent || return 1
	mig_migrate_bg mig
	for ((i = 0; i < 2000; i++)); do
		grep -q "task [0-9]*: restoring" "$TDIR/agent.log" 2>/dev/null && break
		kill -0 "$MIG_MPID" 2>/dev/null || break
		sleep 0.005
	done
	if ! grep -q "task [0-9]*: restoring" "$TDIR/agent.log"; then
		mig_migrate_wait mig
		REASON="the agent never said it was restoring (migrate exited $RC: $(first_err mig))"
		return 1
	fi
	mig_agent_kill
	mig_migrate_wait mig
	if grep -q 'Info: restored [0-9]* tasks' "$TDIR/agent.log"; then
		REASON="the agent finished the restore before it was killed: try a bigger MIG_MB"
		return 1
	fi
	mig_failed mig 'destination|agent' || return 1
	mig_source_kept || return 1
	verdict "$PID" || return 1
	exited "$PID" || return 1
	mig_destination_clean
}

MIG_GIVE_UP_S=10 # a migrate whose link died holds the tree frozen at most this long

mig_link_down_final_body() {
	local i part t0 waited
	mig_hosts_up || return 1
	MIG_MB=24 mig_workload || return 1
	mig_agent_start agent || return 1
	# rounds of 1.2 s; the final dump carries about as much
	mig_slow_link 200mbit || return 1
	mig_migrate_bg mig
	part="$TDIR/dst/.*-final.partial/pages-$MIG_LPID.img"
	if ! mig_wait_file "$TDIR/mig-progress.log" '^final dump: ' 30000; then
		mig_migrate_wait mig
		REASON="no final dump line (migrate exited $RC: $(first_err mig))"
		return 1
	fi
	mig_wait_partial "$part" $((2 << 20))
	ip -n "$(mig_ns src)" link set "$MIG_SRC_IF" down
	t0=$SECONDS
	for ((i = 0; i < MIG_GIVE_UP_S * 50; i++)); do
		kill -0 "$MIG_MPID" 2>/dev/null || break
		sleep 0.02
	done
	ip -n "$(mig_ns src)" link set "$MIG_SRC_IF" up
	if kill -0 "$MIG_MPID" 2>/dev/null; then
		# the tree stays frozen as long as migrate waits: the cleanup ends both
		REASON="migrate did not give up within $MIG_GIVE_UP_S s of the link going down during the final dump; the tree was frozen all that time"
		return 1
	fi
	mig_migrate_wait mig
	waited=$((SECONDS - t0))
	echo "    $T: migrate gave up ${waited} s after the link went down"
	mig_failed mig 'page server|agent|destination' || return 1
	mig_source_kept || return 1
	verdict "$PID" || return 1
	exited "$PID" || return 1
	mig_destination_clean maybe
}

# --- migrate/drbd, migrate/refused ---------------------------------------------------------

mig_drbd_body() {
	local conf=$TDIR/drbd.conf
	mig_hosts_up || return 1
	cat >"$conf" <<-EOF
		resource r0 {
			device /dev/drbd0;
			disk /dev/crest-test/r0;
			meta-disk internal;
			on crest-src {
				address $MIG_SRC_ADDR:7789;
				node-id 0;
			}
			on crest-dst {
				address $MIG_DST_ADDR:7789;
				node-id 1;
			}
		}
	EOF
	MIG_MB=16 mig_workload || return 1
	CREST_DRBDADM="drbdadm -d -c $conf" mig_agent_start agent || return 1
	CREST_DRBDADM="drbdadm -d -c $conf" mig_migrate mig --fs-sync drbd:r0
	mig_succeeded mig || return 1
	if ! grep -q '^DRBD resource r0 switched to the destination' "$TDIR/mig-progress.log"; then
		REASON="the progress does not show the DRBD switch"
		return 1
	fi
	if ! grep -qx 'drbdsetup secondary r0' "$TDIR/src/secondary.out" 2>/dev/null; then
		REASON="the source did not run 'drbdsetup secondary r0': $(head -n 1 "$TDIR/src/secondary.out" 2>&1)"
		return 1
	fi
	if ! grep -qx 'drbdsetup primary r0' "$TDIR/dst/primary.out" 2>/dev/null; then
		REASON="the agent did not run 'drbdsetup primary r0': $(head -n 1 "$TDIR/dst/primary.out" 2>&1)"
		return 1
	fi
	if grep -q 'drbdsetup primary' "$TDIR/src/"*.out; then
		REASON="the source made itself primary again"
		return 1
	fi
	mig_on_destination || return 1
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

mig_refused_body() {
	local holder outer left
	mig_hosts_up || return 1
	MIG_MB=16 mig_workload || return 1
	mig_agent_start agent || return 1
	# a process of the destination host takes the PID of the workload's child
	holder=$(mig_in dst sh -c "echo $((MIG_LCHILD - 1)) >/proc/sys/kernel/ns_last_pid || exit 1
		sleep 600 </dev/null >/dev/null 2>&1 & echo \$!")
	if [ "$holder" != "$MIG_LCHILD" ] || ! mig_host_alive dst "$MIG_LCHILD"; then
		REASON="cannot take pid $MIG_LCHILD in the destination host (got '$holder')"
		return 1
	fi
	sleep "$RUN_BEFORE"
	mig_migrate mig
	mig_failed mig "pid $MIG_LCHILD is taken" || return 1
	mig_source_kept || return 1
	mig_destination_clean stays "$MIG_LCHILD" || return 1
	left=$(find "$TDIR/dst" -mindepth 1 -maxdepth 1 -printf '%f ')
	if [ -n "$left" ]; then
		REASON="the refused migration left ${left}on the destination"
		return 1
	fi
	# with the PID free, the same agent takes the tree
	outer=$(mig_outer dst "$MIG_LCHILD")
	if [ "$(cat "/proc/$outer/comm" 2>/dev/null)" = sleep ]; then
		kill -KILL "$outer"
		wait_gone "$outer"
	fi
	if mig_host_alive dst "$MIG_LCHILD"; then
		REASON="cannot free pid $MIG_LCHILD in the destination host"
		return 1
	fi
	mig_migrate mig2
	mig_succeeded mig2 || return 1
	mig_on_destination || return 1
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

mig_build() {
	[ "$MIG_BUILT" = 1 ] && return 0
	if ! MAKEFLAGS='' make -s -C "$ROOT" --no-print-directory test/live/bin/hostinit \
		test/live/bin/mig_files test/live/bin/tcp_stream >"$TDIR/build.err" 2>&1; then
		REASON="cannot build the migration test programs: $(head -n 1 "$TDIR/build.err")"
		return 1
	fi
	MIG_BUILT=1
}

# migrate_body VARIANT: one test; its hosts and namespaces gone afterwards.
migrate_body() {
	local rc
	MIG_LPID="" MIG_LCHILD="" MIG_LTHREAD=""
	mig_build && "mig_${1}_body"
	rc=$?
	migrate_cleanup
	return $rc
}
