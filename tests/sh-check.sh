# Shared by the shell-script tests (sourced, not run). Each check prints the
# command's output, then PASS/FAIL; `finish` prints Criterion's totals line
# (so the CI summary counts script checks like Criterion tests) and sets the
# exit status. Needs $tmp: a scratch directory the caller made.
passed=0
failed=0

# check NAME PATTERN COMMAND...: the command must succeed and, when PATTERN is
# not empty, print a line matching it.
check() {
    name=$1 pattern=$2
    shift 2
    echo "== $name: $*"
    if "$@" > "$tmp/out" 2>&1 && { [ -z "$pattern" ] || grep -q -- "$pattern" "$tmp/out"; }; then
        sed 's/^/   /' "$tmp/out"
        echo "PASS: $name"
        passed=$((passed + 1))
    else
        sed 's/^/   /' "$tmp/out"
        echo "FAIL: $name${pattern:+ (wanted a line matching '$pattern')}"
        failed=$((failed + 1))
    fi
}

# check_status NAME STATUS PATTERN COMMAND...: the command must exit with
# STATUS and, when PATTERN is not empty, print (on stdout or stderr) a line
# matching it; an exit by signal (a crash) always fails.
check_status() {
    name=$1 want=$2 pattern=$3
    shift 3
    echo "== $name: $*"
    "$@" > "$tmp/out" 2>&1
    got=$?
    sed 's/^/   /' "$tmp/out"
    if [ "$got" -eq "$want" ] && { [ -z "$pattern" ] || grep -q -- "$pattern" "$tmp/out"; }; then
        echo "PASS: $name"
        passed=$((passed + 1))
    else
        echo "FAIL: $name (exit status $got, wanted $want and a line matching '$pattern')"
        failed=$((failed + 1))
    fi
}

finish() {
    echo "[====] Synthesis: Tested: $((passed + failed)) | Passing: $passed | Failing: $failed | Crashing: 0"
    [ "$failed" -eq 0 ]
}
