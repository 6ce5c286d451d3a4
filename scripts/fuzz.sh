#!/bin/sh
# Build every libFuzzer target tests/fuzz/fuzz_<name>.c with clang
# (-fsanitize=fuzzer,address,undefined) against the core, in build-fuzz/,
# and run each for FUZZ_SECONDS (default 60) on its corpus
# tests/fuzz/corpus/fuzz_<name>/ (seeded from the corpus already there).
# A crash stops with the input saved as build-fuzz/crash-*: copy it to
# tests/fuzz/regressions/<name>-<what>, where test_fuzz_regressions
# replays it forever. FUZZ_TARGETS="fuzz_expr fuzz_template" runs only those.
set -e
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)"; exit 2; }
mkdir -p "$OUT/obj"
PKGS="libconfig jansson sqlite3 libmicrohttpd"  # the Makefile's CORE_PKGS
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Isdk/include -Icore -Itests -DBATON_VERSION=\"fuzz\" $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -ldl -lm -pthread"
# the core (without main) and the support the targets use, once
objs=""
for src in $(find core -name '*.c' ! -path core/main.c | sort) tests/support/fuzz_inputs.c \
           tests/support/expr_fixture.c tests/support/sample_schema.c; do
    obj="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find core tests/support -name '*.h' -newer "$obj" | head -1)" ]; then
        $CC $CFLAGS -c "$src" -o "$obj"
    fi
    objs="$objs $obj"
done
export LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
status=0
for target in tests/fuzz/fuzz_*.c; do
    [ -e "$target" ] || continue
    name=$(basename "$target" .c)
    if [ -n "$FUZZ_TARGETS" ]; then
        case " $FUZZ_TARGETS " in *" $name "*) ;; *) continue ;; esac
    fi
    $CC $CFLAGS -fsanitize=fuzzer "$target" $objs -o "$OUT/$name" $LIBS
    corpus="tests/fuzz/corpus/$name"
    mkdir -p "$corpus" "$OUT/corpus/$name"
    echo "== $name: ${FUZZ_SECONDS}s"
    # new inputs go to build-fuzz/corpus (the tree's corpus stays small and reviewed)
    if ! "$OUT/$name" -max_total_time="$FUZZ_SECONDS" -max_len=1048576 -timeout=10 \
           -rss_limit_mb=2048 -artifact_prefix="$OUT/$name-" -print_final_stats=1 \
           "$OUT/corpus/$name" "$corpus" 2>"$OUT/$name.log"; then
        status=1
        tail -40 "$OUT/$name.log"
        echo "fuzz: $name found a crash: see $OUT/$name-crash-* and add it to tests/fuzz/regressions/"
    else
        grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$OUT/$name.log" | tail -2
    fi
done
exit $status
