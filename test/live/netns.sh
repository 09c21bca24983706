# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Network namespace tests, sourced by run.sh (which provides new_test, verdict, untouched, ...).
#
#   netns/veth   a server in a network namespace of its own (unshare -n), joined to a "host"
#                namespace the test makes by a veth pair, with IPv4 and IPv6 addresses, a
#                default route, a changed sysctl and an nftables table, and a second veth
#                pair with both ends inside (one end down).  A client in the host
#                namespace streams to it; crest (run in the host namespace) dumps the server
#                with its namespace and restores it: the namespace must come back the same
#                (MAC, MTU, addresses, routes, sysctl, ruleset, the host end of the veth with
#                its address), the client's stream must go on with no byte lost or reset, and
#                the server must never see a second connection.
#   netns/refused  a device crest does not handle (a bridge) in the namespace: the dump is
#                refused in one line naming it, the server runs on untouched and its client's
#                stream never notices.
#
# Everything happens in namespaces the test makes; the host namespace is deleted at the end,
# which takes the veth and whatever the server's namespace still holds with it.

NETNS_TESTS=(netns/veth netns/refused)
HELPERS+=(netns_echo)

NS_HOST=crest-nsh-$$
NS_HOST_MADE=0
NS_CLIENT=""	 # pid of the client we started
NS_HOST_IF=nvh$$ # the veth's end in the host namespace
NS_IN_IF=nvc	 # and in the server's

netns_cleanup() {
	if [ -n "$NS_CLIENT" ]; then
		kill_ours "$NS_CLIENT" netns_echo
		NS_CLIENT=""
	fi
	if [ "$NS_HOST_MADE" = 1 ]; then
		ip netns del "$NS_HOST" 2>/dev/null
		NS_HOST_MADE=0
	fi
}

# crest in the host namespace: run_crest's rules (time limit, stderr in TAG.err, RC).
ns_crest() {
	local tag=$1
	shift
	timeout -k 5 "$CREST_TIMEOUT" ip netns exec "$NS_HOST" "$CREST" "$@" </dev/null \
		>"$TDIR/$tag.out" 2>"$TDIR/$tag.err"
	RC=$?
}

# What the server's namespace looks like from inside: compared before and after.
ns_state() {
	local pid=$1
	nsenter -t "$pid" -n sh -c "
		for i in $NS_IN_IF inA inB; do
			ip -o link show \$i | sed -n 's/^[0-9]*: \\([^@:]*\\).*<\\([^>]*\\)>.*\\(mtu [0-9]*\\).*\\(link\\/ether [0-9a-f:]*\\).*/\\1 \\2 \\3 \\4/p'
		done
		ip -o addr show | awk '{ print \$2, \$3, \$4 }' | grep -v '^lo inet6 fe80'
		ip route show; ip -6 route show | grep -v '^fe80\\|^multicast\\|^ff00'
		cat /proc/sys/net/ipv4/tcp_keepalive_time /proc/sys/net/core/somaxconn
		nft list ruleset" 2>&1
	ip -n "$NS_HOST" -o addr show dev "$NS_HOST_IF" | awk '$3 == "inet" { print "host", $4 }'
}

# The host namespace and the server in a namespace of its own, linked and configured.
ns_setup() {
	local extra=$1
	netns_cleanup
	if ! ip netns add "$NS_HOST" 2>"$TDIR/netns.err"; then
		REASON="cannot make the host namespace: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
	NS_HOST_MADE=1
	ip -n "$NS_HOST" link set lo up
	mkdir -p "$TDIR/work"
	LOG=$TDIR/test.log
	TL_DIR=$TDIR/work ip netns exec "$NS_HOST" unshare -n "$BIN/netns_echo" \
		>"$LOG" 2>&1 </dev/null &
	PID=$!
	STARTED+=("$PID:netns_echo")
	disown "$PID"
	wait_ready "$PID" || return 1
	if ! {
		ip -n "$NS_HOST" link add "$NS_HOST_IF" type veth peer name "$NS_IN_IF" \
			netns "/proc/$PID/ns/net" &&
			ip -n "$NS_HOST" addr add 10.198.0.1/24 dev "$NS_HOST_IF" &&
			ip -n "$NS_HOST" link set "$NS_HOST_IF" up &&
			nsenter -t "$PID" -n sh -ec "
				ip link set lo up
				ip link set $NS_IN_IF mtu 1400 address 02:00:00:c7:00:02 up
				ip addr add 10.198.0.2/24 dev $NS_IN_IF
				ip addr add fd00:198::2/64 dev $NS_IN_IF nodad
				ip route add default via 10.198.0.1
				ip route add 10.197.0.0/16 via 10.198.0.1 metric 7
				echo 4321 >/proc/sys/net/ipv4/tcp_keepalive_time
				echo 77 >/proc/sys/net/core/somaxconn
				nft add table inet guard
				nft add chain inet guard in '{ type filter hook input priority 0; }'
				nft add rule inet guard in tcp dport 9999 drop
				$extra"
	} >"$TDIR/netns.err" 2>&1; then
		REASON="cannot configure the namespaces: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
}

