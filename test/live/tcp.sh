# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# TCP and UDP socket tests, sourced by run.sh (which provides wait_line, wait_ready, verdict,
# untouched, one_line_err, ...).  Each test makes two network namespaces joined by a veth
# pair, with IPv4 and IPv6 addresses (nodad) on it and lo up in both: the dumped tree runs in
# the server's namespace, the peer outside the tree (started separately, not a child of it)
# in the client's.  crest dumps and restores inside the server's namespace, as it must; no
# other namespace or interface is ever touched.  The programs: test/live/tcp_stream.c (a
# numbered stream both ways, each side checking every number), tcp_listen.c, udp_echo.c.
#
#   tcp/stream          the server dumped with --tcp-established (it dies) and restored while
#                       the outside client streams on: while dumped, the nftables lock
#                       crest_<PID> is in the server's namespace naming the client's port; it
#                       is gone after the restore; the stream flows again both ways with no
#                       number lost, doubled or reordered, the client saw no error and no RST
#                       (its namespace's reset counters did not move, nor did the server
#                       namespace's OutRsts), ss in the client's namespace still shows the
#                       connection ESTABLISHED.  The client's longest wait for data is printed.
#                       Before that, a restore in the client's namespace (where the server's
#                       address does not exist) is refused in one line and leaves nothing
#                       behind, the lock still in place.
#   tcp/unacked         the client stops reading and its ACKs are dropped (an nftables rule in
#                       its own namespace) while the server queues 4 MiB more: the server holds
#                       4 MiB in its send queue, part of it sent and unacknowledged, when
#                       dumped; after the restore the client reads on and gets every byte
#   tcp/recvq           the other way round: the server stops reading, with a big receive buffer,
#                       while the client queues 4 MiB at once: the server holds MiBs unread in
#                       its receive queue when dumped; after the restore it reads every byte
#   tcp/ipv6            the stream over IPv6 and over a v4-mapped address (the client's
#                       AF_INET6 socket connected to ::ffff:<IPv4>), both accepted by one
#                       dual-stack listener in the tree
#   tcp/both_ends       both ends in the tree (parent and child over 127.0.0.1)
#   tcp/listen_pending  a listener with a connection the kernel completed but nobody accepted:
#                       the dump is refused in one line naming --skip-in-flight and the
#                       program is untouched (the connection still queued); with the option the
#                       pending connection is dropped, the listener restored with its port and
#                       backlog, and a new client is accepted and served
#   tcp/no_flag         the dump without --tcp-established is refused in one line naming it; the
#                       server runs on untouched and the stream keeps flowing
#   tcp/leave_running   the dump with --leave-running: the stream flows on, no lock left
#   tcp/predump         two pre-dump rounds while the stream flows (no lock left by either),
#                       then the final dump with --tcp-established on top, and the restore
#   tcp/dump_fails      a dump with --tcp-established that fails half way (its images'
#                       filesystem fills up): one line, the server untouched, no lock left, its
#                       connection out of repair mode: the stream flows on with no reset
#   udp/echo            a bound UDP socket, a connected one and two SO_REUSEPORT ones on one
#                       port, and an IPv6 bound one and connected one, answer an outside client
#                       before and after the restore (both reuseport sockets still bound); the
#                       program checks each socket's addresses, the connected ones' peers,
#                       SO_REUSEPORT and IPV6_V6ONLY

TCP_TESTS=(tcp/stream tcp/unacked tcp/recvq tcp/ipv6 tcp/both_ends tcp/listen_pending
	tcp/no_flag tcp/leave_running tcp/predump tcp/dump_fails udp/echo)
# The program each test dumps (run.sh's finish() kills it by that name after a failure).
declare -A TCP_PROG=([tcp/listen_pending]=tcp_listen [udp/echo]=udp_echo)
for _tcp_t in "${TCP_TESTS[@]}"; do : "${TCP_PROG[$_tcp_t]:=tcp_stream}"; done
unset _tcp_t

TCP_NS_S=crest-tcp-s-$$
TCP_NS_C=crest-tcp-c-$$
TCP_S4=10.198.0.1
TCP_C4=10.198.0.2
TCP_S6=fd00:198::1
TCP_C6=fd00:198::2
TCP_PORT=7100
TCP_NS_MADE=0
TCP_BUILT=0
TCP_PEERS=()	# "pid:program" of the processes a test started outside the dumped tree
TCP_CPID=""	# the stream client
TCP_CLOG=""	# and its log
TCP_BEFORE_RESTORE="" # a function tcp_dump_restore calls between the dump and the restore
# Counters that must not move: in the client's namespace, any sign of a reset or an abort;
# in the server's, a reset sent (the dumped sockets must die silently, in repair mode).
TCP_CLIENT_COUNTERS="TcpEstabResets TcpOutRsts TcpExtTCPAbortOnData TcpExtTCPAbortOnClose
	TcpExtTCPAbortOnTimeout"
