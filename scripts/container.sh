#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The sample container: a busybox rootfs running scripts/ctr-service.c, for crest's container
# tests (test/live/container.sh) and for trying crest on a container by hand.  As root.
#
#   container.sh start --dir DIR [--overlay] [--stack] [--veth NAME] [--ip-prefix A.B.C]
#                      [--netns NETNS] [--cgroup CGDIR]... [--service PATH]
#       Builds DIR/rootfs (Debian's static /bin/busybox with its applets, the static service
#       build/ctr-service, /etc/hostname, /etc/passwd, /init) and starts the container in new
#       pid, mount, uts, ipc and network namespaces: util-linux "unshare --pid --fork" forks
#       its init, PID 1 inside (a session leader), which makes the others itself (unshare
#       again, without --fork): unshare, its parent, stays in the caller's.  Before the
#       service starts the container gets:
#         /          a bind mount of DIR/rootfs; with --overlay an overlayfs with
#                    lowerdir=DIR/rootfs, upperdir and workdir in DIR/ovl
#         /proc      proc (of the container's pid namespace)     /sys  sysfs, read-only
#         /dev       tmpfs (mode=755): null zero random urandom tty (mknod), ptmx -> pts/ptmx,
#                    fd -> /proc/self/fd, stdin/stdout/stderr -> /proc/self/fd/0..2
#         /dev/pts   devpts newinstance,ptmxmode=0666   /dev/mqueue  mqueue
#         /dev/shm   tmpfs    /tmp  tmpfs size=16m    /run  tmpfs
#         /data      a bind mount of DIR/rootfs/srv/data (the container's volume)
#         /etc/ro    a read-only bind mount of DIR/rootfs/srv/ro, unbindable
#         /mnt/slave a bind mount of /data, which is shared, made its slave
#         /mnt/stack (--stack) a tmpfs holding "lower" with a second tmpfs holding "upper"
#                    mounted over it
#       then pivot_root into its root, the old root unmounted: it sees only its own tree.
#       Hostname crest-ctr, domainname crest.test; its ipc namespace's fs.mqueue.msg_max is
#       16 (the service's queue holds 16 messages; the default limit is 10).  A veth pair
#       joins it to the network namespace start runs in, or to the named one (ip netns) NETNS:
#       NAME (default ctrh0) with A.B.C.1/24 outside, eth0 with A.B.C.2/24 inside (default
#       A.B.C: 10.88.0), lo up, a default route via A.B.C.1.
#       The init (/init, a busybox sh script) starts /bin/ctr-service and waits for it; the
#       tree is init (PID 1) and the service (PID 2).  Each --cgroup CGDIR (a cgroup
#       directory, v1 or v2, visible where start runs) gets the init before anything else
#       (unshare stays out).  Prints the init's PID (in the caller's pid namespace) once the
#       service answers, within a second or so; writes DIR/ctr.state (below).  Fails, leaving
#       nothing behind, when any step fails (CTR_KEEP_FAILED=1: DIR is kept to look at).
#   container.sh query DIR|IP [get|peek]
#       Sends one command (default peek) to the service on port 7000 and prints its answer,
#       from the network namespace of the veth's outside end (NETNS; given an IP: from the
#       caller's, and only when a veth leads there).
#   container.sh exec PID|DIR CMD [ARG...]
#       Runs CMD inside all the container's namespaces, in its root and working directory
#       (nsenter -a -r -w), with PATH=/bin.  PID is the init's.
#   container.sh info DIR
#       Prints DIR/ctr.state.
#   container.sh stop DIR
#       Kills the init it recorded (only when it is still that container's init: PID 1 of a
#       pid namespace whose root holds the container's token; never by name), which ends the
#       whole container, waits for it, removes the veth (when run in the network namespace
#       start ran in, or in NETNS) and DIR.  Nothing to do is fine: stop is idempotent.
#
# DIR/ctr.state holds KEY=VALUE lines: dir, rootfs (DIR/rootfs), root (the host path mounted
# as the container's /: rootfs, or DIR/ovl/merged with --overlay, a mount point that exists
# only inside the container), overlay, stack (0 or 1), veth, host_ip, ip, netns_name (NETNS or
# empty), netns (inode of the veth's outside end's network namespace), token (also in the
# rootfs's /.crest-ctr-id), cgroups, unshare_pid, init_pid, service_pid (PIDs in the caller's
# pid namespace; after a restore the service's may differ: it is the init's child).
#
# The init's and the service's stdio are the container's /dev/null and /run/init.log; what
# the setup printed before the pivot is in DIR/setup.log.  The service's requests are logged
# nowhere: its state is its answer.

