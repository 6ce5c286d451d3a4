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
echo "== journeys: journey test, a simulated clock over conf/events/demo.jsonl (nothing is sent)"
$BATON -c $CONF journey test cart-abandon --events conf/events/demo.jsonl 2>/dev/null
$BATON -c $CONF journey test welcome --events conf/events/demo.jsonl --json 2>/dev/null
echo "== journeys: live — baton serve, events published to a local broker (127.0.0.1:1883)"
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    echo "demo: mosquitto is not installed; skipping the live journeys"; exit 0
fi
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
# a fresh start for the journeys (the campaigns' history stays)
rm -f conf/var/inbox.db conf/var/inbox.db-wal conf/var/inbox.db-shm
sqlite3 conf/var/state.db "DELETE FROM journey_instances; DELETE FROM journey_sends; DELETE FROM journey_meta;" 2>/dev/null || true
mkdir -p conf/var/live
rm -f conf/var/live/mosquitto.db # a fresh broker too
# the broker settings baton needs (docs/operations.md): sessions kept on
# disk, no cap on what is queued for baton while it is away
printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nuser %s\n' \
    "$PWD/conf/var/live" "$(id -un)" > conf/var/live/mosquitto.conf
$MOSQ -c conf/var/live/mosquitto.conf >/dev/null 2>&1 &
BROKER=$!
/usr/bin/python3 tests/support/smtp_sink.py --dir conf/var/smtp --port 2525 --forever \
    < /dev/null > conf/var/live/smtp.ready 2>/dev/null &
SINK=$!
# the weather API (3 degrees everywhere) and the loyalty API the journeys call
/usr/bin/python3 tests/support/http_sink.py --port 8089 --forever --body '{"temperature": 3}' \
    < /dev/null > conf/var/live/weather.ready 2>/dev/null &
WEATHER=$!
/usr/bin/python3 tests/support/http_sink.py --port 8087 --forever --body '{"balance": 150}' \
    --log conf/var/live/loyalty.jsonl < /dev/null > conf/var/live/loyalty.ready 2>/dev/null &
LOYALTY=$!
trap 'kill $SERVE $BROKER $SINK $WEATHER $LOYALTY 2>/dev/null || true' EXIT
SERVE=""
sleep 1
$BATON -c $CONF serve 2> conf/var/live/serve.log &
SERVE=$!
sleep 1
echo "publishing $(wc -l < conf/events/demo.jsonl) events (one malformed, one duplicate) with mosquitto_pub -q 1"
mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t baton/events/demo -l < conf/events/demo.jsonl
sleep 2
$BATON -c $CONF journey status welcome
$BATON -c $CONF journey status cart-abandon
$BATON -c $CONF profile p1
echo "the SMTP server now holds $(wc -l < conf/var/smtp/log.jsonl) message(s)"
echo "== journeys: SIGHUP reloads the configuration; SIGTERM stops gracefully"
kill -HUP $SERVE
sleep 1
kill -TERM $SERVE
wait $SERVE || true
grep -E "serving|reload|stopping" conf/var/live/serve.log
