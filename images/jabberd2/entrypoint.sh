#!/bin/bash
# Entry point of the lab's jabberd2 image.
# The lab copies (as root) before start:
#   /etc/xmpp-lab/ca.pem, cert.pem, key.pem, bundle.pem (leaf + CA + key)
#   /etc/jabberd2/{router,router-users,sm,c2s,s2s,muc}.xml  rendered configs
# Runs the four jabberd2 processes as user jabber: the router first (the others
# give up after a few connection attempts), then sm, s2s and c2s; and mu-conference
# (Debian's jabber-muc, a XEP-0114 component of the router) for conference.<domain>. Their logs go
# to stdout, each line prefixed with the process name. When any of them exits,
# the others are stopped and the container exits with a non-zero status.
# SIGUSR1 restarts jabberd2-s2s alone, which drops every s2s connection while c2s
# sessions stay (jabberd2-drop-s2s sends it): the lab needs fresh s2s connections for
# cases that observe authentication (S8) or DNS lookups (S9, S10).
set -euo pipefail

LAB_DIR=/etc/xmpp-lab
CONF_DIR=/etc/jabberd2
DB=/var/lib/jabberd2/sqlite.db
ROUTER_PORT=5347
COMPONENTS=(router sm s2s c2s muc)

say() { echo "entrypoint: $*"; }

for f in "$LAB_DIR/ca.pem" "$LAB_DIR/bundle.pem"; do
    [ -s "$f" ] || { say "missing or empty $f" >&2; exit 1; }
done
for name in "${COMPONENTS[@]}" router-users; do
    [ -s "$CONF_DIR/$name.xml" ] || { say "missing or empty $CONF_DIR/$name.xml" >&2; exit 1; }
done

# TLS material: the bundle (leaf + CA + key) is what jabberd2 reads; keys for jabber only.
chown root:jabber "$LAB_DIR"
chmod 0750 "$LAB_DIR"
for f in ca.pem cert.pem; do
    [ -f "$LAB_DIR/$f" ] && chown root:root "$LAB_DIR/$f" && chmod 0644 "$LAB_DIR/$f"
done
for f in key.pem bundle.pem; do
    [ -f "$LAB_DIR/$f" ] && chown jabber:jabber "$LAB_DIR/$f" && chmod 0600 "$LAB_DIR/$f"
done
# Configs hold the router secret.
chown root:jabber "$CONF_DIR" "$CONF_DIR"/*.xml
chmod 0750 "$CONF_DIR"
chmod 0640 "$CONF_DIR"/*.xml

# The database is made at build time; make it again if it went missing.
install -d -o jabber -g jabber -m 0750 /var/lib/jabberd2
if [ ! -s "$DB" ]; then
    say "creating $DB"
    zcat /usr/share/doc/jabberd2/db-setup.sqlite.gz \
        | setpriv --reuid=jabber --regid=jabber --init-groups sqlite3 -bail "$DB"
fi
chown jabber:jabber "$DB"

declare -A pids=()
stopping=

start() {
    local name=$1 program="/usr/sbin/jabberd2-$1"
    [ "$name" = muc ] && program=/usr/sbin/mu-conference
    say "starting ${program##*/}"
    # setpriv execs in place, so $! is the program's own pid; sed -u prefixes each line.
    setpriv --reuid=jabber --regid=jabber --init-groups \
        "$program" -c "$CONF_DIR/$name.xml" \
        > >(exec sed -u "s/^/$name: /") 2>&1 &
    pids[$name]=$!
    echo "${pids[$name]}" > "/run/jabberd2-$name.pid"
}

stop_all() {
    local name
    for name in muc c2s s2s sm router; do
        [ -n "${pids[$name]:-}" ] && kill -TERM "${pids[$name]}" 2>/dev/null || true
    done
}

on_signal() {
    trap '' TERM INT
    stopping=1
    say "stopping"
    stop_all
}
trap on_signal TERM INT

restarting=
on_usr1() {
    [ -n "$stopping" ] && return
    restarting=1
    say "restarting jabberd2-s2s: every s2s connection is dropped"
    kill -TERM "${pids[s2s]}" 2>/dev/null || true
}
trap on_usr1 USR1
echo $$ > /run/jabberd2-entrypoint.pid

router_listening() {
    # Port 5347 in LISTEN state (0A), on 127.0.0.1 or every address (tcp6 for "::": the
    # lab's component, X0114); no connection is made to the router.
    local port
    port=$(printf '%04X' "$ROUTER_PORT")
    # (-q: a match is success even when tcp6 is missing; no pipe, which pipefail would fail)
    grep -qsE "^ *[0-9]+: [0-9A-F]+:$port [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6
}

start router
for _ in $(seq 100); do
    router_listening && break
    kill -0 "${pids[router]}" 2>/dev/null || break
    sleep 0.1
done
if ! router_listening; then
    say "jabberd2-router is not listening on port $ROUTER_PORT; giving up" >&2
    stop_all
    wait || true
    exit 1
fi
[ -z "$stopping" ] && start sm
[ -z "$stopping" ] && start s2s
[ -z "$stopping" ] && start c2s
# mu-conference's pid file and logdir (muc.xml); its rooms' spool is the package's.
install -d -o jabber -g jabber -m 0755 /run/jabberd2 /var/log/jabberd2
chown -R jabber:jabber /var/spool/jabber-muc
[ -z "$stopping" ] && start muc

# Wait for the first component to exit; a trapped signal interrupts wait (status
# > 128, no pid reported): wait again. An s2s that exits because USR1 asked for it
# is started again; any other exit stops the container.
rc=0
while :; do
    died=
    set +e
    wait -n -p died "${pids[@]}"
    rc=$?
    set -e
    died=${died:-}
    if [ -z "$died" ]; then
        # 127: nothing left to wait for (should not happen); do not spin.
        [ "$rc" -le 128 ] && break
        continue
    fi
    if [ -n "$restarting" ] && [ -z "$stopping" ] && [ "$died" = "${pids[s2s]}" ]; then
        restarting=
        start s2s
        continue
    fi
    break
done

name=
for n in "${!pids[@]}"; do [ "${pids[$n]}" = "$died" ] && name=$n; done
if [ -n "$stopping" ]; then
    wait || true
    say "stopped"
    exit 0
fi
say "jabberd2-${name:-?} exited with status $rc; stopping the others" >&2
stop_all
wait || true
[ "$rc" -eq 0 ] && rc=1
exit "$rc"
