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