TCP_SERVER_COUNTERS="TcpOutRsts TcpExtTCPAbortOnData TcpExtTCPAbortOnClose"

# tcp_in NS COMMAND...: the command in one of our namespaces (only the network namespace
# changes, so paths and mounts are the runner's).  Programs are exec'd, keeping their PID.
tcp_in() {
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" "$@"
}

tcp_ns_down() {
	ip netns del "$TCP_NS_S" 2>/dev/null
	ip netns del "$TCP_NS_C" 2>/dev/null
	TCP_NS_MADE=0
}

# The two namespaces and the veth pair between them, IPv4 and IPv6 on it; lo up in both.
tcp_ns_up() {
	local s=$TCP_NS_S c=$TCP_NS_C
	tcp_ns_down
	TCP_NS_MADE=1
	if ! { ip netns add "$s" && ip netns add "$c" &&
		ip link add cts$$ netns "$s" type veth peer name ctc$$ netns "$c" &&
		ip -n "$s" addr add "$TCP_S4/24" dev cts$$ &&
		ip -n "$c" addr add "$TCP_C4/24" dev ctc$$ &&
		ip -n "$s" addr add "$TCP_S6/64" dev cts$$ nodad &&
		ip -n "$c" addr add "$TCP_C6/64" dev ctc$$ nodad &&
		ip -n "$s" link set cts$$ up && ip -n "$c" link set ctc$$ up &&
		ip -n "$s" link set lo up && ip -n "$c" link set lo up; } \
		>"$TDIR/netns.err" 2>&1; then
		REASON="cannot set up the test namespaces: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
}

tcp_build() {
	[ "$TCP_BUILT" = 1 ] && return 0
	if ! MAKEFLAGS='' make -s -C "$ROOT" --no-print-directory test/live/bin/tcp_stream \
		test/live/bin/tcp_listen test/live/bin/udp_echo >"$TDIR/build.err" 2>&1; then
		REASON="cannot build the socket test programs: $(head -n 1 "$TDIR/build.err")"
		return 1
	fi
	TCP_BUILT=1
}

# tcp_start_server PROG ARGS...: the program to dump, in the server's namespace; sets PID, LOG.
tcp_start_server() {
	local prog=$1
	shift
	mkdir -p "$TDIR/work"
	LOG=$TDIR/test.log
	# nsenter itself, not tcp_in: a function would run in a subshell, with a pid of its own
	TL_DIR=$TDIR/work nsenter --net="/run/netns/$TCP_NS_S" "$BIN/$prog" "$@" >"$LOG" 2>&1 \
		</dev/null &
	PID=$!
	STARTED+=("$PID:$prog")
	disown "$PID"
}

# tcp_start_peer NAME PROG ARGS...: a program in the client's namespace, its output in
# $TDIR/NAME.log; sets PEER (its pid).
tcp_start_peer() {
	local name=$1 prog=$2
	shift 2
	mkdir -p "$TDIR/work"
	TL_DIR=$TDIR/work nsenter --net="/run/netns/$TCP_NS_C" "$BIN/$prog" "$@" \
		>"$TDIR/$name.log" 2>&1 </dev/null &
	PEER=$!
	STARTED+=("$PEER:$prog")
	TCP_PEERS+=("$PEER:$prog")
	disown "$PEER"
}

# tcp_wait_log LOGFILE REGEX PID MS: wait_line on another log than $LOG.
tcp_wait_log() {
	local LOG=$1
	shift
	wait_line "$@"
}

# tcp_ready PID LOGFILE WHAT: wait_ready on another log than $LOG.
tcp_ready() {
	local LOG=$2
	if ! wait_ready "$1"; then
		REASON="$3: $REASON"
		return 1
	fi
}

# tcp_verdict PID LOGFILE WHAT: verdict (and exit) of a program whose log is not $LOG.
tcp_verdict() {
	local LOG=$2
	if ! verdict "$1" || ! exited "$1"; then
		REASON="$3: $REASON"
		return 1
	fi
}

# tcp_done PID LOGFILE WHAT: the verdict of a program that ends by itself: PASS, and gone.
tcp_done() {
	local v
	tcp_wait_log "$2" '^(PASS|FAIL)' "$1" "$VERDICT_MS"
	case $? in
	1)
		REASON="$3: no verdict within $((VERDICT_MS / 1000)) s"
		return 1
		;;
	2)
		REASON="$3: died without a verdict"
		return 1
		;;
	esac
	v=$(grep -m1 -E '^(PASS|FAIL)' "$2")
	if [ "$v" != PASS ]; then
		REASON="$3: $v"
		return 1
	fi
	if ! wait_gone "$1"; then
		REASON="$3: still running after its verdict"
		return 1
	fi
}

