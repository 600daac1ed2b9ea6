#!/usr/bin/env bash
# Migrations that fail, and what must survive them: the VM keeps running on the
# source with its memory intact (checked page by page by the test guest), no
# snapshot is left torn, the error names the cause, and the next trip works.
# Hosts A and B are two network namespaces joined by a veth link shaped to
# 200 Mbit/s (a 64 MiB trip then lasts long enough to break it on purpose).
# Cases: source daemon stopped and restarted (running QEMU adopted), source
# daemon killed mid-trip, destination daemon killed mid-trip, destination QEMU
# killed mid-trip, link cut mid-trip, destination out of space.
# MODE (stream or shared) is the trips' --mode: in shared mode bnf's rounds are
# what the failures break, and a fallback to stream mode is refused.
set -euo pipefail
BNF=${1:?usage: migrate_failures.sh BNF GUEST_ELF GUEST_CHECK [stream|shared]}
GUEST=${2:?}
GUEST_CHECK=${3:?}
MODE=${4:-stream}
HERE=$(cd "$(dirname "$0")" && pwd)
NETNS="$HERE/../../scripts/netns-link.sh"
if ! command -v qemu-system-x86_64 >/dev/null; then echo "skip: no qemu-system-x86_64"; exit 77; fi
if [ "$MODE" = shared ] &&
  [ "$("$BNF" doctor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["shared mode"]["ok"])')" != True ]; then
  echo "skip: shared mode cannot run here (bnf doctor)"; exit 77
fi
LINK=bnff$$
if ! "$NETNS" up "$LINK" 200mbit 2>/dev/null; then echo "skip: cannot create network namespaces here"; exit 77; fi
WORK=$(mktemp -d /dev/shm/bnf-fail-XXXXXX)
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "$WORK" 2>/dev/null || true
  "$NETNS" down "$LINK"
  umount "$WORK/C" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source "$HERE/guest_lib.sh"
cd "$WORK"
ADDR_A=$("$NETNS" addr "$LINK" a)
ADDR_B=$("$NETNS" addr "$LINK" b)

start_daemon() {  # start_daemon HOST NETNS ADDR
  ip netns exec "$2" "$BNF" daemon --state-dir "$WORK/$1" --listen "bnf+tcp:$3:7070" --peer-timeout 4 --peer-key "$WORK/peer.key" \
    2>>"$WORK/$1.log" &
  PID[$1]=$!
  for _ in $(seq 100); do [ -S "$WORK/$1/control.sock" ] && grep -q "listening on" "$WORK/$1.log" && return 0; sleep 0.05; done
  echo "daemon $1 did not start"; cat "$WORK/$1.log"; exit 1
}
restart_daemon() { : >"$WORK/$1.log"; rm -f "$WORK/$1/control.sock"; start_daemon "$@"; }
no_snapshots() { [ -z "$("$BNF" snapshot list --state-dir "$WORK/$1" 2>/dev/null | grep web1 || true)" ]; }
# migrate_broken HOW: starts A -> B, breaks it with HOW after 1 s, returns migrate's exit code.
migrate_broken() {
  vm A migrate web1 "bnf+tcp:$ADDR_B:7070" --mode "$MODE" >out.txt 2>err.txt &
  local m=$!
  sleep 1
  "$@"
  local rc=0
  wait "$m" || rc=$?
  echo "   error: $(cat err.txt)"
  if grep -q "shared mode cannot run" err.txt; then echo "FAIL: the trip never ran in shared mode"; exit 1; fi
  return $rc
}

start_daemon A "$LINK-a" "$ADDR_A"
start_daemon B "$LINK-b" "$ADDR_B"
vm A vm create web1 --memory 64M -- -kernel "$GUEST" -append "hot=1%" >/dev/null
vm A vm start web1 >/dev/null
RAM_A=$(field "$(vm A vm status web1 --json)" ram_file)
wait_guest_running "$RAM_A"
QEMU_A=$(field "$(vm A vm status web1 --json)" qemu_pid)

echo "# source daemon stopped and restarted"
kill -TERM "${PID[A]}"; wait "${PID[A]}" || true
check "the daemon stopping leaves the VM running" guest_progresses "$RAM_A"
restart_daemon A "$LINK-a" "$ADDR_A"
check "the restarted daemon adopts the running QEMU" test "$(field "$(vm A vm status web1 --json)" qemu_pid)" = "$QEMU_A"
check "... and reports it running" test "$(state_on A)" = running

