#!/bin/sh
# The campaign of bench_campaign_plan.sh (1,000,000 profiles, ~5M orders)
# planned by baton on PostgreSQL, against the same counts written by hand
# as the expert SQL script (each link aggregated once into a keyed table,
# then joined), run by psql on the same server and data. Prints both
# times (best of BENCH_RUNS, default 2), baton's ratio to the script
# (target: <= 1.3) and baton's peak memory (target: under 200 MB).
# A private server (initdb into $BATON_BUILD/bench-campaign-pg/, pg_ctl
# on a free port of 127.0.0.1, stopped at the end); the data is kept
# between runs. BENCH_PROFILES overrides the size.
set -e
N=${BENCH_PROFILES:-1000000}
W="$BATON_BUILD/bench-campaign-pg"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL server programs (scripts/deps.sh installs postgresql)"; exit 0; }
AS=""; [ "$(id -u)" = 0 ] && AS="runuser -u postgres --"
mkdir -p "$W/campaigns"
if [ ! -d "$W/pg/data" ]; then
    mkdir -p "$W/pg"; chmod 700 "$W/pg"; [ -n "$AS" ] && chown postgres "$W/pg"
    $AS "$PGBIN/initdb" -D "$W/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync > /dev/null
    printf "listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 128MB\nwork_mem = 64MB\nmax_wal_size = 2GB\n" "$W/pg" \
        | $AS tee -a "$W/pg/data/postgresql.conf" > /dev/null
fi
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$AS "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -o "-p $PORT" -w -t 120 start > /dev/null
trap '$AS "$PGBIN/pg_ctl" -D "$W/pg/data" -w -m fast stop > /dev/null' EXIT
PSQL="$PGBIN/psql -X -q -h 127.0.0.1 -p $PORT -U postgres"
$PSQL -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'crm'" | grep -q 1 || $PSQL -d postgres -c "CREATE DATABASE crm"
cat > "$W/baton.cfg" <<CFG
baton: { data_dir = "var"; plugin_path = [ "$BATON_PLUGINS" ]; log = { level = "warn"; }; };
sources: { crm: { plugin = "source_postgres"; conninfo = "host=127.0.0.1 port=$PORT dbname=crm user=postgres"; schema = "$BATON_SRC/conf/schema.cfg"; statement_timeout = "0s"; }; };
profiles = "crm";
channels: { mail: { plugin = "channel_directmail"; dir = "var/exports"; }; };
campaigns = [ "campaigns" ];
CFG
# the campaign of the SQLite bench, as it is written there
sed -n "/^cat > \"\$W\/campaigns\/bench.cfg\" <<'CFG'$/,/^CFG$/p" "$BATON_SRC/tests/bench/bench_campaign_plan.sh" | sed '1d;$d' > "$W/campaigns/bench.cfg"
if [ "$(cat "$W/size" 2>/dev/null)" != "$N" ]; then
    echo "generating $N profiles (~$((N * 5)) orders)..."
    t0=$(date +%s.%N)
    $BATON_BIN -c "$W/baton.cfg" sample-data --profiles "$N" --seed 11
    echo "sample-data (COPY): $(printf %.1f "$(echo "$(date +%s.%N) - $t0" | bc -l)") s"
    echo "$N" > "$W/size"
fi
cat > "$W/expert.sql" <<'SQL'
CREATE TEMP TABLE agg AS SELECT profile_id AS k, count(*) FILTER (WHERE amount > 150) AS n150,
  sum(amount) AS spent FROM orders WHERE profile_id IS NOT NULL GROUP BY profile_id;
