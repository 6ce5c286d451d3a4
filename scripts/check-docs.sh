#!/bin/sh
# The user's reference stays whole (run by make test):
#   - every relative link in README.md and docs/*.md names a file that
#     exists, and a #section that is a heading of that file; docs/README.md
#     links to every page;
#   - every command `baton --help` lists has a "## baton COMMAND" section
#     in docs/cli.md;
#   - every campaign activity type (the core's and those of the activity
#     plugins) has its section or row in docs/campaigns.md;
#   - the settings tables of the bundled plugins are what
#     `baton plugins --describe` prints (scripts/docs-keys.sh);
#   - what users get (README.md, docs/, conf/, the SDK) names no file they
#     do not have (the project's internal FORMATS.md, DESIGN.md);
#   - the first example of docs/campaigns.md plans, and that of
#     docs/journeys.md runs, on a copy of conf/ with sample data.
set -eu
BUILD=${1:-build}
BATON=$BUILD/baton
[ -x "$BATON" ] || { echo "check-docs: $BATON not built" >&2; exit 1; }
status=0
fail() { echo "check-docs: $*" >&2; status=1; }

# GitHub's anchors: lower case, punctuation dropped, spaces as '-'
anchors() {
    awk '/^```/ { code = !code; next }
         !code && /^#+ / { sub(/^#+ +/, ""); s = tolower($0)
                           gsub(/[^a-z0-9 _-]/, "", s); gsub(/ /, "-", s); print s }' "$1"
}

for f in README.md docs/*.md; do
    dir=$(dirname "$f")
    links=$(awk '/^```/ { code = !code; next }
                 !code { line = $0
                         while (match(line, /\]\([^) ]+\)/)) {
                             print substr(line, RSTART + 2, RLENGTH - 3)
                             line = substr(line, RSTART + RLENGTH) } }' "$f")
    for l in $links; do
        case $l in http://* | https://* | mailto:*) continue ;; esac
        target=${l%%#*}
        anchor=
        case $l in *'#'*) anchor=${l#*#} ;; esac
        if [ -z "$target" ]; then
            path=$f
        else
            path=$dir/$target
            if [ ! -e "$path" ]; then
                fail "$f: link '$l': no file $path"
                continue
            fi
        fi
        if [ -n "$anchor" ]; then
            case $path in
            *.md) anchors "$path" | grep -qx -- "$anchor" ||
                    fail "$f: link '$l': $path has no section '#$anchor'" ;;
            esac
        fi
    done
done

# every page is in the index
for f in docs/*.md; do
    page=$(basename "$f")
    [ "$page" = README.md ] && continue
    grep -q "](${page})\|](${page}#" docs/README.md ||
        fail "docs/README.md (the index) does not link to $page: add a row for it"
done

# every command of `baton --help`
cmds=$("$BATON" --help | awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
[ -n "$cmds" ] || fail "baton --help lists no commands"
for c in $cmds; do
    grep -q "^## baton $c\$" docs/cli.md || fail "docs/cli.md has no section '## baton $c' (a command of baton --help)"
done

# every activity type
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
printf 'baton: { data_dir = "%s/var"; plugin_path = [ "%s/plugins" ]; };\n' \
    "$TMP" "$(cd "$BUILD" && pwd)" > "$TMP/baton.cfg"
types="send wait and_join end test or_join alert"
for so in "$BUILD"/plugins/activity_*.so; do
    [ -e "$so" ] || continue
    types="$types $("$BATON" -c "$TMP/baton.cfg" plugins --describe "$so" |
        sed -n 's/^activity type \([a-z_0-9]*\).*/\1/p')"
done
for t in $types; do
    grep -q -e "^### $t\$" -e "^## $t\$" -e "^| \`$t\` |" docs/campaigns.md ||
        fail "docs/campaigns.md has no section '### $t' (an activity type)"
done

sh scripts/docs-keys.sh "$BUILD" || status=1

# the examples, in a copy of conf/ (plugins found beside the binary)
mkdir "$TMP/conf" "$TMP/conf/doc"
for f in conf/*; do [ "$f" = conf/var ] || cp -r "$f" "$TMP/conf/"; done
first_block() { awk '/^```/ { n++; next } n == 1' "$1"; }
first_block docs/campaigns.md > "$TMP/conf/doc/campaign.cfg"
first_block docs/journeys.md > "$TMP/conf/doc/journey.cfg"
B() { "$BATON" -c "$TMP/conf/baton.cfg" "$@" > "$TMP/out" 2> "$TMP/err" || { cat "$TMP/err" >> "$TMP/out"; return 1; }; }
B sample-data --profiles 50 || { cat "$TMP/out" >&2; fail "sample-data failed on a copy of conf/"; }
B campaign plan "$TMP/conf/doc/campaign.cfg" ||
    { cat "$TMP/out" >&2; fail "the first example of docs/campaigns.md does not plan"; }
B journey test "$TMP/conf/doc/journey.cfg" --events "$TMP/conf/events/demo.jsonl" ||
    { cat "$TMP/out" >&2; fail "the first example of docs/journeys.md does not run"; }

# every member of the --json outputs is named in docs/cli.md: the members
# found at these paths ('*' any key of an object, '[]' every element)
members() { # json-file path...
    python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
def at(o, parts):
    if not parts:
        yield o
        return
    p, rest = parts[0], parts[1:]
    if p == '*' and isinstance(o, dict):
        for v in o.values():
            yield from at(v, rest)
    elif p == '[]' and isinstance(o, list):
        for v in o:
            yield from at(v, rest)
    elif isinstance(o, dict) and p in o:
        yield from at(o[p], rest)
for path in sys.argv[2:]:
    for o in at(doc, [x for x in path.split('.') if x]):
        if isinstance(o, dict):
            for k in o:
                print(k)
PY
}
json_documented() { # what json-file path...
    what=$1
    shift
    for k in $(members "$@" | sort -u); do
        grep -q "\`$k\`\|\"$k\"" docs/cli.md ||
            fail "docs/cli.md does not name the member '$k' of $what"
    done
}
if B campaign plan "$TMP/conf/doc/campaign.cfg" --json; then
    json_documented "campaign plan --json" "$TMP/out" . excluded.*
fi
if B journey test "$TMP/conf/doc/journey.cfg" --events "$TMP/conf/events/demo.jsonl" --json; then
    json_documented "journey test --json" "$TMP/out" . profiles.* profiles.*.sent.[]
fi
if B plugins --json; then
    json_documented "plugins --json" "$TMP/out" . plugins.[]
fi
if B journey status cart-abandon --json; then
    json_documented "journey status --json" "$TMP/out" . states nodes.*
fi
if B profile p1 --json; then
    json_documented "profile --json" "$TMP/out" .
fi
if B campaign runs --json; then
    json_documented "campaign runs --json" "$TMP/out" .
fi

for hit in $(grep -rlE 'FORMATS\.md|DESIGN\.md|/work/shared' README.md docs conf sdk || true); do
    fail "$hit names FORMATS.md or DESIGN.md, which users do not have: point to docs/ instead"
done
[ $status = 0 ] && echo "check-docs: links, commands, activity types, settings tables and examples ok"
exit $status