# tcp_crest TAG ARGS...: crest inside the server's namespace, like run_crest.  Sets RC.
tcp_crest() {
	local tag=$1
	shift
	if [ ! -x "$CREST" ]; then
		echo "$CREST is not built" >"$TDIR/$tag.err"
		RC=127
		return
	fi
	timeout -k 5 "$CREST_TIMEOUT" nsenter --net="/run/netns/$TCP_NS_S" "$CREST" "$@" \
		</dev/null >"$TDIR/$tag.out" 2>"$TDIR/$tag.err"
	RC=$?
	[ "$RC" = 124 ] && echo "(killed after ${CREST_TIMEOUT} s)" >>"$TDIR/$tag.err"
}

# tcp_report PID LOGFILE WHAT: ask a tcp_stream program for a report; sets TCP_RX (messages
# it received so far).
tcp_report() {
	local pid=$1 log=$2 n i line
	n=$(grep -c '^# report ' "$log")
	if ! kill -USR2 "$pid" 2>/dev/null; then
		REASON="$3: cannot signal $pid for a report (state '$(proc_state "$pid")')"
		return 1
	fi
	for ((i = 0; i < 250; i++)); do
		[ "$(grep -c '^# report ' "$log")" -gt "$n" ] && break
		sleep 0.02
	done
	line=$(grep '^# report ' "$log" | tail -n 1)
	if [ "$(grep -c '^# report ' "$log")" -le "$n" ] ||
		! [[ $line =~ rx=([0-9]+)\ tx=([0-9]+)\ gap_ms=([0-9.]+)\ maxgap_ms=([0-9.]+) ]]; then
		REASON="$3: no report within 5 s of SIGUSR2 (state '$(proc_state "$pid")')"
		return 1
	fi
	TCP_RX=${BASH_REMATCH[1]}
}

# tcp_flowing PID LOGFILE WHAT: what it receives grows by 400 messages (0.1 s of the stream)
# within 5 s.
tcp_flowing() {
	local pid=$1 log=$2 what=$3 base i
	tcp_report "$pid" "$log" "$what" || return 1
	base=$TCP_RX
	for ((i = 0; i < 50; i++)); do
		sleep 0.1
		tcp_report "$pid" "$log" "$what" || return 1
		[ "$TCP_RX" -ge $((base + 400)) ] && return 0
	done
	REASON="$what: the stream does not flow (received $base, then $TCP_RX messages 5 s later)"
	return 1
}

# tcp_counters NS NAMES: "name=value ..." of /proc/net/snmp and /proc/net/netstat counters
# in a namespace, named as nstat names them (TcpEstabResets, TcpExtTCPAbortOnData, ...).
tcp_counters() {
	tcp_in "$1" cat /proc/net/snmp /proc/net/netstat 2>/dev/null | awk -v want="$2" '
		!($1 in hdr) { hdr[$1] = $0; next }
		{
			n = split(hdr[$1], h, " ")
			p = substr($1, 1, length($1) - 1)
			for (i = 2; i <= n; i++)
				v[p h[i]] = $i
			delete hdr[$1]
		}
		END {
			k = split(want, w, " ")
			for (i = 1; i <= k; i++)
				printf "%s%s=%s", (i > 1 ? " " : ""), w[i], (w[i] in v) ? v[w[i]] : "?"
		}'
}

# tcp_counters_same WHAT BEFORE AFTER: the counters did not move.
tcp_counters_same() {
	local b a
	[ "$2" = "$3" ] && return 0
	for b in $2; do
		for a in $3; do
			if [ "${a%%=*}" = "${b%%=*}" ] && [ "$a" != "$b" ]; then
				REASON="$1: ${b%%=*} went from ${b#*=} to ${a#*=}"
				return 1
			fi
		done
	done
	REASON="$1: counters changed: $2 -> $3"
	return 1
}

# Ports of the peers of the server namespace's established connections to TCP_PORT.
tcp_peer_ports() {
	tcp_in "$TCP_NS_S" ss -Htn state established "( sport = :$TCP_PORT )" |
		awk '{ n = split($4, a, ":"); print a[n] }' | sort -n | tr '\n' ' '
}

# Established connections to the server port that the client's namespace sees.
tcp_client_established() {
	tcp_in "$TCP_NS_C" ss -Htn state established "( dport = :$TCP_PORT )" | grep -c .
}

tcp_lock_present() {
	tcp_in "$TCP_NS_S" nft list table inet "crest_$1" >/dev/null 2>&1
}

