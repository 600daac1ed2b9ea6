#!/usr/bin/env bash
# An on-path attacker between two bnf hosts (tests/e2e/onpath_proxy.py, a TCP
# proxy that lets the handshake through): each record it alters, drops,
# replays or moves to another connection is detected, the push fails with the
# cause on one line, and nothing is committed; a passive observer sees no page
# in clear (and does with --encryption off on both hosts, which keeps the
# rest of these guarantees).
set -euo pipefail
BNF=${1:?usage: onpath.sh PATH_TO_BNF}
PROXY=$(cd "$(dirname "$0")" && pwd)/onpath_proxy.py
WORK=$(mktemp -d /dev/shm/bnf-onpath-XXXXXX)
export XDG_STATE_HOME=$WORK/xdg
DAEMON_PID=""
PROXY_PID=""
cleanup() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
  if [ -n "$DAEMON_PID" ]; then kill -9 "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null; fi || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"

port_from() {  # port_from WHAT FILE SED_SCRIPT: prints the port the file names once it does
  for _ in $(seq 100); do
    local port
    port=$(sed -n "$3" "$2")
    [ -n "$port" ] && { echo "$port"; return 0; }
    sleep 0.05
  done
  echo "$1 did not start:" >&2; cat "$2" >&2; return 1
}

start_daemon() {  # start_daemon EXTRA_ARGS... -> sets DAEMON_PID, PORT, DLOG
  DLOG=$WORK/daemon.$RANDOM.log
  "$BNF" daemon --state-dir "$WORK/state" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" "$@" 2>"$DLOG" &
  DAEMON_PID=$!
  PORT=$(port_from daemon "$DLOG" 's/.*listening on bnf+tcp:127.0.0.1:\([0-9]*\).*/\1/p') || exit 1
}
stop_daemon() { kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""; }

start_proxy() {  # start_proxy ARGS... -> sets PROXY_PID, PPORT
  local out=$WORK/proxy.$RANDOM.out
  python3 "$PROXY" --to "127.0.0.1:$PORT" "$@" >"$out" 2>&1 &
  PROXY_PID=$!
  PPORT=$(port_from proxy "$out" 's/^listening \([0-9]*\)/\1/p') || exit 1
}
stop_proxy() { kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""; }

push() {  # push IMAGE EXTRA_ARGS... (through the proxy)
  local img=$1; shift
  "$BNF" image push "$img" --peer-key "$WORK/peer.key" --name vm --to "bnf+tcp:127.0.0.1:$PPORT" --no-state "$@"
}
# Does FILE hold a 64-byte piece of page 100 of IMAGE?
holds_page() { python3 -c "import sys; p=open(sys.argv[2],'rb').read()[409600:409664]; sys.exit(0 if p in open(sys.argv[1],'rb').read() else 1)" "$1" "$2"; }

lacks_page() { ! holds_page "$1" "$2"; }

cd "$WORK"
"$BNF" image make base.img --size 16M --zero-percent 0 --seed 1
"$BNF" image make next.img --size 16M --zero-percent 0 --seed 2
start_daemon

start_proxy --mode pass --capture "$WORK/seen.bin"
check "a push through a passive proxy succeeds" push base.img --json >/dev/null
stop_proxy
check "the passive proxy saw no page in clear" lacks_page seen.bin base.img
check "it saw the push's bytes (over 16 MiB)" test "$(stat -c %s seen.bin)" -gt 16000000
cp state/snapshots/vm/image committed.img

for mode in flip drop replay move; do
  start_proxy --mode "$mode"
  set +e
  push next.img --streams 2 >/dev/null 2>"$WORK/$mode.err"
  rc=$?
  set -e
  stop_proxy
  echo "     $mode: $(cat "$WORK/$mode.err")"
  check "$mode: the push fails" test "$rc" -ne 0
  check "$mode: its error is one line" test "$(wc -l <"$WORK/$mode.err")" -eq 1
  check "$mode: the daemon names the cause" grep -q "failed authentication" "$DLOG"
  check "$mode: nothing was committed (epoch 1, the first push's image)" \
    bash -c "grep -q '\"epoch\": 1' state/snapshots/vm/manifest.json && cmp -s committed.img state/snapshots/vm/image"
  check "$mode: the snapshot verifies" "$BNF" snapshot verify --state-dir state vm
  : >"$DLOG"
done

start_proxy --mode pass
check "after the attacks a push succeeds" push next.img --json >/dev/null
stop_proxy
check "and lands the new image" cmp -s next.img state/snapshots/vm/image

# --encryption off on both hosts: pages cross in clear, still authenticated.
stop_daemon
start_daemon --encryption off
start_proxy --mode pass --capture "$WORK/seen-clear.bin"
check "an integrity-only push succeeds" push base.img --encryption off --json >/dev/null
stop_proxy
check "with --encryption off the pages are on the wire in clear" holds_page seen-clear.bin base.img
start_proxy --mode flip
set +e
push next.img --encryption off >/dev/null 2>"$WORK/clear-flip.err"
rc=$?
set -e
stop_proxy
check "integrity only: a flipped byte still fails the push" test "$rc" -ne 0
check "integrity only: the daemon names the cause" grep -q "failed authentication" "$DLOG"
check "integrity only: the snapshot is the committed one" cmp -s base.img state/snapshots/vm/image
start_proxy --mode pass --capture "$WORK/seen-mixed.bin"
check "a host that keeps encryption on gets it from a host that turned it off" push next.img --json >/dev/null
stop_proxy
check "and no page crossed in clear" lacks_page seen-mixed.bin next.img

checks_done "onpath: "
