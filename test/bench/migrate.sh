#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Live migration benchmark (part of make bench): the workload of predump.sh (1 GiB of private
# anonymous memory rewritten at 50 MB/s, build/bench/dirty-workload) is moved between two
# emulated hosts on this kernel, BENCH_MIG_ITER times (default 3), two ways in the same run:
#
#   live migration   crest migrate in the source host to a crest page-server --migrate agent
#                    in the destination host; downtime and total time are read from
#                    migrate's summary line ("migrated in T ms: ... downtime D ms ...")
#   stop-and-copy    crest dump in the source host into a directory, that directory copied
#                    over the same link (rsync to an rsync daemon in the destination host),
#                    crest restore -d there; the workload is stopped from the dump's start to
#                    the restore's end, so its downtime is the total
#
#   live migration --lazy   the same, the destination restoring with lazy pages (post-copy
#                    from the images already there): the downtime no longer includes filling
#                    the memory
#
# The hosts are those of test/live/migrate.sh: each a network namespace with a PID, mount and
# UTS namespace of its own (PID 1: test/live/bin/hostinit), joined by a veth pair.  Medians
# are printed with the ratios.  Target (issue 8): downtime under 100 ms (checked on --lazy).  Exits
# non-zero when a migration, dump, copy or restore fails; with BENCH_STRICT=1 also when the
# target is missed.  BENCH_DIR picks the directory for images (default /tmp).

set -u
cd "$(dirname "$0")/../.." || exit 1

CREST=${CREST:-criu/crest}
WORKLOAD=build/bench/dirty-workload
HOSTINIT=test/live/bin/hostinit
ITER=${BENCH_MIG_ITER:-3}
RATE_MBS=50
TARGET_MS=100
SRC_ADDR=10.201.0.1
DST_ADDR=10.201.0.2
PORT=7000
RSYNC_PORT=7010
NS=crest-bmig-$$
SRC_IF=bms$$
DST_IF=bmd$$
FIRST_PID=5000
# migrate's last line, e.g. "migrated in 252 ms: 2 pre-copy rounds, 142.3 MiB of pages sent,
# downtime 91 ms (final dump 91 ms frozen, 486 pages; file pass 0 ms; restore 74 ms)"
SUMMARY_RE='^migrated in ([0-9]+) ms: ([0-9]+) pre-copy rounds?, ([0-9.]+) MiB .*downtime ([0-9]+) ms \(final dump ([0-9]+) ms frozen, ([0-9]+) pages.* restore ([0-9]+) ms'

for bin in "$CREST" "$WORKLOAD"; do
	if [ ! -x "$bin" ]; then
		echo "bench: $bin is missing; run 'make bench'" >&2
		exit 1
	fi
done
if ! make -s --no-print-directory "$HOSTINIT" >/dev/null; then
	echo "bench: cannot build $HOSTINIT" >&2
	exit 1
fi
for tool in rsync nsenter unshare ip; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench: $tool is missing" >&2
		exit 1
	fi
done

work=$(mktemp -d "${BENCH_DIR:-/tmp}/crest-bench-mig.XXXXXX") || exit 1
CREST=$(realpath "$CREST")
WORKLOAD=$(realpath "$WORKLOAD")
HOSTINIT=$(realpath "$HOSTINIT")
# a copy: a rebuild of crest while we run must not pull the binary from under us
cp "$CREST" "$work/crest" && CREST=$work/crest
declare -A HI=() # host -> pid of its hostinit, as we see it
NSES=()

# hostinit_ours PID HOST: is pid the hostinit of that host of ours (PID 1 of a namespace other
# than ours, in the host's network namespace)?
hostinit_ours() {
	local arg0=""
	[ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
	IFS= read -r -d '' arg0 <"/proc/$1/cmdline" 2>/dev/null
	[ "$arg0" = "$HOSTINIT" ] &&
		[ "$(awk '/^NSpid:/ { print $NF }' "/proc/$1/status" 2>/dev/null)" = 1 ] &&
		[ "$(readlink "/proc/$1/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] &&
		[ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = \
			"$(stat -L -c %i "/run/netns/$NS-$2" 2>/dev/null)" ]
}

# Killing a host's PID 1 ends everything in it: workloads, agents, rsync daemons.
cleanup() {
	local h ns i
	for h in "${!HI[@]}"; do
		if hostinit_ours "${HI[$h]}" "$h"; then
			kill -KILL "${HI[$h]}" 2>/dev/null
			for ((i = 0; i < 100; i++)); do
				[ -e "/proc/${HI[$h]}" ] || break
				sleep 0.02
			done
		fi
	done
	for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	local f
	echo "bench: $*" >&2
	for f in "$work"/*.log "$work"/*.err; do
		if [ -s "$f" ]; then
			echo "--- last lines of ${f##*/}:" >&2
			tail -n 8 "$f" >&2
		fi
	done
	exit 1
}

