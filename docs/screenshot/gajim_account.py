"""Write a Gajim 1.7 profile with one account that uses a lab's published port (run as
the user Gajim runs as, with that user's HOME). Usage:
    gajim_account.py JID PASSWORD HOST PORT
The same as Gajim's Accounts > Advanced: "Use custom hostname" with host, port and
"START TLS"; the password saved in the profile, not a keyring (a throwaway account)."""
import sys

from gajim.common import app, configpaths
from gajim.common.settings import Settings

jid, password, host, port = sys.argv[1:5]
user, domain = jid.split("@")
configpaths.init()
configpaths.create_paths()
app.settings = Settings()
app.settings.init()
app.settings.set("use_keyring", False)
app.settings.set("check_for_update", False)
app.settings.set("show_help_start_chat", False)
app.settings.add_account(jid)
for setting, value in {"name": user, "hostname": domain, "password": password, "savepass": True,
                       "active": True, "autoconnect": True, "resource": "gajim", "account_label": jid,
                       "use_custom_host": True, "custom_host": host, "custom_port": int(port),
                       "custom_type": "START TLS"}.items():
    app.settings.set_account_setting(jid, setting, value)
app.settings.save()  # (set_* only schedule a commit on a GLib main loop, and none runs here)
print(f"gajim account {jid} via {host}:{port} (STARTTLS)")
