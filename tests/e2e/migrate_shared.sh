#!/usr/bin/env bash
# Shared mode (`--mode shared`): bnf moves guest RAM itself, from the VM's RAM
# file in rounds of the pages the guest wrote, and QEMU (x-ignore-shared)
# only its small RAM blocks and device state. A -> B (full), B -> A and
# A -> B (incremental) with the memory-checking guest rewriting a 1% hot set,
# checked after every trip on the destination and in the source's retained
# snapshot, the switchover check off (bnf moved every page itself); a back
# trip's round 0 from the tracker armed as the VM arrived, and from a digest
# scan once a daemon restart lost that tracker; a restore
# from a shared trip's snapshot; `--mode auto` falling back to stream mode for
# a VM with a device that writes guest memory behind the tracker, and
# `--mode shared` refusing it with the VM still running.
set -euo pipefail
BNF=${1:?usage: migrate_shared.sh BNF GUEST_ELF GUEST_CHECK}
GUEST=${2:?}
GUEST_CHECK=${3:?}
if ! command -v qemu-system-x86_64 >/dev/null; then echo "skip: no qemu-system-x86_64"; exit 77; fi
if [ "$("$BNF" doctor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["shared mode"]["ok"])')" != True ]; then
  echo "skip: shared mode cannot run here (bnf doctor)"; exit 77
fi
WORK=$(mktemp -d /dev/shm/bnf-shared-XXXXXX)
source "$(dirname "$0")/guest_lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
trap cleanup EXIT
cd "$WORK"

start_daemon A --allow-qemu-arg -device
start_daemon B
shared() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['shared'][sys.argv[2]])" "$1" "$2"; }
shared_trip() {  # shared_trip FROM -> the report (checks what every shared trip says)
  local out=$1
  check "... bnf moved guest RAM (ram_mode shared)" test "$(field "$out" ram_mode)" = shared
  check "... without the switchover check (bnf moved every page itself)" \
    python3 -c "import json,sys; sys.exit('write_tracker' in json.loads(sys.argv[1]))" "$out"
  check "... and the rounds said what stopped them" test -n "$(shared "$out" stopped_by)"
}

vm A vm create web1 --memory 64M -- -kernel "$GUEST" -append "hot=1%" >/dev/null
vm A vm start web1 >/dev/null
wait_guest_running "$(field "$(vm A vm status web1 --json)" ram_file)"
check "the guest populated its memory and rewrites its hot set" guest_running A
hot=$(guest_intact A && python3 -c "import json; print(json.load(open('$WORK/check-A.json'))['hot_pages'])")

out=$(vm A migrate web1 "$URI_B" --json --mode shared)
echo "first trip: $out"
check "A -> B is a full trip" test "$(field "$out" mode)" = full
shared_trip "$out"
check "... whose round 0 is every page A holds" test "$(shared "$out" tracker)" = "full trip"
check "... QEMU's stream carried no page of the RAM file (under 4 MiB forwarded)" \
  test "$(field "$out" stream_bytes_forwarded)" -lt $((4 << 20))
after_trip A B

sleep 1
out=$(vm B migrate web1 "$URI_A" --json --mode shared)
echo "back trip: $out"
check "B -> A is incremental" test "$(field "$out" mode)" = incremental
shared_trip "$out"
check "... round 0 is what the guest wrote since it arrived on B (B's tracker, no scan)" \
  test "$(shared "$out" tracker)" = "since arrival"
sent=$(field "$out" pages_sent)
check "back trip sends the hot set ($hot pages) plus at most 64 pages per round: $sent" \
  test "$sent" -le $((hot + 64 * ($(shared "$out" rounds) + 1)))
check "back trip wire bytes <= 1.1 x sent-page bytes + 2 MiB" \
  python3 -c "import sys; sys.exit(0 if $(field "$out" wire_bytes) <= 1.1 * $sent * 4096 + 2 * 2**20 else 1)"
after_trip B A

out=$(vm A migrate web1 "$URI_B" --json --mode shared)
check "A -> B again is incremental and shared" test "$(field "$out" mode)/$(field "$out" ram_mode)" = incremental/shared
check "... from A's tracker since arrival" test "$(shared "$out" tracker)" = "since arrival"
after_trip A B

# B's daemon restarts while the VM runs there: the tracker armed as the VM
# arrived went with the old daemon, so the way back scans RAM, and says so.
kill -9 "${PIDS[1]}"
start_daemon B
PIDS[1]=${PIDS[-1]}
sleep 1
out=$(vm B migrate web1 "$URI_A" --json --mode shared)
echo "back trip after B's restart: $out"
check "B -> A after B's daemon restarted: incremental and shared" \
  test "$(field "$out" mode)/$(field "$out" ram_mode)" = incremental/shared
check "... round 0 from a digest scan, said so" test "$(shared "$out" tracker)" = "lost, digest scan"
check "... saying why" grep -q "daemon restarted" <<<"$(shared "$out" tracker_lost)"
check "... sending no more than the hot set and 64 pages a round" \
  test "$(field "$out" pages_sent)" -le $((hot + 64 * ($(shared "$out" rounds) + 1)))
after_trip B A
out=$(vm A migrate web1 "$URI_B" --json --mode shared)
check "A -> B once more: shared, from A's tracker" test "$(field "$out" ram_mode)/$(shared "$out" tracker)" = "shared/since arrival"
after_trip A B

# B dies with the VM on it: A restores it from the snapshot a shared trip left
# (its kept stream was made with x-ignore-shared).
b_dies_a_restores
vm A vm stop web1 >/dev/null
start_daemon B

# A device that writes guest memory behind the tracker: auto goes stream, saying why.
vm A vm create web2 --memory 32M -- -kernel "$GUEST" -device virtio-balloon-pci >/dev/null
vm A vm start web2 >/dev/null
set +e; vm A migrate web2 "$URI_B" --mode shared >/dev/null 2>err.txt; rc=$?; set -e
check "--mode shared with a balloon device: refused" test "$rc" -ne 0
check "... naming the device" grep -q "virtio-balloon" err.txt
check "... the VM still runs on A" test "$(field "$(vm A vm status web2 --json)" state)" = running
out=$(vm A migrate web2 "$URI_B" --json --mode auto)
check "--mode auto with a balloon device: stream mode" test "$(field "$out" ram_mode)" = stream
check "... and says why" grep -q "virtio-balloon" <<<"$(field "$out" ram_mode_reason)"
check "... VM runs on B" test "$(field "$(vm B vm status web2 --json)" state)" = running
checks_done
