#!/usr/bin/env bash
# Checks that the package layering of DESIGN.md holds:
#   cmd -> testnet -> node -> store -> protocol
# protocol imports nothing of ours; store imports only protocol; node
# imports no testnet or cmd; testnet imports no cmd; nothing imports cmd.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0

deps() { go list -deps "$1" 2>/dev/null | grep "^$mod/" | grep -v "^$1\$" || true; }

check() { # check PKG-PATTERN FORBIDDEN-REGEX WHY
  for p in $(go list "$mod/$1" 2>/dev/null); do
    bad=$(deps "$p" | grep -E "$2" || true)
    if [ -n "$bad" ]; then
      echo "layering: $p imports $(echo $bad) — $3"
      fail=1
    fi
  done
}

check "protocol/..." "^$mod/" "protocol imports nothing of ours"
check "store/..." "^$mod/(node|testnet|cmd)(/|\$)" "store sits below node, testnet and cmd"
check "node/..." "^$mod/(testnet|cmd)(/|\$)" "node sits below testnet and cmd"
check "testnet/..." "^$mod/cmd(/|\$)" "nothing imports cmd"
check "testnet/refcloud/..." "^$mod/(node|store|protocol)(/|\$)" "the reference cloud is written from docs/driver-http.yaml alone"

if [ "$fail" -ne 0 ]; then exit 1; fi
echo "layering ok"