# A restore in the client's namespace: refused in one line, nothing left behind, the lock
# still in the server's namespace.
TCP_WRONG_NS=0
TCP_IMG="" # the images directory of tcp_dump_restore: $TDIR/img unless a test says otherwise
tcp_restore_wrong_ns() {
	local others
	if timeout -k 5 "$CREST_TIMEOUT" nsenter --net="/run/netns/$TCP_NS_C" "$CREST" restore \
		-D "$TCP_IMG" -d -o wrong-ns.log -v4 --pidfile "$TDIR/pidfile" </dev/null \
		>"$TDIR/wrong-ns.out" 2>"$TDIR/wrong-ns.err"; then
		REASON="restore in the client's network namespace succeeded"
		return 1
	fi
	one_line_err wrong-ns || return 1
	others=$(session_members "$PID" | tr '\n' ' ')
	if [ -e "/proc/$PID" ] || [ -n "$others" ]; then
		REASON="the refused restore left a process behind: pid $PID $(proc_state "$PID"), session: $others"
		return 1
	fi
	if [ -e "$TDIR/pidfile" ]; then
		REASON="the refused restore wrote a pidfile"
		return 1
	fi
	if ! tcp_lock_present "$PID"; then
		REASON="the network lock crest_$PID is gone after a restore refused elsewhere"
		return 1
	fi
}

# tcp_dump_restore "PEER PORTS" DUMP_OPTIONS...: dump the server (it dies); meanwhile the
# lock crest_<PID> must be in place naming each peer port (when there are any); restore in
# the server's namespace with the same PID, our child; the lock must be gone.
tcp_dump_restore() {
	local ports=$1 p got ppid
	shift
	TCP_IMG=${TCP_IMG:-$TDIR/img}
	tcp_crest dump dump -t "$PID" -D "$TCP_IMG" -o dump.log -v4 "$@"
	if [ "$RC" != 0 ]; then
		keep_log "$TCP_IMG/dump.log" dump
		REASON="dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists $((GONE_MS / 1000)) s after the dump (state $(proc_state "$PID"))"
		return 1
	fi
	if [ -n "${ports// /}" ]; then
		if ! tcp_in "$TCP_NS_S" nft -n list table inet "crest_$PID" >"$TDIR/lock.txt" \
			2>"$TDIR/lock.err"; then
			REASON="no nftables table inet crest_$PID in the server's namespace while dumped"
			return 1
		fi
		for p in $ports; do
			if ! grep -qw "$p" "$TDIR/lock.txt"; then
				REASON="the network lock crest_$PID does not name the peer's port $p"
				return 1
			fi
		done
	fi
	if [ -n "$TCP_BEFORE_RESTORE" ]; then
		"$TCP_BEFORE_RESTORE" || return 1
	fi
	if [ "$TCP_WRONG_NS" = 1 ]; then
		tcp_restore_wrong_ns || return 1
	fi
	tcp_crest restore restore -D "$TCP_IMG" -d -o restore.log -v4 --pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		keep_log "$TCP_IMG/restore.log" restore
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
	if tcp_lock_present "$PID"; then
		REASON="the network lock crest_$PID is still there after the restore"
		return 1
	fi
}

# The stream's two ends, in the namespaces: the server (PID, LOG) listening on SADDR with a
# connection from the client (TCP_CPID, TCP_CLOG) to each of CADDRS.  Extra arguments go to
# the server; TCP_CLIENT_OPTS to the client.
TCP_CLIENT_OPTS=()
tcp_stream_up() {
	local saddr=$1 caddrs=$2 n
	shift 2
	n=$(wc -w <<<"$caddrs")
	tcp_ns_up || return 1
	tcp_start_server tcp_stream server "$saddr" "$TCP_PORT" "$n" "$@"
	wait_line '^# listening' "$PID" "$READY_MS"
	case $? in
	1)
		REASON="server: not listening within $((READY_MS / 1000)) s"
		return 1
		;;
	2)
		REASON="server: died before listening"
		return 1
		;;
	esac
	# shellcheck disable=SC2086
	tcp_start_peer client tcp_stream client "$TCP_PORT" $caddrs "${TCP_CLIENT_OPTS[@]}"
	TCP_CPID=$PEER
	TCP_CLOG=$TDIR/client.log
	tcp_ready "$TCP_CPID" "$TCP_CLOG" client || return 1
	tcp_ready "$PID" "$LOG" server || return 1
	sleep "$RUN_BEFORE"
	TCP_PORTS=$(tcp_peer_ports)
	if [ "$(wc -w <<<"$TCP_PORTS")" != "$n" ]; then
		REASON="the server's namespace has connections from ports '$TCP_PORTS', not $n"
		return 1
	fi
}

