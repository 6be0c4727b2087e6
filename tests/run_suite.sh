#!/usr/bin/env bash
# The whole suite in two pytest processes side by side: the integration tests in this one, in their written
# order and one at a time (each starts brokers, Spark, Airflow or a browser on the machine's cores, and a
# module's tests share its fixtures), the unit tests in another meanwhile, at a lower CPU priority (nice 5),
# with the integration tests marked `beside` (their own ports, folders and processes; a few minutes that
# would otherwise lengthen the longer path): the integration tests are the longer path, and the second
# process takes the cores whenever those wait. Its report follows the integration tests' one. Exit status:
# 0 when both pass.
#   usage: tests/run_suite.sh PYTEST [PYTEST ARGS...]
set -uo pipefail
pytest=$1
shift
unit_log=$(mktemp)
nice -n 5 "$pytest" -m "not integration or beside" -p no:cacheprovider "$@" >"$unit_log" 2>&1 &
unit_pid=$!
trap 'kill "$unit_pid" 2>/dev/null; rm -f "$unit_log"' EXIT INT TERM

"$pytest" -m "integration and not beside" "$@"
integration=$?
wait "$unit_pid"
unit=$?
echo
echo "==================== unit tests (run alongside the integration tests) ===================="
cat "$unit_log"

# 5 is pytest's "no tests collected": PYTEST_ARGS named tests of one kind only.
[ "$integration" -eq 5 ] && [ "$unit" -ne 5 ] && integration=0
[ "$unit" -eq 5 ] && [ "$integration" -ne 5 ] && unit=0
if [ "$integration" -ne 0 ] || [ "$unit" -ne 0 ]; then
    echo "FAILED: integration tests exit $integration, unit tests exit $unit"
    exit 1
fi
