#!/usr/bin/env bash
# Install every build and test dependency of crest from Debian's packages.
# Idempotent and fast when everything is present: apt runs only for what is missing.
set -euo pipefail

PKGS=(
	gcc make pkg-config
	protobuf-c-compiler libprotobuf-c-dev	# image format
	liblz4-dev				# page compression
	zlib1g-dev				# image checksums (crc32)
	libssl-dev				# TLS and digests
	libnl-3-dev libnl-route-3-dev		# rtnetlink
	libnet1-dev				# raw packets (TCP FIN injection)
	libnl-idiag-3-dev			# inet_diag: TCP and UDP sockets
	libnftables-dev nftables iptables	# network lock
	libcriterion-dev			# unit tests
	rsync					# filesystem passes
	drbd-utils kmod				# migrate --fs-sync drbd (tested in dry-run mode)
	iproute2 procps util-linux		# ip netns, ps, setsid for tests and demo
	busybox-static				# the sample container (scripts/container.sh)
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages (${missing[*]}); run as root" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