ALTER TABLE agg ADD PRIMARY KEY (k);
CREATE TEMP TABLE buyers AS SELECT p.id AS _key FROM profiles p JOIN agg a ON a.k = p.id WHERE a.n150 >= 2;
CREATE TEMP TABLE gold AS SELECT p.id AS _key FROM profiles p WHERE p.tier = 'gold' AND p.consent_email;
CREATE TEMP TABLE big AS SELECT p.id AS _key FROM profiles p JOIN agg a ON a.k = p.id WHERE a.spent > 1200;
CREATE TEMP TABLE target AS SELECT _key FROM buyers UNION ALL SELECT _key FROM gold WHERE _key NOT IN (SELECT _key FROM buyers);
CREATE TEMP TABLE minus AS SELECT _key FROM target WHERE _key NOT IN (SELECT _key FROM big);
CREATE TEMP TABLE uniq AS SELECT _key FROM (SELECT m._key, row_number() OVER (PARTITION BY p.email,
  CASE WHEN p.email IS NULL THEN m._key END ORDER BY p.created_at DESC NULLS LAST, m._key) AS rn
  FROM minus m JOIN profiles p ON p.id = m._key) s WHERE rn = 1;
CREATE TEMP TABLE rich AS SELECT u._key, a.spent FROM uniq u LEFT JOIN agg a ON a.k = u._key;
CREATE TEMP TABLE hi AS SELECT * FROM rich WHERE spent > 800;
CREATE TEMP TABLE mid AS SELECT * FROM rich WHERE spent > 300 AND NOT coalesce(spent > 800, false);
CREATE TEMP TABLE low AS SELECT * FROM rich WHERE NOT coalesce(spent > 800, false) AND NOT coalesce(spent > 300, false);
CREATE TEMP TABLE ords AS SELECT o.id AS _key FROM hi h JOIN orders o ON o.profile_id = h._key WHERE o.amount > 100;
SELECT 'buyers', count(*) FROM buyers UNION ALL SELECT 'gold', count(*) FROM gold
UNION ALL SELECT 'big', count(*) FROM big UNION ALL SELECT 'target', count(*) FROM target
UNION ALL SELECT 'minus', count(*) FROM minus UNION ALL SELECT 'unique', count(*) FROM uniq
UNION ALL SELECT 'rich', count(*) FROM rich UNION ALL SELECT 'tiers.hi', count(*) FROM hi
UNION ALL SELECT 'tiers.mid', count(*) FROM mid UNION ALL SELECT 'tiers.low', count(*) FROM low
UNION ALL SELECT 'ords', count(*) FROM ords;
SQL
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
best() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
RUNS=${BENCH_RUNS:-2}
mem_kb=0; exp=""; bat=""; i=0
while [ $i -lt "$RUNS" ]; do
    t0=$(now)
    $PSQL -d crm -v ON_ERROR_STOP=1 -tA -F ' ' -f "$W/expert.sql" > "$W/expert.out"
    e1=$(secs "$t0" "$(now)"); exp=$(best "$exp" "$e1")
    t0=$(now)
    (cd "$W" && /usr/bin/time -f "%M" -o "$W/mem" $BATON_BIN -c "$W/baton.cfg" campaign plan bench --json > "$W/baton.out")
    b1=$(secs "$t0" "$(now)"); bat=$(best "$bat" "$b1")
    m=$(cat "$W/mem"); if [ "$m" -gt "$mem_kb" ]; then mem_kb=$m; fi
    echo "run $((i + 1)): expert $(printf %.2f "$e1") s, baton $(printf %.2f "$b1") s"
    i=$((i + 1))
done
echo "== PostgreSQL ($N profiles)"
echo "expert SQL (psql):           $(printf %.2f "$exp") s (best of $RUNS)"
tr '\n' ' ' < "$W/expert.out"; echo
echo "baton campaign plan:         $(printf %.2f "$bat") s (best of $RUNS)"
tr -d ' \n' < "$W/baton.out"; echo
echo "ratio baton/expert (PostgreSQL): $(printf %.2f "$(echo "$bat / $exp" | bc -l)") (target <= 1.30)"
echo "baton peak memory:           $((mem_kb / 1024)) MB (target < 200 MB)"
