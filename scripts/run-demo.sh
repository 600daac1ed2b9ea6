#!/usr/bin/env bash
# The main job on a local default: install, build, start a daemon on loopback,
# push a 256 MiB memory image into it (full), change 1% of its pages, push
# again (incremental), verify the retained snapshot, stop the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
BNF=$PWD/build/bnf
WORK=$(mktemp -d /dev/shm/bnf-demo-XXXXXX)
export XDG_STATE_HOME=$WORK/xdg
trap '[ -n "${DAEMON:-}" ] && kill $DAEMON 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
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
