"""xmpp interop lab: real XMPP servers, certificates and DNS in Docker, tested against each other."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The lab directory that ships with the tool: the default lab (lab.yml), the image folders
# (images/<name>/: the server kinds' with their kind.yml, the DNS's and the client stacks')
# and every template (templates/<kind>/, templates/report/, templates/starter/). In a
# checkout it is the repository's root; a wheel carries the same folders in lab/_data/.
DATA_DIR = PACKAGE_DIR / "_data" if (PACKAGE_DIR / "_data").is_dir() else PACKAGE_DIR.parent
IMAGES_DIR = DATA_DIR / "images"
TEMPLATES_DIR = DATA_DIR / "templates"
