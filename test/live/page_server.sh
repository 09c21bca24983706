# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Page server tests, sourced by run.sh (which provides start_prog, verdict, untouched, ...).
# Each test makes two network namespaces joined by a veth pair: the page server runs in one,
# the dumping crest in the other, so the images cross a real link; nothing but those two
# namespaces is ever addressed.  The restore runs in the runner's own namespace from the
# directory the page server wrote: the restored program never depended on either.
#
#   page_server/chain_tls_lz4   3 pre-dump rounds and the final dump, TLS with client
#                               certificates and --compress, while the program rewrites pages;
#                               the chain must be complete on the destination (parent links,
#                               lz4 blocks that decompress), no page data on the source, the
#                               server gone after the final dump, and the restore exact
#   page_server/bad_cert        clients without a certificate, with one of another CA, and
#                               one that cannot trust the server are refused in one line, the
#                               program untouched, nothing stored; then a good one gets in
#   page_server/killed          the page server SIGKILLed mid-stream (the link is slowed to
#                               make that stream last): the dump fails in one line naming the
#                               page server, the program runs on untouched; a new server
#                               clears the half round and the dump then goes through
#   page_server/dest_full       the destination's filesystem fills up mid-round: the server
#                               refuses the round, the dump reports the server's reason in one
#                               line, the program runs on untouched, nothing is left stored
#   compress/<prog>             a local dump with --compress, restored (run.sh's restore test
#                               with the option added); its pagemaps must hold lz4 blocks, all
#                               of which decompress
#
# Certificates are made with openssl into the run directory, once per run.

HELPERS+=(migrate)
PAGE_SERVER_TESTS=(page_server/chain_tls_lz4 page_server/bad_cert page_server/killed
	page_server/dest_full)
for p in memory shared_anon memfd prefork migrate; do PAGE_SERVER_TESTS+=("compress/$p"); done

PS_NS_SRC=crest-ps-src-$$
PS_NS_DST=crest-ps-dst-$$
PS_SRC_ADDR=10.199.0.1
PS_DST_ADDR=10.199.0.2
PS_PORT=7000
PS_SERVER=""   # pid of the page server daemon the current test started
PS_CERTS=""    # directory of the certificates, once made
PS_NS_MADE=0

# Is pid still the page server we started (a daemon of our crest copy, on this test's dir)?
ps_server_ours() {
	local pid=$1 cmd
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
	[[ $cmd == "$CREST page-server "* ]] && [[ $cmd == *" $TDIR/dst "* ]]
}

ps_server_kill() {
	local sig=${1:-KILL}
	if ps_server_ours "$PS_SERVER"; then
		kill -"$sig" "$PS_SERVER" 2>/dev/null
		wait_gone "$PS_SERVER" 3000
	fi
	PS_SERVER=""
}

ps_ns_down() {
	ip netns del "$PS_NS_SRC" 2>/dev/null
	ip netns del "$PS_NS_DST" 2>/dev/null
	PS_NS_MADE=0
}

# The two namespaces and the veth pair between them; lo up in both.
ps_ns_up() {
	ps_ns_down
	PS_NS_MADE=1
	if ! { ip netns add "$PS_NS_SRC" && ip netns add "$PS_NS_DST" &&
		ip link add cps$$ netns "$PS_NS_SRC" type veth peer name cpd$$ netns "$PS_NS_DST" &&
		ip -n "$PS_NS_SRC" addr add "$PS_SRC_ADDR/24" dev cps$$ &&
		ip -n "$PS_NS_DST" addr add "$PS_DST_ADDR/24" dev cpd$$ &&
		ip -n "$PS_NS_SRC" link set cps$$ up && ip -n "$PS_NS_DST" link set cpd$$ up &&
		ip -n "$PS_NS_SRC" link set lo up && ip -n "$PS_NS_DST" link set lo up; } \
		>"$TDIR/netns.err" 2>&1; then
		REASON="cannot set up the test namespaces: $(head -n 1 "$TDIR/netns.err")"
		return 1
	fi
}