set -eu

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUSYBOX=${CTR_BUSYBOX:-/bin/busybox}
PORT=7000
START_MS=5000 # the service must answer within this
STOP_MS=5000  # a killed container must be gone within this

die() {
	echo "container.sh: $*" >&2
	exit 1
}

usage() {
	awk 'NR > 3 && /^#/ { sub(/^# ?/, ""); print; next } NR > 3 { exit }' "${BASH_SOURCE[0]}"
}

now_ms() {
	echo $((${EPOCHREALTIME/./} / 1000))
}

# --- the state file ------------------------------------------------------------------------

declare -A S=()

state_read() {
	local dir=$1 k v
	S=()
	[ -r "$dir/ctr.state" ] || return 1
	while IFS='=' read -r k v; do
		[ -n "$k" ] && S[$k]=$v
	done <"$dir/ctr.state"
}

state_write() {
	local dir=${S[dir]} k
	for k in dir rootfs root overlay stack veth host_ip ip netns_name netns token cgroups \
		unshare_pid init_pid service_pid; do
		echo "$k=${S[$k]:-}"
	done >"$dir/ctr.state.new"
	mv "$dir/ctr.state.new" "$dir/ctr.state"
}

# --- processes -----------------------------------------------------------------------------

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

# The PID of a process in its innermost pid namespace.
inner_pid() {
	awk '/^NSpid:/ { print $NF }' "/proc/$1/status" 2>/dev/null
}

# Is pid the init of the container whose token is given: PID 1 of a pid namespace other than
# ours, its root holding the token?  (Its start time changes at a restore; its token does not.)
is_our_init() {
	local pid=$1 token=$2 t=""
	[ -n "$pid" ] && [ -n "$token" ] && alive "$pid" || return 1
	[ "$(inner_pid "$pid")" = 1 ] || return 1
	[ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || return 1
	t=$(cat "/proc/$pid/root/.crest-ctr-id" 2>/dev/null) || return 1
	[ "$t" = "$token" ]
}

# Is pid a ctr-service of that container (by its root's token)?
is_our_service() {
	local pid=$1 token=$2 t=""
	[ -n "$pid" ] && alive "$pid" || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = ctr-service ] || return 1
	t=$(cat "/proc/$pid/root/.crest-ctr-id" 2>/dev/null) || return 1
	[ "$t" = "$token" ]
}

# wait_dead PID MS: until the process is gone or a zombie.
wait_dead() {
	local end=$(($(now_ms) + $2))
	while alive "$1"; do
		[ "$(now_ms)" -ge "$end" ] && return 1
		sleep 0.01
	done
}

children() {
	cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'
}

# --- the rootfs and the setup inside -------------------------------------------------------

# shellcheck disable=SC2016 # expanded by the container's shell
INIT_SCRIPT='#!/bin/sh
# The sample container'"'"'s init (PID 1): starts the service and waits for it forever.
exec </dev/null >>/run/init.log 2>&1
export PATH=/bin HOME=/root
/bin/ctr-service &
svc=$!
# wait returns early when a signal interrupts it: wait again while the service lives
while kill -0 "$svc" 2>/dev/null; do
	wait "$svc"
done
echo "init: ctr-service ($svc) is gone"
'

# DIR/setup.sh, run by busybox sh as PID 1 of the new namespaces.  Before the pivot the host's
# tree is still there, hence every command through the rootfs's busybox by its full path.
# shellcheck disable=SC2016 # expanded by the container's shell
SETUP_SCRIPT='set -eu
bb=$1 rootfs=$2 root=$3 overlay=$4 stack=$5 ovl=$6 cgroups=$7
# the container in its cgroups (0: the writer itself); not unshare, its parent
for cg in $cgroups; do
	echo 0 >"$cg/cgroup.procs"
