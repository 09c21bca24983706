#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Every test: the criterion unit tests, then the live tests (test/live/run.sh, which gets this
# script's arguments).  The very last line is "N passed, N failed" over both; the exit status
# is non-zero when anything failed.  `make test` builds everything and runs this.

set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
OUT=$(mktemp -d "${TMPDIR:-/tmp}/crest-test.XXXXXX") || exit 1
trap 'rm -rf "$OUT"' EXIT

# "A passed, B failed" from the last such line of a file, or nothing.
counts() {
	grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1
}

unit_pass=0
unit_fail=0
echo "== unit tests"
if [ ! -x test/unit/unit-tests ]; then
	echo "FAIL unit-tests (test/unit/unit-tests is not built: run make build-tests)"
	unit_fail=1
else
	# Criterion reports on stderr; its summary line reads
	#   [====] Synthesis: Tested: 12 | Passing: 11 | Failing: 1 | Crashing: 1
	# where Failing already includes the crashes.
	./test/unit/unit-tests --color=never 2>&1 | tee "$OUT/unit.log"
	rc=${PIPESTATUS[0]}
	synth=$(grep -E 'Synthesis: Tested: [0-9]+' "$OUT/unit.log" | tail -n 1)
	if [ -z "$synth" ]; then
		echo "FAIL unit-tests (exited $rc without a Synthesis line)"
		unit_fail=1
	else
		tested=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$synth")
		unit_pass=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$synth")
		unit_fail=$((tested - unit_pass))
		if [ "$rc" != 0 ] && [ "$unit_fail" = 0 ]; then
			echo "FAIL unit-tests (exited $rc although every test passed)"
			unit_fail=1
		fi
	fi
fi
echo "unit: $unit_pass passed, $unit_fail failed"

live_pass=0
live_fail=0
echo "== live tests"
bash test/live/run.sh "$@" 2>&1 | tee "$OUT/live.log"
line=$(counts "$OUT/live.log")
if [ -z "$line" ]; then
	echo "FAIL live (test/live/run.sh ended without its summary line)"
	live_fail=1
else
	read -r live_pass _ live_fail _ <<<"$line"
fi

total_pass=$((unit_pass + live_pass))
total_fail=$((unit_fail + live_fail))
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