# After the dump (and restore): both ends still stream, the client's namespace still has its
# connections, no counter moved; then both verdicts (SIGTERM to both, so that each gets the
# other's end mark).  Prints the client's longest wait for data.
tcp_stream_down() {
	local n=$1 cb=$2 sb=$3 ca sa gap
	tcp_flowing "$PID" "$LOG" server || return 1
	tcp_flowing "$TCP_CPID" "$TCP_CLOG" client || return 1
	if [ "$(tcp_client_established)" != "$n" ]; then
		REASON="the client's namespace shows $(tcp_client_established) established connections, not $n"
		tcp_in "$TCP_NS_C" ss -tan >"$TDIR/ss-client.log" 2>&1
		return 1
	fi
	ca=$(tcp_counters "$TCP_NS_C" "$TCP_CLIENT_COUNTERS")
	sa=$(tcp_counters "$TCP_NS_S" "$TCP_SERVER_COUNTERS")
	tcp_counters_same "the client's namespace" "$cb" "$ca" || return 1
	tcp_counters_same "the server's namespace" "$sb" "$sa" || return 1
	kill -TERM "$TCP_CPID" "$PID" 2>/dev/null
	tcp_verdict "$TCP_CPID" "$TCP_CLOG" client || return 1
	tcp_verdict "$PID" "$LOG" server || return 1
	gap=$(sed -n 's/^# max gap \([0-9.]*\) ms$/\1/p' "$TCP_CLOG")
	echo "    $T: the client's longest wait for data: ${gap:-?} ms"
}

# Two pre-dump rounds (img/1, img/2 on top) of the running server: no lock left, untouched.
tcp_predump_rounds() {
	local r prev="" h
	for r in 1 2; do
		tcp_crest "pd$r" pre-dump -t "$PID" -D "$TDIR/img/$r" \
			${prev:+--prev-images-dir "../$prev"} -o pd.log -v4
		if [ "$RC" != 0 ]; then
			keep_log "$TDIR/img/$r/pd.log" "pd$r"
			REASON="pre-dump round $r exited $RC: $(first_err "pd$r")"
			return 1
		fi
		h=$(holder_of "$TDIR/img/$r") && HOLDERS+=("$h")
		untouched "$PID" || return 1
		if tcp_lock_present "$PID"; then
			REASON="pre-dump round $r left the network lock crest_$PID"
			return 1
		fi
		sleep "$RUN_BEFORE"
		prev=$r
	done
}

# stream, ipv6, leave_running, no_flag, predump, dump_fails: one body, the dump differs.
tcp_stream_body() {
	local variant=$1 saddr=$TCP_S4 caddrs=$TCP_S4 cb sb opts=() rc
	if [ "$variant" = ipv6 ]; then
		saddr="::"
		caddrs="$TCP_S6 ::ffff:$TCP_S4"
	fi
	# 4 MiB of memory cannot fit in the 1 MiB the failing dump gets
	[ "$variant" = dump_fails ] && opts=(mem=4)
	tcp_stream_up "$saddr" "$caddrs" "${opts[@]}" || return 1
	cb=$(tcp_counters "$TCP_NS_C" "$TCP_CLIENT_COUNTERS")
	sb=$(tcp_counters "$TCP_NS_S" "$TCP_SERVER_COUNTERS")
	case $variant in
	no_flag)
		tcp_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4
		if [ "$RC" = 0 ]; then
			REASON="dump of a tree with an established connection without --tcp-established succeeded"
			return 1
		fi
		one_line_err dump || return 1
		if ! grep -q -- --tcp-established "$TDIR/dump.err"; then
			REASON="the error does not name --tcp-established: $(first_err dump)"
			return 1
		fi
		sleep "$RUN_AFTER"
		untouched "$PID" || return 1
		if tcp_lock_present "$PID"; then
			REASON="the refused dump left the network lock crest_$PID"
			return 1
		fi
		;;
	dump_fails)
		if ! mount -t tmpfs -o size=1m crest-live "$TDIR/img" 2>"$TDIR/mount.err"; then
			REASON="cannot mount a small tmpfs: $(head -n 1 "$TDIR/mount.err")"
			return 1
		fi
		MOUNTS+=("$TDIR/img")
		tcp_crest dump dump -t "$PID" -D "$TDIR/img" -o "$TDIR/dump.log" -v4 \
			--tcp-established
		if [ "$RC" = 0 ]; then
			REASON="dump into a 1 MiB filesystem succeeded"
			return 1
		fi
		one_line_err dump || return 1
		if [ "$RC" != 1 ] || ! grep -q 'No space left on device' "$TDIR/dump.err"; then
			REASON="the dump exited $RC, not for want of space: $(first_err dump)"
			return 1
		fi
		sleep "$RUN_AFTER"
		untouched "$PID" || return 1
		if tcp_lock_present "$PID"; then
			REASON="the failed dump left the network lock crest_$PID"
			return 1
		fi
		;;
	leave_running)
		tcp_crest dump dump -t "$PID" -D "$TDIR/img" -o dump.log -v4 --tcp-established \
			--leave-running
		if [ "$RC" != 0 ]; then
			REASON="dump exited $RC: $(first_err dump)"
			return 1
		fi
		untouched "$PID" || return 1
		if [ ! -s "$TDIR/img/core-$PID.img" ]; then
			REASON="no core-$PID.img in the images"
			return 1
		fi
		if tcp_lock_present "$PID"; then
			REASON="the network lock crest_$PID is left after a --leave-running dump"
			return 1
		fi
		;;
	predump)
		tcp_predump_rounds || return 1
		TCP_IMG=$TDIR/img/final
		tcp_dump_restore "$TCP_PORTS" --tcp-established --prev-images-dir ../2 || return 1
		;;
	stream)
		TCP_WRONG_NS=1
		tcp_dump_restore "$TCP_PORTS" --tcp-established
		rc=$?
		TCP_WRONG_NS=0
		[ "$rc" = 0 ] || return 1
		;;
	*)
		tcp_dump_restore "$TCP_PORTS" --tcp-established || return 1
		;;
	esac
	tcp_stream_down "$(wc -w <<<"$caddrs")" "$cb" "$sb"
}

