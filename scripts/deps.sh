#!/bin/sh
# Install the Debian packages baton needs to build, test and run its demo,
# once, only those missing. Run by every make target that builds.
set -e
PKGS="build-essential pkg-config libconfig-dev libcurl4-openssl-dev libssl-dev
libmosquitto-dev mosquitto mosquitto-clients libsqlite3-dev sqlite3 libjansson-dev
libcmocka-dev libmicrohttpd-dev tzdata python3-aiosmtpd graphviz postfix nginx-light clang clang-format libclang-rt-14-dev
postgresql libpq-dev chromium"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *" installed") ;; *) missing="$missing $p" ;; esac
done
# the console's browser tests run node and npm (any install of them will do:
# Debian's packages only when none is on the PATH)
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -q
# postfix asks questions at install; "No configuration" keeps it from
# starting a mail system: tests only use its smtp-sink binary.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
# Debian starts these services on install; tests run their own on loopback.
for svc in mosquitto nginx postfix postgresql; do
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
        $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
    if command -v service >/dev/null 2>&1; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
done
exit 0
