#!/bin/sh
# make demo: the bundled example, end to end, on the embedded default.
# Each part of baton adds its act below; every act prints what it did.
set -e
BUILD=${BUILD:-build}
BATON="$BUILD/baton"
CONF=conf/baton.cfg

echo "== baton $($BATON --version | cut -d' ' -f2-)"
echo "== plugins"
$BATON -c $CONF plugins
echo "== check"
$BATON -c $CONF check
echo "== sample data (profiles, orders, stores, reservations)"
$BATON -c $CONF sample-data --profiles 2000 --seed 7
echo "== campaigns: plan (exact counts, nothing sent)"
$BATON -c $CONF campaign plan winback
$BATON -c $CONF campaign plan winback --dot > conf/var/winback.dot
dot -Tsvg conf/var/winback.dot -o conf/var/winback.svg && echo "graph: conf/var/winback.svg"
echo "== campaigns: run"
$BATON -c $CONF campaign run stores
$BATON -c $CONF campaign plan returns
$BATON -c $CONF campaign run returns
$BATON -c $CONF campaign run winback
echo "== campaigns: email newsletter, rendered but not delivered (--dry-run)"
$BATON -c $CONF campaign plan newsletter --json
$BATON -c $CONF campaign run newsletter --dry-run
echo "== campaigns: run history"
$BATON -c $CONF campaign runs
echo "== exports (channel_directmail)"
ls conf/var/exports
cat conf/var/exports/*.manifest.json
echo "== channels: email through a local SMTP server (tests/support/smtp_sink.py, 127.0.0.1:2525)"
rm -rf conf/var/smtp && mkdir -p conf/var/smtp
/usr/bin/python3 tests/support/smtp_sink.py --dir conf/var/smtp --port 2525 --forever \
    < /dev/null > conf/var/smtp/ready 2>/dev/null &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q PORT conf/var/smtp/ready 2>/dev/null && break; sleep 0.1; done
grep -q PORT conf/var/smtp/ready || { echo "demo: the SMTP sink could not listen on 127.0.0.1:2525"; exit 1; }
$BATON -c $CONF campaign run newsletter
echo "the SMTP server stored $(wc -l < conf/var/smtp/log.jsonl) message(s); the first one's headers:"
first=$(ls conf/var/smtp/*.eml | head -1)
sed -n '1,/^\r*$/p' "$first" | tr -d '\r'
/usr/bin/python3 tests/support/mime_check.py "$first" | /usr/bin/python3 -c \
  'import json,sys; m=json.load(sys.stdin); print("decoded subject:", m["subject"]); print("parts:", ", ".join(p["type"] for p in m["parts"]))'
kill $SINK 2>/dev/null || true
