# Two (or more) bnf daemons on loopback for the VM end-to-end tests (sourced
# after guest_lib.sh). Expects BNF and WORK; cleanup() is the test's EXIT trap.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
start_daemon() {  # start_daemon NAME [ARGS...] -> URI_NAME
  local name=$1; shift
  "$BNF" daemon --state-dir "$WORK/$name" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" "$@" \
    2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    local uri
    uri=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$WORK/$name.log")
    if [ -n "$uri" ] && [ -S "$WORK/$name/control.sock" ]; then eval "URI_$name=$uri"; return 0; fi
    sleep 0.05
  done
  echo "daemon $name did not start"; cat "$WORK/$name.log"; exit 1
}
root_of() { "$BNF" snapshot show --state-dir "$WORK/$1" web1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])'; }
retained_intact() { "$GUEST_CHECK" "$WORK/$1/snapshots/web1/image" >"check-$1-retained.json"; }
# What every completed trip FROM -> TO must leave behind.
after_trip() {
  check "VM runs on $2" test "$(state_on "$2")" = running
  check "$1's retained snapshot verifies" "$BNF" snapshot verify --state-dir "$1" web1
  check "$2 arrived with exactly $1's departure image" test "$(root_of "$1")" = "$(root_of "$2")"
  check "the guest's memory checks out on $2" guest_intact "$2"
  check "$1's retained snapshot holds the guest intact at switchover" retained_intact "$1"
  check "the guest keeps running on $2" guest_running "$2"
}
# Host B (the second daemon) dies with the VM on it: A restarts the VM from
# its retained snapshot, and the guest is as it was at switchover.
b_dies_a_restores() {
  local qemu_b; qemu_b=$(field "$(vm B vm status web1 --json)" qemu_pid)
  kill -9 "${PIDS[1]}" "$qemu_b"
  local out; out=$(vm A restore web1 --json)
  check "restore on A after B died: VM runs on A" test "$(field "$out" state)" = running
  check "the restored guest's memory checks out" guest_intact A
  check "the restored guest resumes rewriting its hot set" guest_running A
}