done
m() { "$bb" mount "$@"; }
if [ "$overlay" = 1 ]; then
	m -t overlay overlay -o "lowerdir=$rootfs,upperdir=$ovl/upper,workdir=$ovl/work" "$root"
else
	m --bind "$rootfs" "$root"
fi
m -t proc -o nosuid,nodev,noexec proc "$root/proc"
m -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
m -t tmpfs -o mode=755,size=1m,nosuid tmpfs "$root/dev"
"$bb" mknod -m 666 "$root/dev/null" c 1 3
"$bb" mknod -m 666 "$root/dev/zero" c 1 5
"$bb" mknod -m 666 "$root/dev/random" c 1 8
"$bb" mknod -m 666 "$root/dev/urandom" c 1 9
"$bb" mknod -m 666 "$root/dev/tty" c 5 0
"$bb" mkdir "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
"$bb" ln -s pts/ptmx "$root/dev/ptmx"
"$bb" ln -s /proc/self/fd "$root/dev/fd"
"$bb" ln -s /proc/self/fd/0 "$root/dev/stdin"
"$bb" ln -s /proc/self/fd/1 "$root/dev/stdout"
"$bb" ln -s /proc/self/fd/2 "$root/dev/stderr"
m -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
m -t mqueue -o nosuid,nodev,noexec mqueue "$root/dev/mqueue"
m -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
m -t tmpfs -o mode=1777,size=16m,nosuid,nodev tmpfs "$root/tmp"
m -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
# volumes: directories of the rootfs on the host (not through the overlay)
m --bind "$rootfs/srv/data" "$root/data"
m --bind "$rootfs/srv/ro" "$root/etc/ro"
m -o remount,bind,ro "$root/etc/ro"
# propagation: /data shared, /mnt/slave its slave, /etc/ro unbindable
m --make-shared "$root/data"
m --bind "$root/data" "$root/mnt/slave"
m --make-slave "$root/mnt/slave"
m --make-unbindable "$root/etc/ro"
if [ "$stack" = 1 ]; then
	m -t tmpfs -o size=1m tmpfs "$root/mnt/stack"
	echo lower >"$root/mnt/stack/lower"
	m -t tmpfs -o size=1m tmpfs "$root/mnt/stack"
	echo upper >"$root/mnt/stack/upper"
fi
"$bb" hostname crest-ctr
echo crest.test >"$root/proc/sys/kernel/domainname"
# the service'"'"'s POSIX queue holds 16 messages: more than the default limit (10), which
# only CAP_SYS_RESOURCE may exceed; the container'"'"'s own ipc namespace allows it
echo 16 >"$root/proc/sys/fs/mqueue/msg_max"
cd "$root"
"$bb" pivot_root . .
/bin/busybox umount -l .
cd /
# the next PID is 2, for the service, whatever the setup forked
echo 1 >/proc/sys/kernel/ns_last_pid
exec /bin/busybox setsid /init
'

build_rootfs() {
	local r=$1 token=$2
	mkdir -p "$r"/{bin,etc/ro,proc,sys,dev,tmp,run,data,srv/data,srv/ro,mnt/stack,mnt/slave,root}
	mkdir -p "$r"/var/lib/ctr
	cp "$BUSYBOX" "$r/bin/busybox"
	# the applets' links point at /bin/busybox as the container sees it
	chroot "$r" /bin/busybox --install -s /bin
	cp "$SERVICE" "$r/bin/ctr-service"
	echo crest-ctr >"$r/etc/hostname"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
		>"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	echo "crest sample container" >"$r/srv/ro/motd"
	printf '%s' "$INIT_SCRIPT" >"$r/init"
	chmod 755 "$r/init"
	echo "$token" >"$r/.crest-ctr-id"
}

# in_ns CMD...: run it in the network namespace of the veth's outside end.
in_ns() {
	if [ -n "${S[netns_name]:-}" ]; then
		nsenter --net="/run/netns/${S[netns_name]}" "$@"
	else
		"$@"
	fi
}

