#!/usr/bin/env bash
# A daemon's resources against peers that never authenticate or go quiet
# (tests/e2e/peer_bounds.py is the client): a connection that sends nothing,
# or its first header a byte at a time, is closed at the 5 s handshake
# deadline; a first frame claiming more metadata than a PEER_* frame may carry
# is refused at once; connections over the per-source cap (32) are closed at
# accept, and a flood of them does not grow the daemon's memory; throughout,
# the daemon stays up and takes a push.
set -euo pipefail
BNF=${1:?usage: peer_bounds.sh PATH_TO_BNF}
CLIENT=$(cd "$(dirname "$0")" && pwd)/peer_bounds.py
WORK=$(mktemp -d /dev/shm/bnf-bounds-XXXXXX)
export XDG_STATE_HOME=$WORK/xdg
DAEMON_PID=""
cleanup() {
  if [ -n "$DAEMON_PID" ]; then kill -9 "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null; fi || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
between() { python3 -c "import sys; sys.exit(0 if $2 <= float(sys.argv[1]) <= $3 else 1)" "$1"; }
fact() { sed -n "s/.*$1 \([0-9.]*\).*/\1/p" <<<"$2"; }  # fact NAME LINE: the number after NAME
client() { python3 "$CLIENT" --port "$PORT" "$@"; }
push() { "$BNF" image push "$1" --peer-key "$WORK/peer.key" --name vm --to "bnf+tcp:127.0.0.1:$PORT" --no-state; }

cd "$WORK"
"$BNF" image make base.img --size 8M --seed 1
"$BNF" daemon --state-dir "$WORK/state" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" \
  --peer-timeout 3 2>daemon.log &
DAEMON_PID=$!
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*listening on bnf+tcp:127.0.0.1:\([0-9]*\).*/\1/p' daemon.log)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "daemon did not start"; cat daemon.log; exit 1; }

out=$(client --mode silent)
check "a silent connection is closed at the handshake deadline ($out)" between "$(fact closed_after "$out")" 4.5 8
out=$(client --mode trickle)
check "a header sent a byte at a time is closed at the deadline too ($out)" between "$(fact closed_after "$out")" 4.5 8
out=$(client --mode huge-meta)
check "a first frame claiming 1 MiB of metadata is refused at once ($out)" between "$(fact closed_after "$out")" 0 1
check "the daemon logged why" grep -q "metadata" daemon.log

rss_before=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$DAEMON_PID/status")
out=$(client --mode flood --count 200 --claim-meta --rss-of "$DAEMON_PID")
check "of 200 connections from one address, those over the cap of 32 are closed at once ($out)" \
  between "$(fact closed_at_once "$out")" 168 200
check "the rest are closed by the deadline" between "$(fact last_closed_after "$out")" 0 8
# Under ASan freed memory sits in its quarantine: resident size says nothing there.
if [ -z "${ASAN_OPTIONS:-}" ]; then
  check "the flood grew the daemon's memory by under 40 MiB (from $rss_before MiB)" \
    between "$(fact rss_mib "$out")" 0 $((rss_before + 40))
fi
check "the daemon rate-limits its lines about refused connections" \
  test "$(grep -c 'closed at once' daemon.log)" -lt 20

out=$(client --mode flood --count 40)
check "silent connections under the cap wait for the deadline, over it are closed ($out)" \
  between "$(fact closed_at_once "$out")" 8 8
check "after all this the daemon takes a push" push base.img
check "and it is still running" kill -0 "$DAEMON_PID"

checks_done "peer bounds: "
