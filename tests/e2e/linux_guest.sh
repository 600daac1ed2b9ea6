#!/usr/bin/env bash
# A real Linux guest (Debian cloud kernel, busybox initramfs: tests/guest/linux)
# that fills memory with checksummed data and keeps rewriting files, migrated
# A -> B -> A between two daemons: it keeps running after each trip, every
# checksum it re-verifies stays good, and the way back is incremental.
set -euo pipefail
BNF=${1:?usage: linux_guest.sh BNF LINUX_GUEST_DIR}
LINUX=${2:?}
if ! command -v qemu-system-x86_64 >/dev/null; then echo "skip: no qemu-system-x86_64"; exit 77; fi
if [ ! -f "$LINUX/vmlinuz" ]; then echo "skip: no Linux test guest built (linux-image-cloud-amd64 missing)"; exit 77; fi
WORK=$(mktemp -d /dev/shm/bnf-linux-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "$WORK" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
GUEST_CHECK=/bin/false
source "$(dirname "$0")/guest_lib.sh"
cd "$WORK"
for h in A B; do
  "$BNF" daemon --state-dir "$WORK/$h" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" 2>"$WORK/$h.log" &
  PIDS+=($!)
done
for h in A B; do
  for _ in $(seq 100); do [ -S "$WORK/$h/control.sock" ] && grep -q "listening on" "$WORK/$h.log" && break; sleep 0.05; done
done
URI_A=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' A.log)
URI_B=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' B.log)
serial_of() { field "$(vm "$1" vm status web1 --json)" serial_log; }
ticks() { grep -c "tick [0-9]* ok" "$(serial_of "$1")" 2>/dev/null || true; }
keeps_ticking() { local b; b=$(ticks "$1"); sleep 2.5; [ "$(ticks "$1")" -gt "$b" ]; }
no_corruption() { ! grep -q CORRUPT "$WORK"/*/vms/web1/serial.log; }
# MiB of host memory (tmpfs) the retained snapshot on host $1 takes.
snapshot_mib() { local f; f=$(ls "$WORK/$1"/snapshots/web1/image.*); echo $(( $(stat -c '%b * %B' "$f") / 1048576 )); }

vm A vm create web1 --memory 256M -- -kernel "$LINUX/vmlinuz" -initrd "$LINUX/initrd.cpio.gz" \
  -append "console=ttyS0 quiet bnf.fill=64 bnf.work=files" >/dev/null
vm A vm start web1 >/dev/null
for _ in $(seq 600); do grep -q "bnf-linux: ready" "$(serial_of A)" 2>/dev/null && break; sleep 0.1; done
check "the Linux guest boots and fills 64 MiB" grep -q "bnf-linux: ready" "$(serial_of A)"
out=$(vm A migrate web1 "$URI_B" --json)
echo "first trip: $out"
check "A -> B (full)" test "$(field "$out" mode)" = full
check "... B resumed with the image A stopped with (digest roots)" test "$(field "$out" destination_differs)" = False
check "the guest keeps working on B" keeps_ticking B
# QEMU's pass reads (so, on tmpfs, allocates) every page; the guest touched ~150 MiB of 256.
echo "A's retained snapshot takes $(snapshot_mib A) MiB of 256 ($(field "$out" snapshot_bytes_released) bytes released)"
check "... A's retained snapshot gave its zero pages back" test "$(snapshot_mib A)" -lt 200
sleep 2
out=$(vm B migrate web1 "$URI_A" --json)
echo "back trip: $out"
echo "back trip: pages sent $(field "$out" pages_sent) of $(field "$out" pages_total), $(field "$out" wire_bytes) bytes"
check "B -> A is incremental" test "$(field "$out" mode)" = incremental
check "... and sends under a quarter of the pages" test "$(field "$out" pages_sent)" -lt 16384
check "the guest keeps working on A" keeps_ticking A
echo "B's retained snapshot takes $(snapshot_mib B) MiB of 256"
check "... so did B's" test "$(snapshot_mib B)" -lt 200
check "every checksum the guest re-verified was good" no_corruption
checks_done
