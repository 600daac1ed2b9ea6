#!/usr/bin/env bash
# The main job on a local default: install, build, then on one machine
#  1. back-and-forth live migration of a real QEMU VM (the memory-checking test
#     guest) between two local daemons (hosts A and B): A -> B (full), B -> A
#     (only pages changed since arrival), the guest's memory checked after;
#  2. an image push into a daemon: full, then incremental after 1% changed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
BNF=$PWD/build/bnf
WORK=$(mktemp -d /dev/shm/bnf-demo-XXXXXX)
export XDG_STATE_HOME=$WORK/xdg
cleanup() {  # keeps the demo's exit status: under set -e a pkill that matched nothing made it 1
  local rc=$?
  kill ${DAEMON:-} ${DA:-} ${DB:-} 2>/dev/null || true
  wait 2>/dev/null || true
  pkill -f "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

wait_listen() { for _ in $(seq 100); do sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$1" | grep . && return; sleep 0.05; done; }
echo "== two daemons as two hosts"
# Every connection between daemons proves a shared secret: both hosts get the same key file.
KEY=$WORK/peer.key
"$BNF" daemon --state-dir "$WORK/A" --listen bnf+tcp:127.0.0.1:0 --peer-key "$KEY" 2>"$WORK/A.log" & DA=$!
"$BNF" daemon --state-dir "$WORK/B" --listen bnf+tcp:127.0.0.1:0 --peer-key "$KEY" 2>"$WORK/B.log" & DB=$!
URI_A=$(wait_listen "$WORK/A.log"); URI_B=$(wait_listen "$WORK/B.log")
sleep 0.2
echo "host A: $URI_A, host B: $URI_B"
GUEST=$PWD/build/tests/guest/memcheck-guest.elf
CHECK=$PWD/build/tests/guest/bnf-guest-check
echo "== a 256 MiB test guest on A: fills its memory, then keeps rewriting 1% of it (tests/guest)"
"$BNF" vm create web1 --memory 256M --control "$WORK/A/control.sock" -- -kernel "$GUEST" -append "hot=1%"
"$BNF" vm start web1 --control "$WORK/A/control.sock"
RAM=$("$BNF" vm status web1 --json --control "$WORK/A/control.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ram_file"])')
for _ in $(seq 300); do [ "$(od -An -tu4 -j $((0x80000 + 8)) -N4 "$RAM" | tr -d ' ')" = 2 ] && break; sleep 0.1; done
echo "== migrate A -> B (B holds no snapshot of web1: full)"
"$BNF" migrate web1 "$URI_B" --control "$WORK/A/control.sock"
echo "== A kept its departure image as web1's retained snapshot:"
"$BNF" snapshot list --state-dir "$WORK/A"
"$CHECK" "$WORK/A/snapshots/web1/image" >/dev/null && echo "   ... and the guest's memory in it checks out page by page"
sleep 2
echo "== migrate B -> A (A kept a retained snapshot: only pages changed since the VM arrived on B travel)"
"$BNF" migrate web1 "$URI_A" --control "$WORK/B/control.sock"
"$BNF" vm list --control "$WORK/A/control.sock"
python3 tests/e2e/qmp.py "$WORK/A/vms/web1/qmp.sock" stop >/dev/null
"$CHECK" "$("$BNF" vm status web1 --json --control "$WORK/A/control.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ram_file"])')" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("guest memory on A after the round trip:", "intact" if r["intact"] else "CORRUPT", "-", r["pages_checked"], "pages checked,", r["passes"], "hot-set passes so far")'
"$BNF" vm stop web1 --control "$WORK/A/control.sock" >/dev/null

echo "== image push into a daemon"
"$BNF" daemon --state-dir "$WORK/state" --listen bnf+tcp:127.0.0.1:0 --peer-key "$KEY" 2>"$WORK/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do
  URI=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$WORK/daemon.log")
  [ -n "$URI" ] && break
  sleep 0.05
done
echo "== daemon listening on $URI, state in $WORK/state"
"$BNF" image make "$WORK/vm.img" --size 256M --zero-percent 10
echo "== first push (the daemon holds no base: full)"
"$BNF" image push "$WORK/vm.img" --peer-key "$KEY" --name demo-vm --to "$URI"
"$BNF" image mutate "$WORK/vm.img" --percent 1 --bitmap-out "$WORK/dirty.bm"
echo "== second push with the dirty bitmap (incremental: only changed pages travel)"
"$BNF" image push "$WORK/vm.img" --peer-key "$KEY" --name demo-vm --to "$URI" --dirty-bitmap "$WORK/dirty.bm"
echo "== the retained snapshot"
"$BNF" snapshot list --state-dir "$WORK/state"
"$BNF" snapshot verify --state-dir "$WORK/state" demo-vm
cmp "$WORK/vm.img" "$WORK/state/snapshots/demo-vm/image" && echo "snapshot is byte-identical to the pushed image"
