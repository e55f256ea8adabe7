"""xmpp interop lab: real XMPP servers, certificates and DNS in Docker, tested against each other."""

from pathlib import Path

# images/ and templates/ live beside the package in the checkout.
REPO_DIR = Path(__file__).resolve().parent.parent
