#!/bin/sh
# The core is a stack of folders, each named for the stage it owns; a file
# may include its own folder's headers and those of folders below it, never
# above. Prints every include that breaks the order (file:line: the line)
# and exits 1. Plugins and the SDK include no core header at all.
#   usage: check-layers.sh [DIR]   (DIR: the tree to read, default .)
cd "${1:-.}" || exit 2
ORDER="base config schema lang store plugin scope delivery campaign journey hostapi daemon cli"
rank() {
    i=0
    for f in $ORDER; do
        [ "$f" = "$1" ] && { echo $i; return; }
        i=$((i + 1))
    done
    echo -1
}
bad=0
for file in $(find core -name '*.[ch]' | sort); do
    rel=${file#core/}
    case "$rel" in
    */*) folder=${rel%%/*} ;;
    main.c) folder=main ;;
    *) echo "$file: a core file outside the stage folders ($ORDER)"; bad=1; continue ;;
    esac
    if [ "$folder" = main ]; then from=99; else from=$(rank "$folder"); fi
    if [ "$from" -lt 0 ]; then
        echo "$file: folder core/$folder is not in the stage order ($ORDER)"
        bad=1
        continue
    fi
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" | while IFS= read -r line; do
        inc=$(printf '%s\n' "$line" | sed 's/^[0-9]*:[^"]*"\([^"]*\)".*/\1/')
        case "$inc" in
        */*) to=$(rank "${inc%%/*}") ;;
        *) to=-1 ;;
        esac
        if [ "$to" -lt 0 ]; then
            echo "$file:${line%%:*}: ${line#*:}: not a path into a stage folder"
            echo x >&3
        elif [ "$to" -gt "$from" ]; then
            echo "$file:${line%%:*}: ${line#*:}: core/$folder may not use core/${inc%%/*} (above it)"
            echo x >&3
        fi
    done 3>>"${TMPDIR:-/tmp}/check-layers.$$"
done
for file in $(find plugins sdk -name '*.[ch]' | sort); do
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" | while IFS= read -r line; do
        inc=$(printf '%s\n' "$line" | sed 's/^[0-9]*:[^"]*"\([^"]*\)".*/\1/')
        # a plugin's own headers sit beside it
        [ -f "$(dirname "$file")/$inc" ] && continue
        echo "$file:${line%%:*}: ${line#*:}: plugins reach the host only through <baton/...>"
        echo x >&3
    done 3>>"${TMPDIR:-/tmp}/check-layers.$$"
done
if [ -s "${TMPDIR:-/tmp}/check-layers.$$" ]; then bad=1; fi
rm -f "${TMPDIR:-/tmp}/check-layers.$$"
if [ $bad -ne 0 ]; then
    echo "check-layers: the include order is broken (core/ stages, lowest first: $ORDER)"
    exit 1
fi
exit 0
