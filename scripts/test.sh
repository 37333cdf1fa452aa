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
pass=$(grep -E '^# PASS: ' make-check.out | awk '{print $3}')
fail=$(grep -E '^# (FAIL|ERROR|XPASS): ' make-check.out | awk '{s += $3} END {print s + 0}')
echo "${pass:-0} passed, ${fail:-0} failed"
exit $status
