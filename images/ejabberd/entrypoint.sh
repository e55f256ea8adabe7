#!/bin/sh
# Entrypoint for the lab's ejabberd 23.01 image (Debian package).
# Expects (put in before start, root-owned): /etc/xmpp-lab/{ca,cert,key,bundle}.pem
# and /etc/ejabberd/ejabberd.yml. Runs ejabberd in the foreground as user
# ejabberd; logs go to stdout (OTP logger default handler) and to
# /var/log/ejabberd/ejabberd.log. SIGTERM/SIGINT -> "ejabberdctl stop".
set -eu

LAB_DIR=/etc/xmpp-lab
CONFIG=/etc/ejabberd/ejabberd.yml
SPOOL=/var/lib/ejabberd
COOKIE="$SPOOL/.erlang.cookie"

if [ ! -s "$CONFIG" ]; then
    echo "entrypoint: $CONFIG missing or empty" >&2
    exit 1
fi

# Certificates: public parts world-readable, private keys ejabberd-only.
if [ -d "$LAB_DIR" ]; then
    chown root:root "$LAB_DIR"
    chmod 0755 "$LAB_DIR"
    for f in ca.pem cert.pem; do
        if [ -f "$LAB_DIR/$f" ]; then
            chown root:root "$LAB_DIR/$f"
            chmod 0644 "$LAB_DIR/$f"
        fi
    done
    for f in key.pem bundle.pem; do
        if [ -f "$LAB_DIR/$f" ]; then
            chown ejabberd:ejabberd "$LAB_DIR/$f"
            chmod 0600 "$LAB_DIR/$f"
        fi
    done
fi

chown ejabberd:ejabberd "$CONFIG"
chmod 0600 "$CONFIG"

mkdir -p /run/ejabberd "$SPOOL" /var/log/ejabberd
chown ejabberd:ejabberd /run/ejabberd "$SPOOL"
chmod 0750 /run/ejabberd
chown ejabberd:adm /var/log/ejabberd

# Erlang cookie shared by the server node and "ejabberdctl" (HOME=$SPOOL).
if [ ! -s "$COOKIE" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$COOKIE"
fi
chown ejabberd:ejabberd "$COOKIE"
chmod 0400 "$COOKIE"

# PID 1 stays this shell so that "docker stop" (SIGTERM) shuts ejabberd down
# cleanly: ejabberdctl's bash does not exec erl, and PID 1 ignores signals
# that have no handler.
stopping=
stop_ejabberd() {
    trap '' TERM INT
    stopping=1
    echo "entrypoint: stopping ejabberd" >&2
    /usr/sbin/ejabberdctl stop >/dev/null 2>&1 || kill -TERM "$child" 2>/dev/null || true
}
trap stop_ejabberd TERM INT

cd "$SPOOL"
setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    env HOME="$SPOOL" USER=ejabberd LOGNAME=ejabberd \
    /usr/sbin/ejabberdctl foreground &
child=$!

# "wait" returns >128 when a trapped signal interrupts it while the child
# still runs; wait again until the child's own exit status is known.
while :; do
    if wait "$child"; then rc=0; else rc=$?; fi
    [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null && continue
    break
done
if [ -n "$stopping" ] && [ "$rc" -gt 128 ]; then
    # The child may have exited between the interrupted wait and kill -0.
    if wait "$child" 2>/dev/null; then rc=0; else rc2=$?; [ "$rc2" -ne 127 ] && rc=$rc2; fi
fi
exit "$rc"