echo "# source daemon killed mid-trip"
set +e; migrate_broken kill -9 "${PID[A]}"; rc=$?; set -e
check "migrate fails" test "$rc" -ne 0
check "the VM keeps running on A" guest_progresses "$RAM_A"
restart_daemon A "$LINK-a" "$ADDR_A"
check "the restarted daemon finds it running" test "$(state_on A)" = running
check "its memory is intact" guest_intact A
sleep 5  # B gives the dead peer up (peer timeout 4 s)
check "B keeps no snapshot from the broken trip" no_snapshots B

echo "# destination daemon killed mid-trip"
set +e; migrate_broken kill -9 "${PID[B]}"; rc=$?; set -e
check "migrate fails" test "$rc" -ne 0
check "the error says the connection was lost" grep -Eqi "connection to .* lost" err.txt
check "the VM keeps running on A" test "$(state_on A)" = running
check "its memory is intact" guest_intact A
restart_daemon B "$LINK-b" "$ADDR_B"
check "B recovers with no snapshot left torn" no_snapshots B

echo "# destination QEMU killed mid-trip"
kill_dest_qemu() { pkill -9 -f "qemu-system.*$WORK/B/.*-incoming" ; }
set +e; migrate_broken kill_dest_qemu; rc=$?; set -e
check "migrate fails" test "$rc" -ne 0
check "the error names the destination QEMU" grep -qi "destination QEMU" err.txt
check "the VM keeps running on A" test "$(state_on A)" = running
check "its memory is intact" guest_intact A

echo "# link cut mid-trip"
t0=$(date +%s)
set +e; migrate_broken "$NETNS" cut "$LINK"; rc=$?; set -e
check "migrate fails" test "$rc" -ne 0
check "within the peer timeout and some margin" test $(( $(date +%s) - t0 )) -lt 30
check "the error says the peer is out of reach" grep -Eqi "timed out|no route|unreachable" err.txt
check "the VM keeps running on A" test "$(state_on A)" = running
check "its memory is intact" guest_intact A
"$NETNS" heal "$LINK"
sleep 5

echo "# after all that, the trip works"
# --switchover-check full: every page compared before the VM resumes on B.
out=$(vm A migrate web1 "bnf+tcp:$ADDR_B:7070" --json --switchover-check full --mode "$MODE")
check "A -> B completes (full)" test "$(field "$out" mode)" = full
if [ "$MODE" = shared ]; then
  check "... in shared mode" test "$(field "$out" ram_mode)" = shared
else
  check "... direct, every page compared in the downtime" \
    test "$(field "$out" direct)" = True -a "$(field "$out" pages_hashed_after_settle)" = 0
fi
check "the guest's memory checks out on B" guest_intact B
check "A's retained snapshot verifies" "$BNF" snapshot verify --state-dir "$WORK/A" web1

echo "# a destination holding another peer key"
ip netns exec "$LINK-b" "$BNF" daemon --state-dir "$WORK/D" --listen bnf+tcp:127.0.0.1:7072 2>"$WORK/D.log" &
PID[D]=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/D.log" && break; sleep 0.05; done
set +e; vm B migrate web1 bnf+tcp:127.0.0.1:7072 >/dev/null 2>err.txt; rc=$?; set -e
echo "   error: $(cat err.txt)"
check "migrate to a host with another peer key fails" test "$rc" -ne 0
check "the error says the keys differ, on one line" test "$(grep -c "peer keys differ" err.txt)" -eq 1 -a "$(wc -l <err.txt)" -eq 1
check "the VM keeps running on B" test "$(state_on B)" = running
check "D logged whom it refused" grep -q "refused: peer: peer authentication failed" "$WORK/D.log"
check "D holds no VM and no snapshot" no_snapshots D
kill "${PID[D]}"

echo "# destination out of space"
mkdir -p "$WORK/C"
mount -t tmpfs -o size=24m tmpfs "$WORK/C"
ip netns exec "$LINK-b" "$BNF" daemon --state-dir "$WORK/C" --listen bnf+tcp:127.0.0.1:7071 \
  --peer-key "$WORK/peer.key" 2>"$WORK/C.log" &
PID[C]=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/C.log" && break; sleep 0.05; done
set +e; vm B migrate web1 bnf+tcp:127.0.0.1:7071 --mode "$MODE" >/dev/null 2>err.txt; rc=$?; set -e
echo "   error: $(cat err.txt)"
check "migrate to a full destination fails" test "$rc" -ne 0
check "the error names the cause" grep -qi "space" err.txt
check "the VM keeps running on B" test "$(state_on B)" = running
check "its memory is intact" guest_intact B
check "C keeps no snapshot" no_snapshots C
check "C's space is given back" test "$(df --output=used -k "$WORK/C" | tail -1)" -lt 2048
checks_done
