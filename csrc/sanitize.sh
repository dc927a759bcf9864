#!/usr/bin/env bash
# Build every csrc/tests/test_*.c together with every csrc/*.c under AddressSanitizer
# and UndefinedBehaviorSanitizer (any report is fatal) and run it. Exits non-zero on
# a build failure, a failed check or a sanitizer report. Usage: csrc/sanitize.sh [CC]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cc="${1:-${CC:-cc}}"
out="$(mktemp -d "${TMPDIR:-/tmp}/fastsample-sanitize.XXXXXX")"
trap 'rm -rf "$out"' EXIT

flags=(-std=c99 -g -O1 -fno-omit-frame-pointer -fno-math-errno -fno-trapping-math
       -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=all
       -I"$here")
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

shopt -s nullglob
tests=("$here"/tests/test_*.c)
if [ "${#tests[@]}" -eq 0 ]; then
    echo "sanitize: no tests in $here/tests" >&2
    exit 1
fi
for t in "${tests[@]}"; do
    name="$(basename "$t" .c)"
    echo "== sanitize: building $name"
    "$cc" "${flags[@]}" "$here"/*.c "$t" -lm -o "$out/$name"
    echo "== sanitize: running $name"
    "$out/$name"
done
echo "== sanitize: ${#tests[@]} test program(s) clean"
