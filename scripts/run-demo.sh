#!/usr/bin/env bash
# The main job on a local default: install, build, then on one machine
#  1. back-and-forth live migration of a real QEMU VM between two local daemons
#     (hosts A and B): A -> B (full), B -> A (only pages changed since arrival);
#  2. an image push into a daemon: full, then incremental after 1% changed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
BNF=$PWD/build/bnf
WORK=$(mktemp -d /dev/shm/bnf-demo-XXXXXX)
export XDG_STATE_HOME=$WORK/xdg
trap 'kill ${DAEMON:-} ${DA:-} ${DB:-} 2>/dev/null; wait 2>/dev/null; pkill -f "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

wait_listen() { for _ in $(seq 100); do sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$1" | grep . && return; sleep 0.05; done; }
echo "== two daemons as two hosts"
"$BNF" daemon --state-dir "$WORK/A" --listen bnf+tcp:127.0.0.1:0 2>"$WORK/A.log" & DA=$!
"$BNF" daemon --state-dir "$WORK/B" --listen bnf+tcp:127.0.0.1:0 2>"$WORK/B.log" & DB=$!
URI_A=$(wait_listen "$WORK/A.log"); URI_B=$(wait_listen "$WORK/B.log")
sleep 0.2
echo "host A: $URI_A, host B: $URI_B"
"$BNF" vm create web1 --memory 256M --control "$WORK/A/control.sock"
RAM=$("$BNF" vm status web1 --json --control "$WORK/A/control.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ram_file"])')
# A long-running VM's memory is populated: fill the RAM file before the guest boots.
"$BNF" image make "$RAM" --size 256M --zero-percent 5
"$BNF" vm start web1 --control "$WORK/A/control.sock"
echo "== migrate A -> B (B holds no snapshot of web1: full)"
"$BNF" migrate web1 "$URI_B" --control "$WORK/A/control.sock"
sleep 2
echo "== migrate B -> A (A kept a retained snapshot: only pages changed since the VM arrived on B travel)"
"$BNF" migrate web1 "$URI_A" --control "$WORK/B/control.sock"
"$BNF" vm list --control "$WORK/A/control.sock"
"$BNF" vm stop web1 --control "$WORK/A/control.sock" >/dev/null

echo "== image push into a daemon"
"$BNF" daemon --state-dir "$WORK/state" --listen bnf+tcp:127.0.0.1:0 2>"$WORK/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do
  URI=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$WORK/daemon.log")
  [ -n "$URI" ] && break
  sleep 0.05
done
echo "== daemon listening on $URI, state in $WORK/state"
"$BNF" image make "$WORK/vm.img" --size 256M --zero-percent 10
echo "== first push (the daemon holds no base: full)"
"$BNF" image push "$WORK/vm.img" --name demo-vm --to "$URI"
"$BNF" image mutate "$WORK/vm.img" --percent 1 --bitmap-out "$WORK/dirty.bm"
echo "== second push with the dirty bitmap (incremental: only changed pages travel)"
"$BNF" image push "$WORK/vm.img" --name demo-vm --to "$URI" --dirty-bitmap "$WORK/dirty.bm"
echo "== the retained snapshot"
"$BNF" snapshot list --state-dir "$WORK/state"
"$BNF" snapshot verify --state-dir "$WORK/state" demo-vm
cmp "$WORK/vm.img" "$WORK/state/snapshots/demo-vm/image" && echo "snapshot is byte-identical to the pushed image"
