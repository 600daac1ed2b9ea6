# The end-to-end tests' checks (sourced): `check NAME CONDITION...` prints
# ok/FAIL and counts; `checks_done LABEL` prints the tally and fails the
# script if any check failed.
pass=0
fail=0
check() {
  local name=$1; shift
  if "$@"; then echo "ok   - $name"; pass=$((pass + 1)); else echo "FAIL - $name"; fail=$((fail + 1)); fi
}
checks_done() { echo "${1:-}$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
