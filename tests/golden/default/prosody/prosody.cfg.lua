-- Prosody config for the XMPP interop lab: prosody.test (Debian trixie)
-- Rendered by the lab; the container's entrypoint runs `prosody -F` as user prosody.

pidfile = "/run/prosody/prosody.pid"
data_path = "/var/lib/prosody"
plugin_paths = { "/usr/local/lib/prosody/modules" }

-- Console (stdout) logging at info and above.
log = { info = "*console" }

-- Internal storage: plain files under data_path.
storage = "internal"
authentication = "internal_hashed"

modules_enabled = {
	"roster";      -- RFC 6121 rosters
	"saslauth";    -- SASL for c2s, SASL EXTERNAL for s2s
	"tls";         -- STARTTLS on c2s and s2s
	"dialback";    -- XEP-0220, only honoured for s2s_insecure_domains (see below)
	"disco";       -- XEP-0030
	"ping";        -- XEP-0199
	"turn_external"; -- XEP-0215 for the lab's TURN service (block "TURN" below)
	"carbons";     -- XEP-0280
	"mam";         -- XEP-0313
	"offline";     -- store messages for offline users, as deployments do
	"smacks";      -- XEP-0198
	"register";    -- XEP-0077 in-band registration
	"version";     -- XEP-0092: the reports show what the server says it is
	"vcard_legacy"; -- XEP-0054 vcard-temp (kept as PEP nodes: it loads pep)
	"blocklist";   -- XEP-0191
	"pep";         -- XEP-0163, XEP-0223 private PEP (XEP-0402 bookmarks)
	"private";     -- XEP-0049 private XML (XEP-0048 bookmarks)
	"server_contact_info"; -- XEP-0157 (contact_info below)
	"admin_shell"; -- `prosodyctl shell ...` (inspection, e.g. `s2s:show()`)
}

allow_registration = true

-- XEP-0191 3.3: a blocked contact's message SHOULD come back as service-unavailable;
-- mod_blocklist drops it silently unless asked (docs/compliance.md).
bounce_blocked_messages = true

-- XEP-0157: the case X0157 looks for xmpp:admin@<domain> in admin-addresses.
contact_info = { admin = { "xmpp:admin@prosody.test", "mailto:admin@prosody.test" } }

-- TURN (XEP-0215, case J4): the lab's coturn, credentials from its shared secret (TURN
-- REST API), over UDP and TCP.
turn_external_host = "turn.xmpp-lab.test"
turn_external_port = 3478
turn_external_secret = "(the lab's TURN secret: .lab/<lab>/turn/secret)"
turn_external_tcp = true

-- Client connections: STARTTLS required.
c2s_require_encryption = true

-- Server connections: TLS required, certificates verified (chain + name).
s2s_require_encryption = true
s2s_secure_auth = true
-- Peers allowed to authenticate with dialback instead of a verified certificate.
s2s_insecure_domains = { "jabberd2.test"; }

-- One certificate for the host and its components (its SAN names them all); trust
-- the lab CA in every TLS context (merged with the system capath).
ssl = {
	certificate = "/etc/xmpp-lab/cert.pem";
	key = "/etc/xmpp-lab/key.pem";
	cafile = "/etc/xmpp-lab/ca.pem";
}

-- XEP-0368: TLS from the first byte for clients (SRV _xmpps-client).
c2s_direct_tls_ports = { 5223 }

-- XEP-0368 for servers: TLS from the first byte (SRV _xmpps-server).
s2s_direct_tls_ports = { 5270 }

-- DNS: libunbound (lua-unbound) reads /etc/resolv.conf; Prosody disables its
-- hosts-file lookup, so every peer domain needs a DNS record.
-- libunbound also answers NXDOMAIN itself for names under "test." (a default
-- local-zone for RFC 6761 names), so lab domains would never be asked for:
-- make that zone transparent (passed on to the lab DNS).
unbound = {
	resolvconf = "/etc/resolv.conf";
	options = { ["local-zone:"] = "test. transparent" };
}

-- XEP-0363 HTTP upload (case X0363): mod_http_file_share on the component below, served
-- over HTTPS only, with the lab certificate (its SAN holds upload.prosody.test).
http_ports = { }
https_ports = { 5281 }
https_interfaces = { "*" }
https_ssl = {
	certificate = "/etc/xmpp-lab/cert.pem";
	key = "/etc/xmpp-lab/key.pem";
}

-- XEP-0114 (case X0114): the lab's component connects from the client network.
component_ports = { 5347 }
component_interfaces = { "*" }

VirtualHost "prosody.test"

Component "conference.prosody.test" "muc"
	modules_enabled = { "muc_mam" }

-- XEP-0363 (case X0363): slots for this host's users; files up to 1 MiB.
Component "upload.prosody.test" "http_file_share"
	http_file_share_size_limit = 1048576

-- XEP-0114 (case X0114): an external component; its secret is the lab's own.
Component "component.prosody.test"
	component_secret = "made-by-lab-up"

-- Jingle (J2, J6): the XEP-0065 SOCKS5 bytestreams proxy, on the module's default port
-- 5000 (proxy65_ports would be a global option). Its users connect to the name it
-- announces, which the lab DNS resolves to this server; only users with a c2s session
-- here may use it (the module's default without proxy65_acl or proxy65_open_access).
Component "proxy.prosody.test" "proxy65"
	proxy65_address = "proxy.prosody.test"
