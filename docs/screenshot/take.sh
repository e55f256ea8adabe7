#!/usr/bin/env bash
# The README's screenshot (docs/gajim.png): Debian's Gajim under Xvfb, logged in as
# alice@prosody.test through the lab's published STARTTLS port, with the lab CA trusted
# the way the README says (the system store), chatting with bob on ejabberd.test and
# jabberd2.test. Needs root (Gajim refuses to run as root: it runs as nobody; the lab CA is
# added to the system store inside a mount namespace of Gajim's own, not to this
# machine's), and: apt-get install gajim xvfb xdotool imagemagick dbus-x11
# Usage (from the repo): docs/screenshot/take.sh [LAB_YML]   (default: the default lab; it is reset)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$here/../.."
lab=(-f "${1:-$repo/lab.yml}")
work="$(mktemp -d)"
chmod 755 "$work"
display=:$((90 + RANDOM % 100))
pids=()
descendants() {  # a process's children, theirs, and so on
  for child in $(ps -o pid= --ppid "$1"); do echo "$child"; descendants "$child"; done
}
cleanup() {
  for pid in "${pids[@]}"; do
    kill $(descendants "$pid") "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

"$repo/run" lab reset --publish "${lab[@]}" >/dev/null  # fresh servers: no history from an earlier shot
"$repo/run" lab ca export "$work/ca.pem" "${lab[@]}" >/dev/null
name="$("$repo/run" python -c 'import sys; from lab import model; print(model.load(sys.argv[1]).name)' "${lab[1]}")"
port="$("$repo/run" lab accounts --json "${lab[@]}" | python3 -c '
import json, sys
(row,) = [r for r in json.load(sys.stdin) if r["jid"] == "alice@prosody.test"]
print(next(p["port"] for p in row["ports"] if p["tls"] == "starttls"))')"

# Gajim's profile: the account with a custom host and port (what its Accounts window sets).
mkdir "$work/home" && chown nobody:nogroup "$work/home"
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups env -i "HOME=$work/home" PATH=/usr/bin:/bin
           "DISPLAY=$display" LANG=C.UTF-8)
"${as_nobody[@]}" python3 "$here/gajim_account.py" alice@prosody.test alice-password 127.0.0.1 "$port" 2>/dev/null
cat /etc/ssl/certs/ca-certificates.crt "$work/ca.pem" > "$work/ca-certificates.crt"

Xvfb "$display" -screen 0 1000x500x24 -nolisten tcp -ac >"$work/xvfb.log" 2>&1 &
pids+=($!)
# The contacts: bob on ejabberd.test and jabberd2.test, online; they say hello after 20 s.
docker exec -i "xmpp-lab-$name-client-slixmpp" python3 - alice@prosody.test alice-password \
  bob@ejabberd.test,bob@jabberd2.test bob-password 20 60 <"$here/partners.py" >"$work/partners.log" 2>&1 &
pids+=($!)
sleep 6
unshare -m sh -c "mount --bind $work/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt && exec $(printf '%q ' "${as_nobody[@]}") dbus-run-session -- gajim" >"$work/gajim.log" 2>&1 &
pids+=($!)
export DISPLAY="$display"
sleep 30                                  # logged in, the hellos arrived
xdotool mousemove 200 212 click 1         # the second chat in the list
sleep 2
xdotool type --delay 30 "Hi bob! Gajim here, on prosody.test through 127.0.0.1."
xdotool key Return
sleep 3
import -window root "$repo/docs/gajim.png"
sleep 2
grep -v stringprep "$work/partners.log" || true
ls -l "$repo/docs/gajim.png"
