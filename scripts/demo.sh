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
