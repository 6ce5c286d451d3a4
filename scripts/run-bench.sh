#!/bin/sh
# Run every benchmark: C programs built from tests/bench/bench_*.c and the
# scripts tests/bench/bench_*.sh. Each prints its figures and the ratio to
# the limit it is measured against; none of them fails on a figure.
BUILD=${BUILD:-build}
top=$(pwd)
export BATON_SRC="$top" BATON_BIN="$top/$BUILD/baton" BATON_PLUGINS="$top/$BUILD/plugins" BATON_BUILD="$top/$BUILD"
for b in "$@" tests/bench/bench_*.sh; do
    [ -e "$b" ] || continue
    echo "== $b"
    case "$b" in *.sh) sh "$b" ;; *) "$b" ;; esac || echo "bench: $b exited $?"
done