# The client's ACKs dropped in its own namespace, for tcp/unacked; and taken away again.
tcp_drop_acks() {
	tcp_in "$TCP_NS_C" nft -f - >"$TDIR/nft.err" 2>&1 <<-EOF
		table inet crest_test_acks {
			chain out {
				type filter hook output priority 0; policy accept;
				ip daddr $TCP_S4 tcp dport $TCP_PORT drop
			}
		}
	EOF
}

tcp_pass_acks() {
	if ! tcp_in "$TCP_NS_C" nft delete table inet crest_test_acks 2>"$TDIR/nft.err"; then
		REASON="cannot remove the client's ACK drop rule: $(head -n 1 "$TDIR/nft.err")"
		return 1
	fi
}

tcp_unacked_body() {
	local line outq unacked tx cb sb i
	TCP_CLIENT_OPTS=(rcvbuf=65536)
	tcp_stream_up "$TCP_S4" "$TCP_S4" burst || return 1
	TCP_CLIENT_OPTS=()
	cb=$(tcp_counters "$TCP_NS_C" "$TCP_CLIENT_COUNTERS")
	sb=$(tcp_counters "$TCP_NS_S" "$TCP_SERVER_COUNTERS")
	kill -USR1 "$TCP_CPID"
	if ! tcp_wait_log "$TCP_CLOG" '^# paused' "$TCP_CPID" "$READY_MS"; then
		REASON="the client did not pause"
		return 1
	fi
	if ! tcp_drop_acks; then
		REASON="cannot drop the client's ACKs: $(head -n 1 "$TDIR/nft.err")"
		return 1
	fi
	kill -USR1 "$PID"
	if ! wait_line '^# burst queued' "$PID" "$READY_MS"; then
		REASON="the server did not queue its 4 MiB burst within $((READY_MS / 1000)) s"
		return 1
	fi
	line=$(grep -m1 '^# burst queued' "$LOG")
	if ! [[ $line =~ tx=([0-9]+)\ outq=([0-9]+)\ notsent=([0-9]+)\ unacked=([0-9]+) ]]; then
		REASON="cannot read the server's send queue: '$line'"
		return 1
	fi
	tx=${BASH_REMATCH[1]}
	outq=${BASH_REMATCH[2]}
	unacked=${BASH_REMATCH[4]}
	tcp_in "$TCP_NS_S" ss -tnmi >"$TDIR/ss-server-dumped.log" 2>&1
	if [ "$outq" -lt $((4 << 20)) ] || [ "$unacked" -le 0 ]; then
		REASON="the server's send queue holds $outq bytes, $unacked unacknowledged: not 4 MiB with some unacknowledged"
		return 1
	fi
	TCP_BEFORE_RESTORE=tcp_pass_acks
	tcp_dump_restore "$TCP_PORTS" --tcp-established
	i=$?
	TCP_BEFORE_RESTORE=""
	[ "$i" = 0 ] || return 1
	kill -HUP "$TCP_CPID"
	for ((i = 0; i < 80; i++)); do
		tcp_report "$TCP_CPID" "$TCP_CLOG" client || return 1
		[ "$TCP_RX" -ge "$tx" ] && break
		sleep 0.1
	done
	if [ "$TCP_RX" -lt "$tx" ]; then
		REASON="the client got $TCP_RX messages of the $tx sent before the dump, 8 s after resuming"
		return 1
	fi
	tcp_stream_down 1 "$cb" "$sb"
}

# Bytes in the receive queue of the server's connection.
tcp_server_recvq() {
	tcp_in "$TCP_NS_S" ss -Htn state established "( sport = :$TCP_PORT )" |
		awk '{ print $1; exit }'
}

