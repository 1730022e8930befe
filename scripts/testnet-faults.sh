#!/bin/sh
# testnet-faults.sh DIR: run the market's whole cycle on a fresh testnet in
# DIR three times: plainly, with a seller killed mid-lease (kill -9, then
# started again), and, as root, with a seller cut off by a partition in the
# middle of the lease and healed. Exits non-zero if any run fails a check.
# The testnet is stopped at the end, whatever happens.
#
#   go install ./cmd/spotmesh && scripts/testnet-faults.sh /tmp/tn
set -u
dir=${1:?usage: testnet-faults.sh DIR (a directory that does not exist yet)}
spotmesh=${SPOTMESH:-spotmesh}
netns=
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
	netns=--netns
fi
fail=0
$spotmesh testnet up --dir "$dir" --sellers 2 --buyers 1 $netns || exit 1
trap '$spotmesh testnet down --dir "$dir" >/dev/null' EXIT
trap 'exit 130' INT TERM # Ctrl-C ends the script; the EXIT trap takes the testnet down

echo "== the cycle, plainly"
$spotmesh testnet scenario --dir "$dir" || fail=1

echo "== a seller killed mid-lease and started again"
$spotmesh testnet scenario --dir "$dir" --fault kill-seller || fail=1

if [ -n "$netns" ]; then
	echo "== a seller cut off by a partition mid-lease, then healed"
	$spotmesh testnet scenario --dir "$dir" --fault partition-seller --downtime 3s || fail=1
else
	echo "== partition skipped: it needs root and ip (network namespaces)"
fi

if [ "$fail" = 0 ]; then echo "all runs passed"; else echo "a run failed: see above"; fi
exit "$fail"
