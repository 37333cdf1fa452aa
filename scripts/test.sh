#!/bin/sh
# Install dependencies, build, and run the whole test suite.
# The last line is the summary: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
sh scripts/deps.sh || exit 1
sh scripts/build.sh || exit 1
make -j2 check >make-check.out 2>&1
status=$?
# Show each test's verdict, and the logs of those that did not pass.
grep -E '^(PASS|FAIL|XFAIL|XPASS|ERROR|SKIP):' make-check.out || true
for log in $(find tests -name '*.log' ! -name test-suite.log); do
	trs="${log%.log}.trs"
	if [ -f "$trs" ] && grep -qE ':test-result: (FAIL|ERROR|XPASS)' "$trs"; then
		echo "----- $log"
		tail -n 60 "$log"
	fi
done
[ $status -eq 0 ] || tail -n 30 make-check.out
# Count test cases, not programs: Check's "Checks: N, Failures: F, Errors: E"
# and the client scripts' "N passed, N failed". A program that died before
# its summary counts as one failure.
counts=$(for log in $(find tests -name '*.log' ! -name test-suite.log | sort); do
	trs="${log%.log}.trs"
	line=$(grep -E 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
	if [ -n "$line" ]; then
		echo "$line" | sed -E 's/.*Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/' |
			awk '{print $1 - $2 - $3, $2 + $3}'
		continue
	fi
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -n "$line" ]; then
		echo "$line" | awk '{print $1, $3}'
	elif [ -f "$trs" ] && grep -q ':test-result: PASS' "$trs"; then
		echo "1 0"
	else
		echo "0 1"
	fi
done | awk '{p += $1; f += $2} END {print p + 0, f + 0}')
set -- $counts
echo "$1 passed, $2 failed"
[ "$2" -eq 0 ] || exit 1
exit $status
