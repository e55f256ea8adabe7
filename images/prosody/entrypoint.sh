#!/bin/sh
# Entry point of the lab's Prosody image.
# The lab copies (as root) before start:
#   /etc/xmpp-lab/ca.pem    lab CA certificate
#   /etc/xmpp-lab/cert.pem  server leaf certificate followed by the CA certificate
#   /etc/xmpp-lab/key.pem   private key
#   /etc/prosody/prosody.cfg.lua  rendered config
# Fix ownership/permissions, then run Prosody in the foreground as user prosody.
set -eu

LAB_DIR=/etc/xmpp-lab
CFG=/etc/prosody/prosody.cfg.lua

for f in "$LAB_DIR/ca.pem" "$LAB_DIR/cert.pem" "$LAB_DIR/key.pem" "$CFG"; do
    if [ ! -s "$f" ]; then
        echo "entrypoint: missing or empty $f" >&2
        exit 1
    fi
done

chown root:prosody "$LAB_DIR"
chmod 0750 "$LAB_DIR"
chown root:root "$LAB_DIR/ca.pem" "$LAB_DIR/cert.pem"
chmod 0644 "$LAB_DIR/ca.pem" "$LAB_DIR/cert.pem"
chown prosody:prosody "$LAB_DIR/key.pem"
chmod 0600 "$LAB_DIR/key.pem"
chown root:prosody "$CFG"
chmod 0640 "$CFG"

install -d -o prosody -g prosody -m 0750 /run/prosody /var/lib/prosody
chown -R prosody:prosody /var/lib/prosody

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
# setpriv execs in place (no fork, unlike runuser/su), so Prosody becomes PID 1 and
# receives `docker stop`'s SIGTERM directly. -F = foreground; logging per config.
export HOME=/var/lib/prosody
exec setpriv --reuid=prosody --regid=prosody --init-groups -- /usr/bin/prosody -F
