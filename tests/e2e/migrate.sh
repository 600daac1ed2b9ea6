#!/usr/bin/env bash
# Back-and-forth live migration of a real QEMU VM between two bnf daemons on one
# machine (two state directories, loopback): A -> B (full), B -> A and A -> B
# (incremental: only pages changed since arrival). The guest is the
# memory-checking test guest (tests/guest) rewriting a 1% hot set: after every
# trip its memory is checked page by page on the destination and in the source's
# retained snapshot, and the digest roots of both sides must agree. Failed
# migrations leave the VM running.
set -euo pipefail
BNF=${1:?usage: migrate.sh BNF GUEST_ELF GUEST_CHECK}
GUEST=${2:?}
GUEST_CHECK=${3:?}
if ! command -v qemu-system-x86_64 >/dev/null; then echo "skip: no qemu-system-x86_64"; exit 77; fi
WORK=$(mktemp -d /dev/shm/bnf-mig-XXXXXX)
source "$(dirname "$0")/guest_lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
trap cleanup EXIT
cd "$WORK"

start_daemon A
start_daemon B

vm A vm create web1 --memory 64M -- -kernel "$GUEST" -append "hot=1%" >/dev/null
vm A vm start web1 >/dev/null
wait_guest_running "$(field "$(vm A vm status web1 --json)" ram_file)"
check "VM runs on A" test "$(state_on A)" = running
check "the guest populated its memory and rewrites its hot set" guest_running A
check "the guest's memory checks out on A" guest_intact A
hot=$(python3 -c "import json; print(json.load(open('$WORK/check-A.json'))['hot_pages'])")

# `written`: the downtime compares what the guest wrote, the rest follows.
out=$(vm A migrate web1 "$URI_B" --json --switchover-check written)
echo "first trip: $out"
check "A -> B is a full trip" test "$(field "$out" mode)" = full
check "... direct: A's QEMU streamed to B's daemon itself" test "$(field "$out" direct)" = True
# Where `bnf doctor` finds QEMU's writes trackable (Linux 6.7+, ptrace allowed),
# the check must have used the tracker; elsewhere it must say why not.
tracking=$("$BNF" doctor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["QEMU write tracking"]["ok"])')
expected_tracker() { if [ "$tracking" = True ]; then test "$1" = uffd-wp; else case "$1" in "none: "?*) ;; *) false ;; esac; fi; }
# A direct trip tracks from before `migrate`: its downtime hashes only what
# the guest wrote (and what was hashed ahead); the rest follows the settle.
check "... the switchover check tracked QEMU's writes where this host can, else says why (doctor: $tracking)" \
  expected_tracker "$(field "$out" write_tracker)"
check "... and hashed only the written pages in the downtime, where it tracked" \
  test "$tracking" != True -o "$(field "$out" pages_hashed_at_stop)" -lt "$(field "$out" pages_total)"
check "... and what it compared after the downtime matched" test "$(field "$out" destination_differs)" = False
after_trip A B
check "A shows the VM away" test "$(state_on A)" = away

sleep 1
# Relayed trips track QEMU's writes only when asked: this one is.
out=$(vm B migrate web1 "$URI_A" --json --write-tracker on)
echo "back trip: $out"
check "B -> A is incremental" test "$(field "$out" mode)" = incremental
# The source QEMU ends its stream only after A's QEMU said on its return path
# that it loaded everything: at least that message (MIG_RP_MSG_SHUT) came back.
check "A's QEMU's return path reached B's QEMU" test "$(field "$out" return_path_bytes)" -gt 0
check "... the switchover check hashed only what QEMU wrote in the trip again (where it can track that)" \
  test "$tracking" != True -o "$(field "$out" pages_hashed_at_stop)" -lt "$(field "$out" pages_total)"
check "... and said how it knew" expected_tracker "$(field "$out" write_tracker)"
sent=$(field "$out" pages_sent)
passes=$(field "$out" rounds)
# QEMU may make dozens of passes a millisecond long here (it re-decides to stop
# only every 100 ms); the hold-back still sends each hot page once.
echo "QEMU made $passes passes"
check "back trip sends the hot set ($hot pages) plus at most 64 pages" test "$sent" -le $((hot + 64))
check "back trip wire bytes <= 1.1 x hot-set bytes + 1 MiB" \
  python3 -c "import sys; sys.exit(0 if $(field "$out" wire_bytes) <= 1.1 * $hot * 4096 + 2**20 else 1)"
after_trip B A

out=$(vm A migrate web1 "$URI_B" --json)
check "A -> B again is incremental" test "$(field "$out" mode)" = incremental
check "VM runs on B again" test "$(field "$(vm B vm status web1 --json)" state)" = running
check "epochs advance on both sides" test "$(field "$out" epoch)" -eq 3
check "the guest's memory checks out on B" guest_intact B

# A's retained snapshot changed behind bnf's back: not reused, the trip is full.
img_a=$(readlink -f "$WORK/A/snapshots/web1/image")
printf 'tampered' | dd of="$img_a" bs=1 seek=$((4096 * 5000)) conv=notrunc status=none
sleep 1
out=$(vm B migrate web1 "$URI_A" --json)
check "a tampered base is not reused: full trip" test "$(field "$out" mode)" = full
fallback=$(field "$out" fallback); echo "   fallback: $fallback"
check "... and the fallback says why" grep -q "changed behind" <<<"$fallback"
check "A arrived with exactly B's departure image" test "$(root_of A)" = "$(root_of B)"
check "the guest's memory checks out on A" guest_intact A
out=$(vm A migrate web1 "$URI_B" --json)
check "and the next trip back is incremental again" test "$(field "$out" mode)" = incremental

# Failures leave the VM running where it is.
set +e; vm B migrate web1 bnf+tcp:127.0.0.1:1 >/dev/null 2>err.txt; rc=$?; set -e
check "unreachable destination: non-zero exit" test "$rc" -ne 0
check "unreachable destination: error names it" grep -q "refused" err.txt
check "... VM still runs on B" test "$(field "$(vm B vm status web1 --json)" state)" = running
set +e; vm B migrate web1 "$URI_B" >/dev/null 2>err.txt; rc=$?; set -e
check "destination where it already runs: refused" test "$rc" -ne 0
check "... naming the cause" grep -Eq "already runs|being migrated" err.txt
check "... VM still runs on B" test "$(field "$(vm B vm status web1 --json)" state)" = running
set +e; vm A vm create ../bad --memory 64M >/dev/null 2>err.txt; rc=$?; set -e
check "bad VM name refused" grep -q "bad snapshot name" err.txt

# Host B dies with the VM on it: A restarts the VM from its retained snapshot.
b_dies_a_restores
check "the restored snapshot is live, not a base any more" bash -c "! '$BNF' snapshot verify --state-dir '$WORK/A' web1 2>/dev/null"
vm A vm stop web1 >/dev/null
check "VM stops" test "$(field "$(vm A vm status web1 --json)" state)" = stopped
checks_done