tcp_recvq_body() {
	local line tx q cb sb i
	TCP_CLIENT_OPTS=(burst)
	tcp_stream_up "$TCP_S4" "$TCP_S4" rcvbuf=8388608 || return 1
	TCP_CLIENT_OPTS=()
	cb=$(tcp_counters "$TCP_NS_C" "$TCP_CLIENT_COUNTERS")
	sb=$(tcp_counters "$TCP_NS_S" "$TCP_SERVER_COUNTERS")
	kill -USR1 "$PID"
	if ! wait_line '^# paused' "$PID" "$READY_MS"; then
		REASON="the server did not pause"
		return 1
	fi
	kill -USR1 "$TCP_CPID"
	if ! tcp_wait_log "$TCP_CLOG" '^# burst queued' "$TCP_CPID" "$READY_MS"; then
		REASON="the client did not queue its 4 MiB burst within $((READY_MS / 1000)) s"
		return 1
	fi
	line=$(grep -m1 '^# burst queued' "$TCP_CLOG")
	if ! [[ $line =~ tx=([0-9]+) ]]; then
		REASON="cannot read the client's burst: '$line'"
		return 1
	fi
	tx=${BASH_REMATCH[1]}
	for ((i = 0; i < 100; i++)); do
		q=$(tcp_server_recvq)
		[ "${q:-0}" -ge $((2 << 20)) ] && break
		sleep 0.05
	done
	tcp_in "$TCP_NS_S" ss -tnmi >"$TDIR/ss-server-dumped.log" 2>&1
	if [ "${q:-0}" -lt $((2 << 20)) ]; then
		REASON="the server's receive queue holds ${q:-no} bytes, not 2 MiB or more"
		return 1
	fi
	tcp_dump_restore "$TCP_PORTS" --tcp-established || return 1
	kill -HUP "$PID"
	for ((i = 0; i < 80; i++)); do
		tcp_report "$PID" "$LOG" server || return 1
		[ "$TCP_RX" -ge "$tx" ] && break
		sleep 0.1
	done
	if [ "$TCP_RX" -lt "$tx" ]; then
		REASON="the server got $TCP_RX messages of the $tx sent before the dump, 8 s after resuming"
		return 1
	fi
	tcp_stream_down 1 "$cb" "$sb"
}