# Whatever a test leaves: its server, its namespaces.  Also run at the runner's exit.
page_server_cleanup() {
	ps_server_kill KILL
	[ "$PS_NS_MADE" = 1 ] && ps_ns_down
	return 0
}

# A CA, the server's certificate (for its address), a client's, and a client's from another CA.
ps_certs() {
	local d=$RUN/certs
	[ -n "$PS_CERTS" ] && return 0
	mkdir -p "$d"
	if ! (
		set -e
		cd "$d"
		ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
		# shellcheck disable=SC2086
		openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=crest test CA"
		# shellcheck disable=SC2086
		openssl req $ec -keyout server.key -out server.csr -subj "/CN=crest page server"
		printf 'subjectAltName=IP:%s\n' "$PS_DST_ADDR" >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server.pem -days 2 -extfile server.ext
		# shellcheck disable=SC2086
		openssl req $ec -keyout client.key -out client.csr -subj "/CN=crest client"
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out client.pem -days 2
		# shellcheck disable=SC2086
		openssl req -x509 $ec -keyout rogue.key -out rogue.pem -days 2 -subj "/CN=rogue"
	) >"$TDIR/openssl.err" 2>&1; then
		REASON="cannot make test certificates: $(tail -n 1 "$TDIR/openssl.err")"
		return 1
	fi
	PS_CERTS=$d
}

ps_tls_server() {
	echo "--tls --tls-cacert $PS_CERTS/ca.pem --tls-cert $PS_CERTS/server.pem" \
		"--tls-key $PS_CERTS/server.key"
}

ps_tls_client() {
	echo "--tls --tls-cacert $PS_CERTS/ca.pem --tls-cert $PS_CERTS/client.pem" \
		"--tls-key $PS_CERTS/client.key"
}

# ps_crest NS TAG ARGS...: crest inside a namespace, like run_crest.  Sets RC.
ps_crest() {
	local ns=$1 tag=$2
	shift 2
	timeout -k 5 "$CREST_TIMEOUT" ip netns exec "$ns" "$CREST" "$@" </dev/null \
		>"$TDIR/$tag.out" 2>"$TDIR/$tag.err"
	RC=$?
	[ "$RC" = 124 ] && echo "(killed after ${CREST_TIMEOUT} s)" >>"$TDIR/$tag.err"
	return "$RC"
}

# ps_server_start [OPTIONS...]: a page server daemon in the destination namespace.
ps_server_start() {
	rm -f "$TDIR/ps.pid"
	# shellcheck disable=SC2068
	ps_crest "$PS_NS_DST" server page-server -D "$TDIR/dst" --address "$PS_DST_ADDR" \
		--port "$PS_PORT" --daemon --pidfile "$TDIR/ps.pid" -o "$TDIR/ps.log" -v4 "$@"
	if [ "$RC" != 0 ]; then
		REASON="page server exited $RC: $(first_err server)"
		return 1
	fi
	PS_SERVER=$(cat "$TDIR/ps.pid" 2>/dev/null)
	if ! ps_server_ours "$PS_SERVER"; then
		REASON="no page server running (pidfile: '${PS_SERVER}')"
		PS_SERVER=""
		return 1
	fi
}

# Round directories the server stored (hidden partial ones excluded).
ps_rounds() {
	find "$TDIR/dst" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' 2>/dev/null |
		sort | tr '\n' ' '
}

# A failed crest command on the source: one line on stderr, matching a regex.
ps_refused() {
	local tag=$1 re=$2 what=$3
	if [ "$RC" = 0 ]; then
		REASON="$what: the command succeeded"
		return 1
	fi
	one_line_err "$tag" || return 1
	if ! grep -qE "$re" "$TDIR/$tag.err"; then
		REASON="$what: the error does not say '$re': $(first_err "$tag")"
		return 1
	fi
}

