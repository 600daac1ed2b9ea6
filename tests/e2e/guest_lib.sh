# Helpers shared by the VM end-to-end tests (sourced). Expects WORK (the test's
# scratch dir, holding HOST/control.sock per daemon) and GUEST_CHECK.
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
QMP="python3 $(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/qmp.py"
vm() { local host=$1; shift; BNF_CONTROL="$WORK/$host/control.sock" "$BNF" "$@"; }
state_on() { field "$(vm "$1" vm status web1 --json)" state; }
# Word N of the test guest's status block in RAM file $1 (tests/guest/guest_layout.h).
guest_word() { od -An -tu4 -j $((0x80000 + 4 * $2)) -N4 "$1" | tr -d ' '; }
wait_guest_running() { for _ in $(seq 100); do [ "$(guest_word "$1" 2)" = 2 ] && return 0; sleep 0.1; done; return 1; }
# The guest makes progress: its completed-pass counter moves in RAM file $1.
guest_progresses() { local before; before=$(guest_word "$1" 8); sleep 0.3; [ "$(guest_word "$1" 8)" -gt "$before" ]; }
guest_running() { guest_progresses "$(field "$(vm "$1" vm status web1 --json)" ram_file)"; }
# The guest's memory on HOST, checked page by page with the guest paused, then resumed.
guest_intact() {
  local st; st=$(vm "$1" vm status web1 --json)
  $QMP "$(field "$st" qmp_socket)" stop >/dev/null
  "$GUEST_CHECK" "$(field "$st" ram_file)" >"$WORK/check-$1.json"; local rc=$?
  $QMP "$(field "$st" qmp_socket)" cont >/dev/null
  [ $rc -eq 0 ] || cat "$WORK/check-$1.json"
  return $rc
}