tcp_both_ends_body() {
	local sb sa
	tcp_ns_up || return 1
	tcp_start_server tcp_stream pair "$TCP_PORT"
	wait_ready "$PID" || return 1
	sleep "$RUN_BEFORE"
	TCP_PORTS=$(tcp_peer_ports)
	if [ "$(wc -w <<<"$TCP_PORTS")" != 1 ]; then
		REASON="the server's namespace has connections from ports '$TCP_PORTS', not one"
		return 1
	fi
	sb=$(tcp_counters "$TCP_NS_S" "$TCP_SERVER_COUNTERS")
	tcp_dump_restore "$TCP_PORTS" --tcp-established || return 1
	tcp_flowing "$PID" "$LOG" "the parent" || return 1
	sa=$(tcp_counters "$TCP_NS_S" "$TCP_SERVER_COUNTERS")
	tcp_counters_same "the namespace" "$sb" "$sa" || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

# "RECV_Q SEND_Q" of the listener on TCP_PORT in the server's namespace (for a listener ss
# shows the accept queue's length and the backlog).
tcp_listen_queues() {
	tcp_in "$TCP_NS_S" ss -Hltn "( sport = :$TCP_PORT )" | awk '{ print $2, $3; exit }'
}

tcp_listen_pending_body() {
	local q ping1 ping1_log n
	tcp_ns_up || return 1
	tcp_start_server tcp_listen server 0.0.0.0 "$TCP_PORT" 7
	wait_ready "$PID" || return 1
	tcp_start_peer ping1 tcp_listen ping "$TCP_S4" "$TCP_PORT"
	ping1=$PEER
	ping1_log=$TDIR/ping1.log
	tcp_ready "$ping1" "$ping1_log" "the first client" || return 1
	q=$(tcp_listen_queues)
	if [ "$q" != "1 7" ]; then
		REASON="the listener's accept queue and backlog are '$q', not '1 7'"
		return 1
	fi
	tcp_crest refused dump -t "$PID" -D "$TDIR/img" -o refused.log -v4 --tcp-established
	if [ "$RC" = 0 ]; then
		REASON="dump of a listener with a pending connection succeeded without --skip-in-flight"
		return 1
	fi
	one_line_err refused || return 1
	if ! grep -q -- --skip-in-flight "$TDIR/refused.err"; then
		REASON="the error does not name --skip-in-flight: $(first_err refused)"
		return 1
	fi
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	q=$(tcp_listen_queues)
	if [ "$q" != "1 7" ]; then
		REASON="after the refused dump the accept queue and backlog are '$q', not '1 7'"
		return 1
	fi
	if tcp_lock_present "$PID"; then
		REASON="the refused dump left the network lock crest_$PID"
		return 1
	fi
	tcp_dump_restore "" --tcp-established --skip-in-flight || return 1
	q=$(tcp_listen_queues)
	if [ "$q" != "0 7" ]; then
		REASON="after the restore the accept queue and backlog are '$q', not '0 7'"
		return 1
	fi
	kill -USR1 "$PID"
	tcp_start_peer ping2 tcp_listen ping "$TCP_S4" "$TCP_PORT"
	# it ends by itself once answered: no SIGTERM (which could also hit the shell forked
	# to start it, before it runs the program)
	tcp_done "$PEER" "$TDIR/ping2.log" "a new client" || return 1
	n=$(grep -c '^# served ' "$LOG")
	if [ "$n" != 1 ] || ! grep -q "^# served $PEER from " "$LOG"; then
		REASON="the listener served $n connections ($(grep '^# served ' "$LOG" | tr '\n' ' ')), not just the new one"
		return 1
	fi
	if grep -q '^# answer' "$ping1_log"; then
		REASON="the dropped pending connection was answered after the restore"
		return 1
	fi
	kill_ours "$ping1" tcp_listen
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# tcp_ask SRC_PORT ADDR PORT MESSAGE EXPECTED_REGEX WHEN: one UDP request from the client's
# namespace, answered as expected.
tcp_ask() {
	local out
	out=$(timeout 10 nsenter --net="/run/netns/$TCP_NS_C" "$BIN/udp_echo" ask "$1" "$2" \
		"$3" "$4" 2>>"$TDIR/ask.err")
	echo "$6: from port $1 to $2 port $3: '$4' -> '$out'" >>"$TDIR/ask.log"
	if ! [[ $out =~ $5 ]]; then
		REASON="$6: '$4' from port $1 to $2 port $3 got '${out:-no answer}'"
		return 1
	fi
}

# Each socket answers; both SO_REUSEPORT sockets are bound (and, over a few source ports,
# each of them answers at least once: logged, the kernel's choice is a hash).
tcp_udp_round() {
	local when=$1 p n
	tcp_ask 0 "$TCP_S4" 7200 "a $when" "^echo-a a $when\$" "$when" || return 1
	tcp_ask 7300 "$TCP_S4" 7201 "b $when" "^echo-b b $when\$" "$when" || return 1
	for p in 7301 7302 7303 7304; do
		tcp_ask "$p" "$TCP_S4" 7202 "c $when $p" "^echo-c[12] c $when $p\$" "$when" ||
			return 1
	done
	tcp_ask 0 "$TCP_S6" 7203 "d $when" "^echo-d d $when\$" "$when" || return 1
	tcp_ask 7300 "$TCP_S6" 7204 "e $when" "^echo-e e $when\$" "$when" || return 1
	n=$(tcp_in "$TCP_NS_S" ss -Huln "( sport = :7202 )" | grep -c .)
	if [ "$n" != 2 ]; then
		REASON="$when: $n sockets bound to port 7202, not 2"
		return 1
	fi
}

tcp_udp_echo_body() {
	tcp_ns_up || return 1
	tcp_start_server udp_echo server "$TCP_S4" "$TCP_S6" "$TCP_C4" "$TCP_C6" 7300 7200
	wait_ready "$PID" || return 1
	tcp_udp_round "before the dump" || return 1
	tcp_dump_restore "" || return 1
	tcp_udp_round "after the restore" || return 1
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

# Whatever a test leaves: the processes it started outside the tree, the tree itself, its
# namespaces.  Also run at the runner's exit.
tcp_cleanup() {
	local p
	for p in "${TCP_PEERS[@]}"; do
		kill_ours "${p%%:*}" "${p#*:}"
	done
	TCP_PEERS=()
	TCP_CPID=""
	TCP_BEFORE_RESTORE=""
	TCP_WRONG_NS=0
	TCP_IMG=""
	TCP_CLIENT_OPTS=()
	[ "$TCP_NS_MADE" = 1 ] && tcp_ns_down
	return 0
}

# tcp_body TEST: one test, everything it started gone afterwards, pass or fail.
# shellcheck disable=SC2034 # REASON is the runner's
tcp_body() {
	local rc=1
	if tcp_build; then
		case $1 in
		tcp/stream | tcp/ipv6 | tcp/no_flag | tcp/leave_running | tcp/predump | \
			tcp/dump_fails)
			tcp_stream_body "${1#*/}"
			;;
		tcp/unacked) tcp_unacked_body ;;
		tcp/recvq) tcp_recvq_body ;;
		tcp/both_ends) tcp_both_ends_body ;;
		tcp/listen_pending) tcp_listen_pending_body ;;
		udp/echo) tcp_udp_echo_body ;;
		*)
			REASON="no such socket test"
			false
			;;
		esac
		rc=$?
	fi
	[ "$rc" != 0 ] && [ -n "${PID:-}" ] && kill_ours "$PID" "${TCP_PROG[$1]}"
	tcp_cleanup
	return $rc
}
