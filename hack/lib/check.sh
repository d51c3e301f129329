# shellcheck shell=bash
# check.sh: the PASS/FAIL lines of the hack/*-selftest.sh scripts. Sourced; they print the totals.
PASSED=0
FAILED=0

# check DESCRIPTION CMD...: one PASS or FAIL line for CMD's status, counted in PASSED or FAILED.
check() {
  local what=$1
  shift
  if "$@"; then
    echo "  PASS  $what"
    PASSED=$((PASSED + 1))
  else
    echo "  FAIL  $what"
    FAILED=$((FAILED + 1))
  fi
}