ps_chain_body() {
	local src=$TDIR/src prev="" r h n lz4 round
	ps_certs && ps_ns_up || return 1
	# shellcheck disable=SC2046
	ps_server_start $(ps_tls_server) || return 1
	MIGRATE_MB=16 start_prog migrate
	wait_ready "$PID" || return 1
	mkdir -p "$src"
	for r in 1 2 3; do
		sleep "$RUN_BEFORE"
		# shellcheck disable=SC2046
		ps_crest "$PS_NS_SRC" "pd$r" pre-dump -t "$PID" -D "$src/$r" \
			${prev:+--prev-images-dir "../$prev"} --page-server --address "$PS_DST_ADDR" \
			--port "$PS_PORT" $(ps_tls_client) --compress -o pd.log -v4
		if [ "$RC" != 0 ]; then
			cp "$src/$r/pd.log" "$TDIR/pd$r.log" 2>/dev/null
			REASON="pre-dump round $r exited $RC: $(first_err "pd$r")"
			return 1
		fi
		if declare -F holder_of >/dev/null && h=$(holder_of "$src/$r"); then
			HOLDERS+=("$h")
		fi
		untouched "$PID" || return 1
		prev=$r
	done
	sleep "$RUN_BEFORE"
	# shellcheck disable=SC2046
	ps_crest "$PS_NS_SRC" dump dump -t "$PID" -D "$src/4" --prev-images-dir ../3 \
		--page-server --address "$PS_DST_ADDR" --port "$PS_PORT" $(ps_tls_client) \
		--compress -o dump.log -v4
	if [ "$RC" != 0 ]; then
		cp "$src/4/dump.log" "$TDIR/dump.log" 2>/dev/null
		REASON="final dump exited $RC: $(first_err dump)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists after the final dump"
		return 1
	fi
	if ! wait_gone "$PS_SERVER" 3000; then
		REASON="the page server still runs after the final dump was stored"
		return 1
	fi
	PS_SERVER=""
	# never written on the source; all of it on the destination, chained
	n=$(find "$src" -name 'pages-*.img' -o -name 'shmpages-*.img' | wc -l)
	if [ "$n" != 0 ]; then
		REASON="$n pages images written on the source"
		return 1
	fi
	if [ "$(ps_rounds)" != "1 2 3 4 " ]; then
		REASON="the page server stored rounds '$(ps_rounds)', not '1 2 3 4'"
		return 1
	fi
	for r in 2 3 4; do
		if [ "$(readlink "$TDIR/dst/$r/parent")" != "../$((r - 1))" ]; then
			REASON="dst/$r/parent is '$(readlink "$TDIR/dst/$r/parent")', not ../$((r - 1))"
			return 1
		fi
	done
	for r in 1 2 3 4; do
		round=$TDIR/dst/$r
		if [ ! -s "$round/pages-$PID.img" ] || [ ! -s "$round/inventory.img" ]; then
			REASON="dst/$r lacks its pages or inventory image"
			return 1
		fi
	done
	# round 1 holds everything: text in lz4 blocks that all decompress, random pages raw
	"$CREST" show "$TDIR/dst/1/pagemap-$PID.img" >"$TDIR/show.json" 2>"$TDIR/show.err"
	lz4=$(grep -oE '"lz4": \{"blocks": [0-9]+, "pages": [0-9]+, [^}]*\}' "$TDIR/show.json")
	if ! [[ $lz4 =~ \"blocks\":\ [1-9] ]] || [[ $lz4 != *'"checked": true, "corrupt": 0'* ]]; then
		REASON="dst/1's pagemap does not hold sound lz4 blocks: ${lz4:-none}"
		return 1
	fi
	if ! "$CREST" show "$TDIR/dst/4/pagemap-$PID.img" 2>/dev/null | grep -q '"PARENT"'; then
		REASON="the final round refers nothing to its parent"
		return 1
	fi
	run_crest restore restore -D "$TDIR/dst/4" -d -o "$TDIR/restore.log" -v4 \
		--pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		REASON="restore from the page server's images exited $RC: $(first_err restore)"
		return 1
	fi
	if [ "$(cat "$TDIR/pidfile" 2>/dev/null)" != "$PID" ] || ! alive "$PID"; then
		REASON="no process $PID after the restore"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

ps_bad_cert_body() {
	local src=$TDIR/src c
	ps_certs && ps_ns_up || return 1
	c=$PS_CERTS
	# shellcheck disable=SC2046
	ps_server_start $(ps_tls_server) || return 1
	MIGRATE_MB=4 start_prog migrate
	wait_ready "$PID" || return 1
	mkdir -p "$src"
	ps_crest "$PS_NS_SRC" nocert dump -t "$PID" -D "$src/a" --leave-running --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" --tls --tls-cacert "$c/ca.pem" -o d.log
	ps_refused nocert 'certificate required' "a client without a certificate" || return 1
	ps_crest "$PS_NS_SRC" rogue dump -t "$PID" -D "$src/b" --leave-running --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" --tls --tls-cacert "$c/ca.pem" \
		--tls-cert "$c/rogue.pem" --tls-key "$c/rogue.key" -o d.log
	ps_refused rogue 'unknown ca' "a client with another CA's certificate" || return 1
	ps_crest "$PS_NS_SRC" untrusted dump -t "$PID" -D "$src/c" --leave-running --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" --tls --tls-cacert "$c/rogue.pem" \
		--tls-cert "$c/client.pem" --tls-key "$c/client.key" -o d.log
	ps_refused untrusted 'certificate verify failed' "a client that cannot trust the server" ||
		return 1
	ps_crest "$PS_NS_SRC" plain dump -t "$PID" -D "$src/d" --leave-running --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" -o d.log
	ps_refused plain 'page server' "a client without TLS" || return 1
	untouched "$PID" || return 1
	if [ -n "$(ps_rounds)" ]; then
		REASON="refused clients left rounds on the server: $(ps_rounds)"
		return 1
	fi
	if ! ps_server_ours "$PS_SERVER"; then
		REASON="the page server did not survive the refused clients"
		return 1
	fi
	# shellcheck disable=SC2046
	ps_crest "$PS_NS_SRC" good dump -t "$PID" -D "$src/good" --leave-running --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" $(ps_tls_client) -o d.log -v4
	if [ "$RC" != 0 ]; then
		REASON="the client with a good certificate was refused: $(first_err good)"
		return 1
	fi
	if [ "$(ps_rounds)" != "good " ] || [ ! -s "$TDIR/dst/good/pages-$PID.img" ]; then
		REASON="the good client's dump is not stored: rounds '$(ps_rounds)'"
		return 1
	fi
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	verdict "$PID" || return 1
	exited "$PID"
}

ps_killed_body() {
	local src=$TDIR/src dpid size=0 i partial
	ps_ns_up || return 1
	# 40 Mbit/s out of the source: 24 MiB take some 5 s, time enough to kill the server
	if ! ip netns exec "$PS_NS_SRC" tc qdisc add dev cps$$ root tbf rate 40mbit burst 32kb \
		latency 500ms 2>"$TDIR/tc.err"; then
		REASON="cannot slow the test link down: $(head -n 1 "$TDIR/tc.err")"
		return 1
	fi
	ps_server_start || return 1
	MIGRATE_MB=24 start_prog migrate
	wait_ready "$PID" || return 1
	mkdir -p "$src"
	ps_crest "$PS_NS_SRC" dump dump -t "$PID" -D "$src/1" --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" -o dump.log -v4 &
	dpid=$!
	partial=$TDIR/dst/.1.partial/pages-$PID.img
	for ((i = 0; i < 1000; i++)); do
		size=$(stat -c %s "$partial" 2>/dev/null || echo 0)
		[ "$size" -ge $((2 << 20)) ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.01
	done
	if [ "$size" -lt $((2 << 20)) ]; then
		wait "$dpid"
		REASON="the page server never had 2 MiB of pages to be killed in (dump: $(first_err dump))"
		return 1
	fi
	ps_server_kill KILL
	wait "$dpid"
	RC=$?
	ps_refused dump 'page server .*(connection|refused|closed|reset)' \
		"a dump whose page server was killed" || return 1
	cp "$src/1/dump.log" "$TDIR/dump.log" 2>/dev/null
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	if [ -n "$(find "$src" -name 'pages-*.img')" ]; then
		REASON="the failed dump left pages images on the source"
		return 1
	fi
	# a new server clears the half round; the same dump then goes through
	ip netns exec "$PS_NS_SRC" tc qdisc del dev cps$$ root 2>/dev/null
	ps_server_start || return 1
	if [ -e "$TDIR/dst/.1.partial" ]; then
		REASON="a new page server left the killed one's half round in place"
		return 1
	fi
	ps_crest "$PS_NS_SRC" dump2 dump -t "$PID" -D "$src/1" --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" -o dump2.log -v4
	if [ "$RC" != 0 ]; then
		REASON="the dump to a new page server exited $RC: $(first_err dump2)"
		return 1
	fi
	if ! wait_gone "$PID"; then
		REASON="process $PID still exists after the dump"
		return 1
	fi
	run_crest restore restore -D "$TDIR/dst/1" -d -o "$TDIR/restore.log" -v4 \
		--pidfile "$TDIR/pidfile"
	if [ "$RC" != 0 ]; then
		REASON="restore exited $RC: $(first_err restore)"
		return 1
	fi
	sleep "$RUN_AFTER"
	verdict "$PID" || return 1
	exited "$PID"
}

ps_dest_full_body() {
	local left
	ps_ns_up || return 1
	mkdir -p "$TDIR/dst"
	if ! mount -t tmpfs -o size=2m crest-live "$TDIR/dst" 2>"$TDIR/mount.err"; then
		REASON="cannot mount a small tmpfs: $(head -n 1 "$TDIR/mount.err")"
		return 1
	fi
	MOUNTS+=("$TDIR/dst")
	ps_server_start || return 1
	MIGRATE_MB=16 start_prog migrate
	wait_ready "$PID" || return 1
	ps_crest "$PS_NS_SRC" dump dump -t "$PID" -D "$TDIR/src" --page-server \
		--address "$PS_DST_ADDR" --port "$PS_PORT" -o "$TDIR/dump.log" -v4
	ps_refused dump 'page server .*refused .*No space left on device' \
		"a dump to a full destination" || return 1
	sleep "$RUN_AFTER"
	untouched "$PID" || return 1
	left=$(find "$TDIR/dst" -mindepth 1 -maxdepth 1 -printf '%f ')
	if [ -n "$left" ]; then
		REASON="the refused round left ${left}on the destination"
		return 1
	fi
	if ! ps_server_ours "$PS_SERVER"; then
		REASON="the page server did not survive the refused round"
		return 1
	fi
	verdict "$PID" || return 1
	exited "$PID"
}

# compress_body PROG: the restore test of PROG, dumped with --compress.
# shellcheck disable=SC2004 # DUMP_ARGS is run.sh's associative array
compress_body() {
	local prog=$1 saved=${DUMP_ARGS[$1]:-} rc
	DUMP_ARGS[$prog]="$saved --compress"
	restore_body "$prog"
	rc=$?
	DUMP_ARGS[$prog]=$saved
	[ "$rc" = 0 ] || return 1
	"$CREST" show "$TDIR/img" >"$TDIR/show.json" 2>"$TDIR/show.err"
	if ! grep -q '"LZ4"' "$TDIR/show.json"; then
		REASON="the --compress dump holds no lz4 block"
		return 1
	fi
	if grep -qE '"checked": false|"corrupt": [1-9]' "$TDIR/show.json"; then
		REASON="lz4 blocks unchecked or corrupt: $(grep -m1 -oE '"lz4": \{[^}]*\}' "$TDIR/show.json")"
		return 1
	fi
}

# page_server_body VARIANT: one test, its namespaces and server gone afterwards, pass or fail.
# shellcheck disable=SC2034 # REASON is the runner's
page_server_body() {
	local rc
	case $1 in
	chain_tls_lz4) ps_chain_body ;;
	bad_cert) ps_bad_cert_body ;;
	killed) ps_killed_body ;;
	dest_full) ps_dest_full_body ;;
	*)
		REASON="no such page server test"
		false
		;;
	esac
	rc=$?
	page_server_cleanup
	return $rc
}
