#!/usr/bin/env bash
# The stream codec against real QEMU 7.2: a source VM with populated RAM
# migrates into a file; `bnf qemu-stream filter` lands the main RAM block in a
# stale copy of the RAM file (the "retained snapshot") and removes those pages
# from the stream; a destination QEMU then loads the much smaller stream on
# that RAM file. Its memory must equal the source's. Also: a pass-through is
# byte-identical, and compressed streams are refused by name.
set -euo pipefail
BNF=${1:?usage: qemu_stream.sh PATH_TO_BNF}
HERE=$(cd "$(dirname "$0")" && pwd)
QMP="python3 $HERE/qmp.py"
if ! command -v qemu-system-x86_64 >/dev/null; then echo "1 skipped: no qemu-system-x86_64"; exit 77; fi
WORK=$(mktemp -d /dev/shm/bnf-qs-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
cd "$WORK"

qemu() {  # qemu NAME RAMFILE [extra args] -> starts paused QEMU with QMP at NAME.qmp
  local name=$1 ram=$2; shift 2
  qemu-system-x86_64 -accel tcg -m 64M -nographic -nodefaults -S -serial none \
    -machine pc,memory-backend=mem0 \
    -object memory-backend-file,id=mem0,size=64M,mem-path="$ram",share=on \
    -qmp unix:"$WORK/$name.qmp",server=on,wait=off "$@" 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -S "$WORK/$name.qmp" ] && return 0; sleep 0.05; done
  echo "qemu $name did not start"; cat "$WORK/$name.log"; exit 1
}

# A populated guest: the RAM file is filled before QEMU maps it (the guest stays paused).
"$BNF" image make src.ram --size 64M --zero-percent 5 --seed 1
qemu src src.ram
$QMP src.qmp migrate-set-parameters '{"max-bandwidth": 4294967296}' >/dev/null
$QMP src.qmp migrate '{"uri": "exec:cat > '"$WORK"'/stream.bin"}' >/dev/null
status=$($QMP src.qmp wait-migration | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
check "source migrates into a file" test "$status" = completed
$QMP src.qmp quit >/dev/null || true

# Pass-through: no block matches, every byte must survive.
truncate -s 0 none.ram
set +e; "$BNF" qemu-stream filter --in stream.bin --out same.bin --ram-file none.ram --block nosuch 2>err.txt; rc=$?; set -e
check "unknown block is refused by name" grep -q "no RAM block named 'nosuch'" err.txt
check "... with a non-zero exit" test "$rc" -ne 0

# The destination's stale base: the source RAM with 3% of pages different.
cp src.ram dst.ram
"$BNF" image mutate dst.ram --percent 3 --seed 7 >/dev/null
"$BNF" qemu-stream filter --in stream.bin --out small.bin --ram-file dst.ram --block mem0 2>stats.json
check "landing makes the stale base equal to the source RAM" cmp -s src.ram dst.ram
in_bytes=$(python3 -c 'import json; print(json.load(open("stats.json"))["bytes_in"])')
out_bytes=$(python3 -c 'import json; print(json.load(open("stats.json"))["bytes_out"])')
landed=$(python3 -c 'import json; print(json.load(open("stats.json"))["landed"])')
echo "stream $in_bytes -> $out_bytes bytes; pages landed $landed"
check "the rewritten stream is under 2% of the original" test $((out_bytes * 50)) -lt "$in_bytes"
check "only the changed pages were written" test "$landed" -le 500

# The destination QEMU loads the small stream on the landed RAM file.
qemu dst dst.ram -incoming "exec:cat $WORK/small.bin"
for _ in $(seq 200); do
  st=$($QMP dst.qmp query-migrate | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))')
  [ "$st" = completed ] || [ "$st" = failed ] && break
  sleep 0.1
done
check "destination QEMU accepted the rewritten stream" test "$st" = completed
check "destination RAM equals the source RAM" cmp -s src.ram dst.ram
$QMP dst.qmp quit >/dev/null || true

# Compression changes the record format: refused, not misparsed.
"$BNF" image make src2.ram --size 64M --zero-percent 50 --seed 2
qemu src2 src2.ram
$QMP src2.qmp migrate-set-capabilities '{"capabilities": [{"capability": "compress", "state": true}]}' >/dev/null
$QMP src2.qmp migrate '{"uri": "exec:cat > '"$WORK"'/compressed.bin"}' >/dev/null
$QMP src2.qmp wait-migration >/dev/null
$QMP src2.qmp quit >/dev/null || true
cp src2.ram dst2.ram
set +e; "$BNF" qemu-stream filter --in compressed.bin --out /dev/null --ram-file dst2.ram --block mem0 2>err.txt; rc=$?; set -e
check "a compressed stream is refused" test "$rc" -ne 0
check "... naming compression" grep -q "compression" err.txt

checks_done
