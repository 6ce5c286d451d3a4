#!/bin/sh
# Channel throughput through the whole path (render, caps, dispatch,
# delivery log, plugin) next to each sink's own ceiling, measured in the
# same run by a minimal C client (tests/bench/clients/), against:
#   email  Postfix's smtp-sink            (a minimal SMTP client, 100 messages a session, 2 threads)
#   sms    nginx answering `return 200`   (libcurl multi, 32 requests in flight)
#   push   the mosquitto broker           (libmosquitto, QoS 1, 100 in flight)
# Each channel runs REPS times (default 5), the client and baton in turn;
# it prints every pair, then the medians and the median of the pairs'
# ratios (target: >= 0.85 of the client) and the absolute targets (email
# 8000 msg/s, sms 15000 req/s, push 20000 msg/s), then the breakdown of
# baton's last run: CPU per message by thread, next to the client's and
# the sink's CPU per message in each; SQL statements per message and
# commits per 1,000 messages. Never fails on a figure.
# And email to smtp-sink without PIPELINING (-p), one connection, 5.7 KB
# messages: baton next to Python's smtplib (/usr/bin/python3) and the
# minimal client, in the same run (target: baton >= smtplib).
# COUNT=N changes the messages per run (default 50000), NOPIPE_COUNT the
# messages of the no-PIPELINING case (default 2000).
set -u
BUILD=${BUILD:-build}
top=$(pwd)
B="$top/$BUILD"
export BATON_PLUGINS="${BATON_PLUGINS:-$B/plugins}"
COUNT=${COUNT:-50000}
REPS=${REPS:-5}
work=$(mktemp -d /tmp/baton-bench-XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

freeport() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() {
    /usr/bin/python3 - "$1" <<'PY'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

# the minimal clients
mkdir -p "$B/bench"
for c in smtp: http:libcurl mqtt:libmosquitto; do
    n=${c%%:*}; pkg=${c#*:}
    cc -O2 -pthread -o "$B/bench/${n}_client" "$top/tests/bench/clients/${n}_client.c" \
        ${pkg:+$(pkg-config --cflags --libs "$pkg")} || { echo "bench: cannot build ${n}_client"; exit 0; }
done
full="$B/tests/bench/bench_channels"
[ -x "$full" ] || { echo "bench: $full is not built (make bench builds it)"; exit 0; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }
rate_of() { sed -n 's/.* = \([0-9]*\) msg\/s.*/\1/p'; }
# CPU microseconds per message a process and its children spent between two
# readings of ticks (utime + stime of /proc/PID/stat)
ticks() {
    t=0
    for p in $1 $(ps -o pid= --ppid "$1" 2>/dev/null); do
        v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
us_per() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }

# pairs NAME SINKPID UNIT TARGET N 'CLIENT COMMAND' 'BATON COMMAND':
# REPS pairs in turn, then the medians, the ratio and the breakdown
pairs() {
    name=$1 sink=$2 unit=$3 target=$4 n=$5 client=$6 through=$7
    rates="" ceils="" ratios="" ccpus="" bcpus="" csinks="" bsinks=""
    r=1
    while [ "$r" -le "$REPS" ]; do
        s0=$(ticks "$sink")
        c=$(eval "$client")
        s1=$(ticks "$sink")
        out=$(eval "$through")
        s2=$(ticks "$sink")
        rate=$(echo "$out" | rate_of)
        ceil=${c%% *}
        printf '%-6s run %d: %8.0f %s/s through baton, minimal client %8.0f (ratio %s)\n' \
            "$name" "$r" "$rate" "$unit" "$ceil" "$(ratio "$rate" "$ceil")"
        rates="$rates $rate" ceils="$ceils $ceil" ratios="$ratios $(ratio "$rate" "$ceil")"
        ccpus="$ccpus ${c#* }"
        bcpus="$bcpus $(echo "$out" | sed -n 's/.*by thread: //p' | tr ',' '\n' |
            awk '{ s += $(NF - 1) } END { printf "%.1f", s }')"
        csinks="$csinks $(us_per $((s1 - s0)) "$n")" bsinks="$bsinks $(us_per $((s2 - s1)) "$n")"
        r=$((r + 1))
    done
    rate=$(echo "$rates" | median)
    printf '%-6s %8.0f %s/s through baton; minimal client %8.0f (median of %d; ratio %s, median of the pairs, need >= 0.85); target %d (ratio %s)\n' \
        "$name" "$rate" "$unit" "$(echo "$ceils" | median)" "$REPS" "$(echo "$ratios" | median)" \
        "$target" "$(ratio "$rate" "$target")"
    echo "$out" | sed -n 's/^[a-z]*: \(CPU per message by thread:.*\)/'"$name"': baton \1/p'
    printf '%s: CPU per message (medians): baton %s us (its threads), minimal client %s us; the sink %s us in baton'"'"'s runs, %s us in the client'"'"'s\n' \
        "$name" "$(echo "$bcpus" | median)" "$(echo "$ccpus" | median)" "$(echo "$bsinks" | median)" "$(echo "$csinks" | median)"
    echo "$out" | sed -n 's/^[a-z]*: \(SQL statements.*\)/'"$name"': \1/p'
    echo "$out" | grep 'the delivery log holds'
}

# ---- email: smtp-sink
port=$(freeport)
smtp-sink -u nobody "127.0.0.1:$port" 1000 >/dev/null 2>&1 &
pids="$pids $!"
sinkpid=$!
if waitport "$port"; then
    pairs email "$sinkpid" msg 8000 "$COUNT" '"$B/bench/smtp_client" "$port" "$COUNT" 2 100' \
        '"$full" email "$port" "$COUNT"'
else
    echo "email: smtp-sink did not start"
fi

# ---- email: smtp-sink without PIPELINING, 1 connection, 5.7 KB messages
NOPIPE_COUNT=${NOPIPE_COUNT:-2000}
port=$(freeport)
smtp-sink -p -u nobody "127.0.0.1:$port" 1000 >/dev/null 2>&1 &
pids="$pids $!"
if waitport "$port"; then
    ceil=$("$B/bench/smtp_client" "$port" "$NOPIPE_COUNT" 1 100 5300)
    ceil=${ceil%% *}
    py=$(/usr/bin/python3 - "$port" "$NOPIPE_COUNT" <<'PY'
import smtplib, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
head = ("From: Shop <news@example.com>\r\nTo: <a@example.com>\r\nSubject: smtplib\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
text = "".join("lorem ipsum dolor sit amet "[i % 27] if i % 72 != 71 else "\r\n"
               for i in range(5300))
msg = (head + text + "\r\n").encode()
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.com")
t = time.monotonic()
for i in range(n):
    s.sendmail("news@example.com", ["p%d@example.com" % i], msg)
dt = time.monotonic() - t
s.quit()
print("%.0f %d" % (n / dt, len(msg)))
PY
)
    out=$(BENCH_TEXT_BYTES=5300 "$full" email "$port" "$NOPIPE_COUNT" "connections = 1;")
    echo "$out" | sed 's/^email:/email-nopipe:/'
    rate=$(echo "$out" | rate_of)
    printf 'email-nopipe %6.0f msg/s through baton; smtplib %s msg/s (%s B messages; ratio %s, need >= 1); minimal client %s (ratio %s)\n' \
        "$rate" "${py%% *}" "${py#* }" "$(ratio "$rate" "${py%% *}")" "$ceil" "$(ratio "$rate" "$ceil")"
else
    echo "email-nopipe: smtp-sink did not start"
fi

# ---- sms: nginx return 200
port=$(freeport)
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        client_body_buffer_size 64k;
        location / { default_type application/json; return 200 '{"id":"ok"}'; }
    }
}
EOF
nginx -c "$work/nginx.conf" -p "$work/nginx" >/dev/null 2>&1 &
pids="$pids $!"
sinkpid=$!
if waitport "$port"; then
    pairs sms "$sinkpid" req 15000 "$COUNT" '"$B/bench/http_client" "$port" "$COUNT" 32' \
        '"$full" sms "$port" "$COUNT"'
else
    echo "sms: nginx did not start"
fi

# ---- push: mosquitto
port=$(freeport)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 0\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
pids="$pids $!"
sinkpid=$!
if waitport "$port"; then
    pairs push "$sinkpid" msg 20000 "$COUNT" '"$B/bench/mqtt_client" "$port" "$COUNT" 100' \
        '"$full" push "$port" "$COUNT"'
else
    echo "push: mosquitto did not start"
fi
exit 0
