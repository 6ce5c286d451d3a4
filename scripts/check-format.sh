#!/bin/sh
# Every C file the repository tracks is as clang-format leaves it (the
# repository's .clang-format). Lists the files that are not and exits 1;
# `make format` fixes them.
cd "${1:-.}" || exit 2
command -v clang-format >/dev/null 2>&1 || { echo "check-format: clang-format is not installed"; exit 1; }
files=$(git ls-files 'core/*.[ch]' 'plugins/*.[ch]' 'sdk/*.[ch]' 'tests/*.[ch]' 2>/dev/null)
[ -n "$files" ] || files=$(find core plugins sdk tests -name '*.[ch]')
bad=""
for f in $files; do
    [ -f "$f" ] || continue
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
    echo "check-format: not formatted as .clang-format says (run 'make format'):"
    for f in $bad; do echo "  $f"; done
    exit 1
fi
exit 0
