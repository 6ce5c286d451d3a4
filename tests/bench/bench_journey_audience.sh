#!/bin/sh
# Audience entry (journey entry = { filter; schedule; }) of 1,000,000
# profiles from source_sqlite through baton serve: profiles entered per
# second (inbox receive times, and instances routed per second of wall
# time) and baton's peak RSS while it runs. No rate limit: how fast the
# entry stage goes (AJO reads 500-20,000 profiles per second). Prints the
# figures; never fails on one. BENCH_PROFILES overrides the size.
set -e
N=${BENCH_PROFILES:-1000000}
W="$BATON_BUILD/bench-audience"
rm -rf "$W"
mkdir -p "$W/journeys"
cat > "$W/baton.cfg" <<CFG
baton: { data_dir = "var"; plugin_path = [ "$BATON_PLUGINS" ]; log = { level = "warn"; }; };
sources: { crm: { plugin = "source_sqlite"; path = "crm.db"; schema = "schema.cfg"; }; };
profiles = "crm";
journeys = [ "journeys" ];
CFG
printf 'entities: { profiles: { key = "id"; fields: { id = "string"; tier = "string"; points = "int"; }; }; };\n' > "$W/schema.cfg"
cat > "$W/journeys/aud.cfg" <<'CFG'
journey: { name = "aud"; entry = { filter = "points > 0"; schedule = { at = "2020-01-01T00:00:00Z"; }; };
  start = "w"; nodes = ( { id = "w"; type = "wait"; duration = "1d"; next = "e"; }, { id = "e"; type = "end"; } ); };
CFG
sqlite3 "$W/crm.db" "CREATE TABLE profiles (id TEXT PRIMARY KEY, tier TEXT, points INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO profiles SELECT printf('p%07d', i), 'silver', i FROM n;"
cd "$W"
# the reference, in the same run: the source's read of the audience alone
# (sqlite3 selecting the same rows), what entry costs beyond reading
rs=$(date +%s%N)
sqlite3 crm.db "SELECT id, tier, points FROM profiles WHERE points > 0" > /dev/null
ref=$(( ($(date +%s%N) - rs) / 1000000 ))
start=$(date +%s%N)
"$BATON_BIN" -c baton.cfg serve > serve.log 2>&1 &
pid=$!
peak=0
got=0
while [ "$got" -lt "$N" ]; do
    sleep 0.5
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss
    got=$(sqlite3 var/state.db "SELECT count(*) FROM journey_instances" 2>/dev/null || echo 0)
    kill -0 $pid 2>/dev/null || { echo "bench_journey_audience: serve exited"; cat serve.log; exit 1; }
done
end=$(date +%s%N)
kill -TERM $pid
wait $pid || true
span=$(sqlite3 var/inbox.db "SELECT max(received) - min(received) FROM journey_inbox")
awk -v n="$N" -v span="$span" -v wall="$(( (end - start) / 1000000 ))" -v peak="$peak" -v ref="$ref" 'BEGIN {
    printf "audience entry: %d profiles handed in in %d ms (%.0f/s), all routed and waiting after %d ms (%.0f/s); baton peak RSS %.1f MB\n",
        n, span, n * 1000 / (span > 0 ? span : 1), wall, n * 1000 / wall, peak / 1024
    printf "reference: sqlite3 reads the audience in %d ms (%.0f/s); entry takes %.1fx the read (AJO reads 500-20,000 profiles/s)\n",
        ref, n * 1000 / (ref > 0 ? ref : 1), (span > 0 ? span : 1) / (ref > 0 ? ref : 1) }'