# The veth's outside end exists.
veth_here() {
	if [ -n "${S[netns_name]:-}" ]; then
		ip -n "${S[netns_name]}" link show "${S[veth]}" >/dev/null 2>&1
	else
		ip link show "${S[veth]}" >/dev/null 2>&1
	fi
}

# --- commands ------------------------------------------------------------------------------

# via_veth IP: the address is reached through a veth link (a container's), not a route
# leading out of the machine.
via_veth() {
	local dev
	dev=$(in_ns ip route get "$1" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
	[ -n "$dev" ] && in_ns ip -d link show "$dev" 2>/dev/null | grep -qw veth
}

# query_ip IP CMD: one command, one answer line on stdout (from the veth's namespace).
query_ip() {
	# shellcheck disable=SC2016 # the arguments of bash -c
	in_ns timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "%s\n" "$2" >&3 &&
		IFS= read -r line <&3 && printf "%s\n" "$line"' "$1" "$PORT" "$2"
}

cmd_query() {
	local target=${1:-} cmd=${2:-peek} ip
	[ -n "$target" ] || die "usage: container.sh query DIR|IP [get|peek]"
	if [ -d "$target" ]; then
		state_read "$target" || die "no container state in $target"
		ip=${S[ip]}
	else
		ip=$target
		via_veth "$ip" || die "$ip is not reached through a veth here: not querying it"
	fi
	query_ip "$ip" "$cmd" 2>/dev/null || die "no answer from $ip:$PORT"
}

cmd_exec() {
	local target=${1:-} pid nsenter
	[ $# -ge 2 ] || die "usage: container.sh exec PID|DIR CMD [ARG...]"
	shift
	if [ -d "$target" ]; then
		state_read "$target" || die "no container state in $target"
		pid=${S[init_pid]}
	else
		pid=$target
	fi
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! alive "$pid"; then
		die "no process $pid"
	fi
	nsenter=$(command -v nsenter) || die "nsenter is missing (util-linux)"
	PATH=/bin exec "$nsenter" -t "$pid" -a -r -w -- "$@"
}

cmd_info() {
	[ -r "${1:-}/ctr.state" ] || die "no container state in ${1:-?}"
	cat "$1/ctr.state"
}

# Stop what DIR's state says runs, remove DIR.  Quiet when there is nothing to do.
cmd_stop() {
	local dir=${1:-} p left ok=0 mnt
	[ -n "$dir" ] || die "usage: container.sh stop DIR"
	[ -e "$dir" ] || return 0
	[ -d "$dir" ] || die "$dir is not a directory"
	dir=$(cd "$dir" && pwd)
	if state_read "$dir"; then
		local init=${S[init_pid]:-} token=${S[token]:-} svc=${S[service_pid]:-} killed=""
		# the service of a restored container may have another PID: take the init's children
		if is_our_init "$init" "$token"; then
			svc="$svc $(children "$init" | tr '\n' ' ')"
			kill -KILL "$init" 2>/dev/null && killed=$init
		fi
		# The init's death ends its pid namespace; a service outside it (a restore gone
		# wrong) is ended by its PID, as long as it is this container's.
		for p in $svc; do
			if is_our_service "$p" "$token" && kill -KILL "$p" 2>/dev/null; then
				killed+=" $p"
			fi
		done
		for p in $killed; do
			wait_dead "$p" "$STOP_MS" || ok=1
		done
		[ "$ok" = 0 ] || echo "container.sh: the container (init $init) does not die" >&2
		# the veth's outside end: gone with the container's namespace, or ours to delete
		if [ -n "${S[veth]:-}" ] && veth_here; then
			if [ -n "${S[netns_name]:-}" ]; then
				ip -n "${S[netns_name]}" link del "${S[veth]}" 2>/dev/null || true
			elif [ "$(stat -L -c %i /proc/self/ns/net)" = "${S[netns]:-}" ]; then
				ip link del "${S[veth]}" 2>/dev/null || true
			else
				echo "container.sh: not in the network namespace start ran in:" \
					"${S[veth]} is left to it" >&2
				S[veth]=""
			fi
			local end=$(($(now_ms) + STOP_MS))
			while [ -n "${S[veth]}" ] && veth_here; do
				if [ "$(now_ms)" -ge "$end" ]; then
					echo "container.sh: the veth ${S[veth]} does not go away" >&2
					ok=1
					break
				fi
				sleep 0.01
			done
		fi
	fi
	# Nothing of the container is mounted here, but make sure before removing DIR.
	left=$(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r)
	for mnt in $left; do
		umount -l "$mnt" 2>/dev/null || true
	done
	if awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { f = 1 } END { exit !f }' \
		/proc/self/mountinfo; then
		die "mounts left under $dir: not removing it"
	fi
	rm -rf "$dir"
	return "$ok"
}

# Undo a start that failed half way, then fail.
start_fail() {
	local log=${S[dir]}/setup.log
	echo "container.sh: $*" >&2
	if [ -s "$log" ]; then
		echo "container.sh: --- setup.log:" >&2
		tail -n 5 "$log" | sed 's/^/container.sh: | /' >&2
	fi
	[ -n "${CTR_KEEP_FAILED:-}" ] || cmd_stop "${S[dir]}" >/dev/null 2>&1 || true
	exit 1
}

cmd_start() {
	local dir="" overlay=0 stack=0 veth=ctrh0 prefix=10.88.0 netns="" cgroups=() arg
	SERVICE=${CTR_SERVICE:-$ROOT/build/ctr-service}
	while [ $# -gt 0 ]; do
		arg=$1
		shift
		case $arg in
		--dir | --veth | --ip-prefix | --netns | --cgroup | --service)
			[ $# -gt 0 ] || die "$arg needs a value"
			case $arg in
			--dir) dir=$1 ;;
			--veth) veth=$1 ;;
			--ip-prefix) prefix=$1 ;;
			--netns) netns=$1 ;;
			--cgroup) cgroups+=("$1") ;;
			--service) SERVICE=$1 ;;
			esac
			shift
			;;
		--overlay) overlay=1 ;;
		--stack) stack=1 ;;
		*) die "start: unknown argument $arg (see container.sh --help)" ;;
		esac
	done
	[ -n "$dir" ] || die "start: --dir DIR is required"
	[ "$(id -u)" = 0 ] || die "start: must run as root"
	[[ $prefix =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "bad --ip-prefix $prefix"
	if [ ${#veth} -gt 15 ] || ! [[ $veth =~ ^[A-Za-z0-9_.-]+$ ]]; then
		die "bad --veth name $veth"
	fi
	[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing: apt-get install busybox-static"
	if ldd "$BUSYBOX" >/dev/null 2>&1; then
		die "$BUSYBOX is not statically linked: apt-get install busybox-static"
	fi
	[ -x "$SERVICE" ] || die "$SERVICE is missing: make build/ctr-service"
	for arg in "${cgroups[@]}"; do
		[ -e "$arg/cgroup.procs" ] || die "$arg is not a cgroup directory"
		[[ $arg != *[[:space:]]* ]] || die "a cgroup path with a space: $arg"
	done
	if [ -n "$netns" ] && [ ! -e "/run/netns/$netns" ]; then
		die "no network namespace $netns (ip netns list)"
	fi
	S=([veth]=$veth [netns_name]=$netns)
	if veth_here; then
		die "a link named $veth exists already${netns:+ in $netns}"
	fi
	if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
		die "$dir exists and is not empty"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)

	S=([dir]=$dir [rootfs]=$dir/rootfs [overlay]=$overlay [stack]=$stack [veth]=$veth
		[host_ip]=$prefix.1 [ip]=$prefix.2 [netns_name]=$netns
		[netns]=$(stat -L -c %i "${netns:+/run/netns/}${netns:-/proc/self/ns/net}")
		[token]=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n') [cgroups]="${cgroups[*]}")
	S[root]=${S[rootfs]}
	state_write
	build_rootfs "${S[rootfs]}" "${S[token]}" || start_fail "cannot build the rootfs"
	if [ "$overlay" = 1 ]; then
		mkdir -p "$dir/ovl/upper" "$dir/ovl/work" "$dir/ovl/merged"
		S[root]=$dir/ovl/merged
	fi

	printf '%s' "$SETUP_SCRIPT" >"$dir/setup.sh"
	# The container's first process: no fd of ours but stdio (setup.log).
	(
		for arg in /proc/"$BASHPID"/fd/*; do
			arg=${arg##*/}
			if [ "$arg" -gt 2 ]; then eval "exec $arg>&-"; fi
		done
		# unshare stays in the pid namespace's parent, and in our other namespaces: the
		# init makes those itself, as a container runtime's init does
		exec unshare --pid --fork -- \
			unshare --mount --uts --ipc --net --propagation private -- \
			"${S[rootfs]}/bin/busybox" sh "$dir/setup.sh" "${S[rootfs]}/bin/busybox" \
			"${S[rootfs]}" "${S[root]}" "$overlay" "$stack" "$dir/ovl" "${cgroups[*]}"
	) </dev/null >"$dir/setup.log" 2>&1 &
	S[unshare_pid]=$!
	state_write

	# unshare forks the init, which makes its other namespaces
	local upid=${S[unshare_pid]} init="" end ns
	end=$(($(now_ms) + START_MS))
	while [ -z "$init" ]; do
		alive "$upid" || start_fail "unshare exited before the container started"
		init=$(children "$upid" | head -n 1)
		if [ -n "$init" ]; then
			[ "$(inner_pid "$init")" = 1 ] || init=""
			for ns in net mnt uts ipc; do
				if [ "$(readlink "/proc/$init/ns/$ns")" = "$(readlink "/proc/self/ns/$ns")" ]
				then
					init=""
				fi
			done
		fi
		[ "$(now_ms)" -lt "$end" ] || start_fail "no container init appeared"
		[ -n "$init" ] || sleep 0.005
	done
	S[init_pid]=$init
	state_write

	# the veth: the outside end here, eth0 in the container's network namespace
	local ipn=(ip)
	[ -z "$netns" ] || ipn=(ip -n "$netns")
	# (no duplicate address detection: the IPv6 link-local addresses are there at once)
	{
		"${ipn[@]}" link add "$veth" type veth peer name eth0 netns "/proc/$init/ns/net" &&
			in_ns sh -c "echo 0 >/proc/sys/net/ipv6/conf/$veth/accept_dad" &&
			"${ipn[@]}" addr add "$prefix.1/24" dev "$veth" &&
			"${ipn[@]}" link set "$veth" up &&
			nsenter -t "$init" -n sh -ec "
				echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad
				ip link set lo up
				ip addr add $prefix.2/24 dev eth0
				ip link set eth0 up
				ip route add default via $prefix.1"
	} >>"$dir/setup.log" 2>&1 || {
		alive "$init" || start_fail "the container died while starting (its setup, init or" \
			"service failed; the service's errors were in its /run/init.log)"
		start_fail "cannot set up the veth pair"
	}
	if [ "$(in_ns ip route get "$prefix.2" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')" \
		!= "$veth" ]; then
		start_fail "$prefix.2 is not routed through $veth: another route takes it"
	fi

	# ready when both ends have their carrier (the kernel reports it with a delay) and the
	# service answers
	while nsenter -t "$init" -n ip -o link show eth0 2>/dev/null | grep -q NO-CARRIER ||
		in_ns ip -o link show "$veth" 2>/dev/null | grep -q NO-CARRIER ||
		! query_ip "$prefix.2" peek >/dev/null 2>&1; do
		alive "$init" || start_fail "the container died while starting (its setup, init or" \
			"service failed; the service's errors were in its /run/init.log)"
		[ "$(now_ms)" -lt "$end" ] || start_fail "the service does not answer on $prefix.2:$PORT"
		sleep 0.01
	done
	is_our_init "$init" "${S[token]}" || start_fail "process $init is not the container's init"
	S[service_pid]=$(children "$init" | head -n 1)
	state_write
	echo "$init"
}

case ${1:-} in
start | query | exec | info | stop)
	cmd=$1
	shift
	"cmd_$cmd" "$@"
	;;
-h | --help | help)
	usage
	;;
*)
	usage >&2
	exit 2
	;;
esac