in_host() {
	local hi=${HI[$1]}
	shift
	nsenter -t "$hi" -p -m -n -u "$@"
}

host_up() {
	local ns=$NS-$1 u c="" i
	ip netns add "$ns" || die "cannot make network namespace $ns"
	NSES+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" unshare -pfmu --mount-proc "$HOSTINIT" </dev/null >/dev/null 2>&1 &
	u=$!
	disown "$u"
	for ((i = 0; i < 250; i++)); do
		c=$(cat "/proc/$u/task/$u/children" 2>/dev/null)
		c=${c%% *}
		[ -n "$c" ] && [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$HOSTINIT" ] && break
		c=""
		sleep 0.02
	done
	hostinit_ours "$c" "$1" || die "host $1 did not start"
	HI[$1]=$c
	in_host "$1" hostname "crest-$1"
}

# Our pid of the process with PID lpid in a host.
outer_pid() {
	local want f p
	want=$(readlink "/proc/${HI[$1]}/ns/pid") || return 1
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

host_alive() {
	local st
	st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/${HI[$1]}/root/proc/$2/status" \
		2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# The workload in the source host, PIDs from FIRST_PID on; sets LPID (its pid there).
start_workload() {
	local out=$work/workload.out i
	in_host src sh -c "echo $FIRST_PID >/proc/sys/kernel/ns_last_pid" ||
		die "cannot set the source host's PID counter"
	: >"$out"
	nsenter -t "${HI[src]}" -p -m -n -u "$WORKLOAD" "$RATE_MBS" </dev/null >"$out" 2>&1 &
	disown $!
	for ((i = 0; i < 600; i++)); do
		LPID=$(awk '$2 == "ready" { print $1 }' "$out")
		[ -n "$LPID" ] && return 0
		sleep 0.05
	done
	die "the workload did not get ready in 30 s: $(cat "$out")"
}

# The workload must run in the destination host now (and not in the source); then end it.
moved_and_stopped() {
	local p i
	host_alive dst "$LPID" || die "$1: the workload does not run in the destination host"
	host_alive src "$LPID" && die "$1: the workload still runs in the source host"
	p=$(outer_pid dst "$LPID") || die "$1: cannot find the workload"
	# its exe, not its cmdline: that is read from its memory, which --lazy may not have
	# filled yet (a remote read of a missing page does not wait for the lazy server)
	[[ $(readlink "/proc/$p/exe") == */dirty-workload ]] || die "$1: pid $LPID is not the workload"
	kill -KILL "$p"
	for ((i = 0; i < 250; i++)); do
		[ -e "/proc/${HI[dst]}/root/proc/$LPID" ] || return 0
		sleep 0.02
	done
	die "$1: the workload did not end"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'
}

ms_since() {
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }'
}

host_up src
host_up dst
if ! { ip link add "$SRC_IF" netns "$NS-src" type veth peer name "$DST_IF" netns "$NS-dst" &&
	ip -n "$NS-src" addr add "$SRC_ADDR/24" dev "$SRC_IF" &&
	ip -n "$NS-dst" addr add "$DST_ADDR/24" dev "$DST_IF" &&
	ip -n "$NS-src" link set "$SRC_IF" up && ip -n "$NS-dst" link set "$DST_IF" up; }; then
	die "cannot link the hosts"
fi

# The destination's rsync daemon for stop-and-copy, serving $work/sc-dst.
mkdir -p "$work/sc-dst"
printf 'use chroot = no\nuid = 0\ngid = 0\n[img]\n  path = %s\n  read only = false\n' \
	"$work/sc-dst" >"$work/rsyncd.conf"
nsenter -t "${HI[dst]}" -p -m -n -u rsync --daemon --no-detach --port="$RSYNC_PORT" \
	--address="$DST_ADDR" --config="$work/rsyncd.conf" </dev/null >"$work/rsyncd.log" 2>&1 &
disown $!

echo "live migration benchmark: 1 GiB rewritten at $RATE_MBS MB/s moved between two emulated" \
	"hosts (veth), $ITER runs, images in $work"

# One live migration (extra migrate options in "$@", e.g. --lazy): sets mt md rounds mib
# final_pages mrestore from its summary.
live_migration() {
	rm -rf "$work/mig-src" "$work/mig-dst"
	start_workload
	sleep 1
	rm -f "$work/agent.pid"
	in_host dst "$CREST" page-server -D "$work/mig-dst" --address "$DST_ADDR" --port "$PORT" \
		--migrate -d --pidfile "$work/agent.pid" -o "$work/agent.log" -v2 </dev/null \
		>/dev/null 2>"$work/agent.err" || die "run $i: the agent did not start"
	in_host src "$CREST" migrate -t "$LPID" -D "$work/mig-src" --to "$DST_ADDR:$PORT" "$@" \
		-o "$work/migrate.log" -v3 </dev/null >"$work/progress.log" 2>"$work/migrate.err" ||
		die "run $i: migrate $* failed: $(head -n 1 "$work/migrate.err")"
	sum=$(grep -m1 '^migrated in ' "$work/progress.log")
	[[ $sum =~ $SUMMARY_RE ]] || die "run $i: no summary line in migrate's output"
	mt=${BASH_REMATCH[1]} rounds=${BASH_REMATCH[2]} mib=${BASH_REMATCH[3]}
	md=${BASH_REMATCH[4]} final_pages=${BASH_REMATCH[6]} mrestore=${BASH_REMATCH[7]}
	moved_and_stopped "run $i (migration $*)"
}

m_total=() m_down=() l_total=() l_down=() s_total=() s_down=()
for i in $(seq "$ITER"); do
	# live migration, then with --lazy (post-copy on the destination)
	live_migration
	m_total+=("$mt")
	m_down+=("$md")
	printf 'run %d: migration %6d ms, downtime %5d ms (%d rounds, %s MiB sent, final dump %d pages, restore %d ms)\n' \
		"$i" "$mt" "$md" "$rounds" "$mib" "$final_pages" "$mrestore"
	live_migration --lazy
	l_total+=("$mt")
	l_down+=("$md")
	printf '       migration --lazy %6d ms, downtime %5d ms (%d rounds, %s MiB sent, final dump %d pages, restore %d ms)\n' \
		"$mt" "$md" "$rounds" "$mib" "$final_pages" "$mrestore"

	# stop-and-copy
	rm -rf "$work/sc-src" "$work/sc-dst"/* "$work/sc-dst"/.[!.]*
	start_workload
	sleep 1
	t0=$EPOCHREALTIME
	in_host src "$CREST" dump -t "$LPID" -D "$work/sc-src" -o "$work/dump.log" -v2 \
		</dev/null >/dev/null 2>"$work/dump.err" || die "run $i: dump failed: $(head -n 1 "$work/dump.err")"
	dump_ms=$(ms_since "$t0")
	t1=$EPOCHREALTIME
	in_host src rsync -a --whole-file "$work/sc-src/" "rsync://$DST_ADDR:$RSYNC_PORT/img/" \
		</dev/null >"$work/copy.err" 2>&1 || die "run $i: the copy failed: $(head -n 1 "$work/copy.err")"
	copy_ms=$(ms_since "$t1")
	t2=$EPOCHREALTIME
	in_host dst "$CREST" restore -D "$work/sc-dst" -d -o "$work/restore.log" -v2 </dev/null \
		>/dev/null 2>"$work/restore.err" || die "run $i: restore failed: $(head -n 1 "$work/restore.err")"
	restore_ms=$(ms_since "$t2")
	st=$(ms_since "$t0")
	moved_and_stopped "run $i (stop-and-copy)"
	s_total+=("$st")
	s_down+=("$st")
	size=$(du -sm --exclude='*.log' "$work/sc-dst" | awk '{ print $1 }')

	printf '       stop-and-copy %6d ms = downtime (dump %d ms, copy of %d MiB %d ms, restore %d ms)\n' \
		"$st" "$dump_ms" "$size" "$copy_ms" "$restore_ms"
	rm -rf "$work/mig-src" "$work/mig-dst" "$work/sc-src"
done

mt=$(median "${m_total[@]}")
md=$(median "${m_down[@]}")
lt=$(median "${l_total[@]}")
ld=$(median "${l_down[@]}")
st=$(median "${s_total[@]}")
met=$(awk -v d="$ld" -v t=$TARGET_MS 'BEGIN { print (d < t) ? "met" : "NOT met" }')
echo
echo "results (median of $ITER runs)"
printf 'live migration:        total %6d ms, downtime %5d ms\n' "$mt" "$md"
printf 'live migration --lazy: total %6d ms, downtime %5d ms   target downtime < %d ms: %s\n' \
	"$lt" "$ld" "$TARGET_MS" "$met"
printf 'stop-and-copy:  total %6d ms, downtime %5d ms\n' "$st" "$st"
printf 'ratios: migration downtime / stop-and-copy downtime = %s (--lazy: %s); migration total / stop-and-copy total = %s\n' \
	"$(ratio "$md" "$st")" "$(ratio "$ld" "$st")" "$(ratio "$mt" "$st")"

if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$met" != met ]; then
	exit 1
fi
exit 0
