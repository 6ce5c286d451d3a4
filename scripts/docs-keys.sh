#!/bin/sh
# The settings tables of docs/*.md, generated from `baton plugins --describe`.
#
#   sh scripts/docs-keys.sh [BUILD]           check: exit 1 when a table differs
#   sh scripts/docs-keys.sh [BUILD] --write   rewrite the tables in place
#
# A table sits between two markers in a docs page:
#   <!-- keys: channel_email -->   the plugin's own settings
#   <!-- keys: host channel -->    the settings baton reads for every channel
#   <!-- /keys -->                 (or `host action`, `host source`)
# and is everything `--describe` prints for those keys: name, type, default
# or required, range, choices and help. Every plugin built in BUILD/plugins
# must have its table somewhere in docs/ (activity plugins excepted: their
# types are sections of docs/campaigns.md, checked by check-docs.sh).
set -eu
BUILD=${1:-build}
MODE=${2:-check}
BATON=$BUILD/baton
[ -x "$BATON" ] || { echo "docs-keys: $BATON not built" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# a configuration of our own: the plugins of BUILD, nothing else
printf 'baton: { data_dir = "%s/var"; plugin_path = [ "%s/plugins" ]; };\n' \
    "$TMP" "$(cd "$BUILD" && pwd)" > "$TMP/baton.cfg"

describe() { "$BATON" -c "$TMP/baton.cfg" plugins --describe "$1"; }

# describe output, section "settings of the plugin:" or "settings read by
# baton itself:" → a Markdown table
table() {
    awk -v want="$1" '
    function flush() {
        if (name == "") return
        gsub(/\|/, "\\|", help); gsub(/</, "\\&lt;", help)
        printf "| `%s` | %s | %s | %s |\n", name, type, dflt, help
        name = ""
    }
    /^settings read by baton itself:/ { flush(); on = (want == "host"); next }
    /^settings of the plugin:/        { flush(); on = (want == "plugin"); next }
    /^content parts:/                 { flush(); on = 0; next }
    !on { next }
    /^  \(none\)/ { next }
    /^      / { sub(/^      /, ""); help = help (help == "" ? "" : " ") $0; next }
    /^  [^ ]/ {
        flush()
        name = $1; type = $2; rest = $0
        sub(/^  [^ ]+ +[^ ]+ */, "", rest)
        dflt = "—"; help = ""
        if (rest ~ /^required/) dflt = "required"
        if (match(rest, /default "[^"]*"/)) dflt = "`" substr(rest, RSTART + 9, RLENGTH - 10) "`"
        if (dflt == "``") dflt = "`\"\"`"
        if (match(rest, /range [^ ]+/)) type = type " " substr(rest, RSTART + 6, RLENGTH - 6)
        if (match(rest, /one of: .*/)) {
            n = split(substr(rest, RSTART + 8), ch, " "); type = ""
            for (i = 1; i <= n; i++) type = type (i > 1 ? " \\| " : "") "`" ch[i] "`"
        }
        next
    }
    END { flush() }'
}

generate() { # marker text → table on stdout
    set -- $1
    printf '| key | type | default | what |\n|---|---|---|---|\n'
    if [ "$1" = host ]; then
        case $2 in
        channel) describe "$BUILD/plugins/channel_directmail.so" ;;
        action) describe "$BUILD/plugins/action_http.so" ;;
        source) describe "$BUILD/plugins/source_sqlite.so" ;;
        *) echo "docs-keys: unknown marker 'host $2'" >&2; return 1 ;;
        esac | table host
    else
        describe "$BUILD/plugins/$1.so" | table plugin
    fi
}

status=0
for f in docs/*.md; do
    grep -q '^<!-- keys: ' "$f" || continue
    out="$TMP/out.md"
    : > "$out"
    skipping=0
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
        '<!-- keys: '*' -->')
            printf '%s\n' "$line" >> "$out"
            m=${line#<!-- keys: }; m=${m% -->}
            generate "$m" >> "$out" || status=1
            skipping=1 ;;
        '<!-- /keys -->')
            printf '%s\n' "$line" >> "$out"; skipping=0 ;;
        *) [ $skipping = 1 ] || printf '%s\n' "$line" >> "$out" ;;
        esac
    done < "$f"
    if ! cmp -s "$f" "$out"; then
        if [ "$MODE" = --write ]; then
            cp "$out" "$f"
            echo "docs-keys: rewrote the settings tables of $f"
        else
            echo "docs-keys: $f: a settings table differs from \`baton plugins --describe\`:" >&2
            diff "$f" "$out" >&2 || true
            status=1
        fi
    fi
done

for so in "$BUILD"/plugins/*.so; do
    [ -e "$so" ] || continue
    p=$(basename "$so" .so)
    case $p in activity_*) continue ;; esac
    if ! grep -q "^<!-- keys: $p -->" docs/*.md; then
        echo "docs-keys: plugin $p has no settings table in docs/ (add '<!-- keys: $p -->' and '<!-- /keys -->' to its page)" >&2
        status=1
    fi
done
if [ $status != 0 ] && [ "$MODE" != --write ]; then
    echo "docs-keys: run 'sh scripts/docs-keys.sh $BUILD --write' to regenerate the tables" >&2
fi
exit $status
