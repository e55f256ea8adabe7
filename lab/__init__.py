"""xmpp interop lab: real XMPP servers, certificates and DNS in Docker, tested against each other."""

from pathlib import Path

# Everything the lab needs ships inside the package: server kinds (kinds/), the images of
# the DNS and the client stacks (dockerfiles/), the runners, the default lab and schemas.
PACKAGE_DIR = Path(__file__).resolve().parent
