#!/usr/bin/env bash
# Two processes, real sockets: a bnf daemon and `bnf image push`.
# Full push, incremental push (digests and dirty bitmap), the daemon killed
# mid-transfer (the committed epoch must survive), bad input, a full disk,
# and a clean SIGTERM shutdown.
set -euo pipefail
BNF=${1:?usage: daemon_push.sh PATH_TO_BNF}
WORK=$(mktemp -d /dev/shm/bnf-e2e-XXXXXX)
export XDG_STATE_HOME=$WORK/xdg
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -9 "$DAEMON_PID" 2>/dev/null || true
  mountpoint -q "$WORK/small" 2>/dev/null && umount "$WORK/small" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

start_daemon() {  # start_daemon STATE_DIR -> sets DAEMON_PID, URI
  local log=$WORK/daemon.$RANDOM.log
  "$BNF" daemon --state-dir "$1" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" 2>"$log" &
  DAEMON_PID=$!
  for _ in $(seq 100); do
    URI=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$log")
    [ -n "$URI" ] && return 0
    sleep 0.05
  done
  echo "daemon did not start:"; cat "$log"; exit 1
}

cd "$WORK"
"$BNF" image make img --size 64M --zero-percent 10 --seed 1
start_daemon "$WORK/state"

out=$("$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to "$URI" --json)
check "first push is full" test "$(json_field "$out" mode)" = full
check "full push sends every non-zero page" test $(( $(json_field "$out" pages_sent) + $(json_field "$out" pages_zero) )) -eq 16384
check "snapshot verifies after the full push" "$BNF" snapshot verify --state-dir state vm
check "snapshot image equals the pushed file" cmp -s img state/snapshots/vm/image

changed=$("$BNF" image mutate img --percent 1 --bitmap-out dirty.bm --seed 2 | awk '{print $2}')
out=$("$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to "$URI" --dirty-bitmap dirty.bm --json)
check "second push is incremental" test "$(json_field "$out" mode)" = incremental
check "incremental push sends exactly the changed pages" test "$(json_field "$out" pages_sent)" -eq "$changed"
check "incremental wire bytes <= 1.05 x changed bytes" \
  python3 -c "import sys; sys.exit(0 if $(json_field "$out" wire_bytes) <= 1.05 * $changed * 4096 else 1)"
check "snapshot equals the file after the incremental push" cmp -s img state/snapshots/vm/image

"$BNF" image mutate img --percent 2 --seed 3 >/dev/null
out=$("$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to "$URI" --no-state --json)
check "push without local state compares digests" test "$(json_field "$out" base_source)" = receiver-table
check "snapshot equals the file after a digest-compared push" cmp -s img state/snapshots/vm/image
check "epoch is 3" grep -q '"epoch": 3' state/snapshots/vm/manifest.json

# Kill the daemon in the middle of a transfer into the committed snapshot.
cp img committed.img
"$BNF" image make img --size 64M --zero-percent 0 --seed 9
"$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to "$URI" --no-state --json >push.out 2>push.err &
PUSH_PID=$!
for _ in $(seq 2000); do
  [ -e state/snapshots/vm/journal.0 ] && [ "$(stat -c %s state/snapshots/vm/journal.0)" -gt 100000 ] && break
  sleep 0.005
done
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
set +e; wait "$PUSH_PID"; push_rc=$?; set -e
check "push fails when the daemon dies" test "$push_rc" -ne 0
check "the failed push says why on one line" test "$(wc -l <push.err)" -eq 1
check "an undo journal was left behind by the kill" test -e state/snapshots/vm/journal.0
start_daemon "$WORK/state"
check "restarted daemon rolled back: snapshot verifies" "$BNF" snapshot verify --state-dir state vm
check "restarted daemon rolled back: image is the committed one" cmp -s committed.img state/snapshots/vm/image
check "no journal remains after recovery" test ! -e state/snapshots/vm/journal.0
out=$("$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to "$URI" --json)
check "the next push succeeds" test "$(json_field "$out" epoch)" -eq 4
check "and lands the new image" cmp -s img state/snapshots/vm/image

# Bad input: one line naming the cause, non-zero exit, nothing changed.
expect_error() {  # expect_error NAME PATTERN CMD...
  local name=$1 pattern=$2; shift 2
  set +e; "$@" >/dev/null 2>err.txt; local rc=$?; set -e
  check "$name: non-zero exit" test "$rc" -ne 0
  check "$name: error names the cause" grep -q "$pattern" err.txt
}
expect_error "bad name" "bad snapshot name" "$BNF" image push img --peer-key "$WORK/peer.key" --name ../x --to "$URI"
expect_error "unreachable daemon" "refused" "$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to bnf+tcp:127.0.0.1:1
expect_error "bad URI" "bad endpoint" "$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to tcp:127.0.0.1:1
expect_error "missing file" "No such file" "$BNF" image push nofile --peer-key "$WORK/peer.key" --name vm --to "$URI"
head -c 12345 /dev/urandom >odd.img
expect_error "size not a page multiple" "multiple of 4096" "$BNF" image push odd.img --peer-key "$WORK/peer.key" --name odd --to "$URI"
"$BNF" image make small.img --size 4M
expect_error "size mismatch" "size mismatch" "$BNF" image push small.img --peer-key "$WORK/peer.key" --name vm --to "$URI"
( umask 077; echo 0000000000000000000000000000000000000000000000000000000000000000 >other.key )
expect_error "another peer key" "peer keys differ" "$BNF" image push img --peer-key other.key --name vm --to "$URI"
expect_error "no peer key" "nokey.key" "$BNF" image push img --peer-key nokey.key --name vm --to "$URI"
echo garbage >bad.bm
expect_error "corrupt bitmap" "bitmap" "$BNF" image push img --peer-key "$WORK/peer.key" --name vm --to "$URI" --dirty-bitmap bad.bm
check "snapshot still verifies after the bad input" "$BNF" snapshot verify --state-dir state vm
check "snapshot still holds the last image" cmp -s img state/snapshots/vm/image

# Full disk: a state directory on a 16 MiB tmpfs.
mkdir -p small
if mount -t tmpfs -o size=16m tmpfs small 2>/dev/null; then
  kill "$DAEMON_PID"; wait "$DAEMON_PID" || true
  start_daemon "$WORK/small"
  expect_error "full disk" "not enough space for a 64 MiB image" "$BNF" image push img --peer-key "$WORK/peer.key" --name big --to "$URI"
  check "nothing committed on the full disk" test -z "$("$BNF" snapshot list --state-dir small --json | tr -d '[]')"
else
  echo "skip - full disk (cannot mount a tmpfs here)"
fi

kill -TERM "$DAEMON_PID"
set +e; wait "$DAEMON_PID"; rc=$?; set -e; DAEMON_PID=""
check "daemon exits 0 on SIGTERM" test "$rc" -eq 0

checks_done
