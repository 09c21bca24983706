#!/bin/bash
# SPDX-License-Identifier: MIT
#
# crest demo, part 2: checkpoint the sample container (scripts/container.sh: busybox, its own
# pid, mount, uts, ipc and network namespaces, a service keeping state in SysV shared memory,
# semaphores, message queues, a POSIX queue and tmpfs files), show it gone, restore it and show
# the service answering with its old state.  Everything runs in a network namespace made for
# the demo.  Run by scripts/demo.sh (make demo), as root; exits non-zero on any failure.

set -u
cd "$(dirname "$0")/.." || exit 1

CREST=${CREST:-criu/crest}
CTR=scripts/container.sh
NS=crest-demo-$$
work=$(mktemp -d /tmp/crest-demo-ctr.XXXXXX) || exit 1
imgs=$work/images
dir=$work/ctr
mkdir "$imgs"

step() {
	printf '\n==> %s\n' "$*"
}

in_ns() {
	ip netns exec "$NS" "$@"
}

cleanup() {
	in_ns bash "$CTR" stop "$dir" >/dev/null 2>&1
	ip netns del "$NS" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "demo: FAILED: $*" >&2
	for f in "$imgs/dump.log" "$imgs/restore.log"; do
		if [ -s "$f" ]; then
			echo "--- last lines of $f:" >&2
			tail -n 15 "$f" >&2
		fi
	done
	exit 1
}

field() {
	sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"
}

ip netns add "$NS" || fail "cannot make network namespace $NS"
step "Starting the sample container (scripts/container.sh start)"
pid=$(in_ns bash "$CTR" start --dir "$dir") || fail "the container did not start"
echo "container init: pid $pid here, 1 inside"
for _ in 1 2 3; do
	in_ns bash "$CTR" query "$dir" get || fail "the service did not answer"
done
before=$(in_ns bash "$CTR" query "$dir" peek)
echo "inside: hostname $(bash "$CTR" exec "$pid" hostname), processes:"
bash "$CTR" exec "$pid" ps
bash "$CTR" exec "$pid" cat /proc/mounts >"$work/mounts.before"

step "crest dump -t $pid -D $imgs (all its namespaces come along)"
in_ns "$CREST" dump -t "$pid" -D "$imgs" -o dump.log -v4 || fail "dump"
for _ in $(seq 50); do
	[ -e "/proc/$pid" ] || break
	sleep 0.1
done
[ -e "/proc/$pid" ] && fail "pid $pid still exists after the dump"
echo "the container is gone; images:"
ls "$imgs"

step "crest restore -D $imgs -d"
in_ns "$CREST" restore -D "$imgs" -d -o restore.log -v4 || fail "restore"
after=$(in_ns bash "$CTR" query "$dir" peek) || fail "the restored service does not answer"
echo "before: $before"
echo "after:  $after"
[ "$before" = "$after" ] || fail "the service's state changed"
bash "$CTR" exec "$pid" cat /proc/mounts | cmp -s - "$work/mounts.before" ||
	fail "the container's mounts changed"
now=$(in_ns bash "$CTR" query "$dir" get) || fail "the restored service does not answer"
echo "one more request: $now"
[ "$(field counter "$now")" = $(($(field counter "$before") + 1)) ] ||
	fail "the counter did not go on"

step "Stopping the container"
in_ns bash "$CTR" stop "$dir" || fail "stop"
printf '\ndemo: OK: the container (pid %s) was restored with its state and went on\n' "$pid"