ns_start_client() {
	local clog=$TDIR/client.log
	ip netns exec "$NS_HOST" "$BIN/netns_echo" client 10.198.0.2 >"$clog" 2>&1 </dev/null &
	NS_CLIENT=$!
	disown "$NS_CLIENT"
	local i
	for i in $(seq 100); do
		grep -q '^ready ' "$clog" && return 0
		alive "$NS_CLIENT" || break
		sleep 0.05
	done
	REASON="the client did not connect: $(grep -m1 FAIL "$clog")"
	return 1
}

# SIGTERM the client and read its verdict (its own log, not the server's).
ns_client_verdict() {
	local clog=$TDIR/client.log v i
	kill -TERM "$NS_CLIENT" 2>/dev/null
	for i in $(seq 100); do
		grep -qE '^(PASS|FAIL)' "$clog" && break
		sleep 0.05
	done
	v=$(grep -m1 -E '^(PASS|FAIL)' "$clog")
	NS_CLIENT=""
	if [ "$v" != PASS ]; then
		REASON="client: ${v:-no verdict}"
		return 1
	fi
	echo "    client: $(grep -m1 maxgap_ms "$clog" | sed 's/^# //') ms longest pause"
}

netns_veth_body() {
	local before after resets0 resets1
	# and a veth pair with both ends inside, one of them down
	ns_setup "ip link add inA type veth peer name inB
		ip addr add 10.196.0.1/24 dev inA
		ip addr add 10.196.0.2/24 dev inB
		ip link set inA up" || return 1
	ns_start_client || return 1
	before=$(ns_state "$PID")
	if ! grep -q "^inB BROADCAST,MULTICAST mtu 1500 link/ether" <<<"$before" ||
		! grep -q "^$NS_IN_IF .*UP.* mtu 1400 link/ether 02:00:00:c7:00:02" <<<"$before" ||
		! grep -q "^host 10.198.0.1/24" <<<"$before"; then
		REASON="the namespace's state cannot be read: $(head -n 3 <<<"$before" | tr '\n' ' ')"
		return 1
	fi
	resets0=$(ip netns exec "$NS_HOST" awk '/^Tcp:/ { n++; if (n == 2) print $9 }' /proc/net/snmp)
	sleep 0.3
	ns_crest dump dump -t "$PID" -D "$TDIR/img" --tcp-established -o dump.log -v4
	if [ "$RC" != 0 ]; then
		REASON="dump failed: $(first_err dump)"
		return 1
	fi
	if [ ! -s "$TDIR/img/netns.img" ]; then
		REASON="no netns.img in the images"
		return 1
	fi
	wait_gone "$PID" || {
		REASON="the server survived its dump"
		return 1
	}
	ns_crest restore restore -D "$TDIR/img" -d -o restore.log -v4
	if [ "$RC" != 0 ]; then
		REASON="restore failed: $(first_err restore)"
		return 1
	fi
	untouched "$PID" || return 1
	after=$(ns_state "$PID")
	if [ "$before" != "$after" ]; then
		REASON="the namespace differs after restore: $(diff <(echo "$before") <(echo "$after") |
			grep '^[<>]' | head -n 2 | tr '\n' ' ')"
		return 1
	fi
	sleep 0.5
	resets1=$(ip netns exec "$NS_HOST" awk '/^Tcp:/ { n++; if (n == 2) print $9 }' /proc/net/snmp)
	if [ "$resets0" != "$resets1" ]; then
		REASON="the host namespace saw a connection reset ($resets0 -> $resets1)"
		return 1
	fi
	ns_client_verdict || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

netns_refused_body() {
	ns_setup "ip link add crestbr0 type bridge" || return 1
	ns_start_client || return 1
	sleep 0.2
	ns_crest dump dump -t "$PID" -D "$TDIR/img" --tcp-established -o dump.log -v4
	refused dump "dump of a namespace with a bridge" crestbr0 || return 1
	untouched "$PID" || return 1
	sleep 0.3
	ns_client_verdict || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

netns_body() {
	local rc
	"netns_${1//\//_}_body"
	rc=$?
	netns_cleanup
	return $rc
}
