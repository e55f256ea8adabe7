"""Images: a Debian base (pulled, or made locally when no registry answers); one image
per build folder (images/<name>/ for the DNS, the client stacks and the built-in server kinds,
a user's kind's own folder), tagged by a hash of that folder so an unchanged folder is never
rebuilt; and a kind's prebuilt image, used as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from lab import IMAGES_DIR
from lab.errors import LabError
from lab.servers import ServerKind
# Every image builds FROM the base of its Debian suite (build args BASE and RELEASE): the
# upstream image when one can be pulled, else a Debian rootfs made by mmdebstrap and
# imported. The DNS is built at the first client's release, each client at its own.


def base_tag(release: str = "bookworm") -> str:
    return f"xmpp-lab/base:{release}"


BASE = base_tag()
MIRROR = os.environ.get("LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Build containers get the host's proxy settings, if any (Docker's predefined build args).
PROXY_ARGS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")

# say(text) reports a step a person should see; transient=True only updates a status line.
Say = Callable[..., None]


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base(client: docker.DockerClient, say: Say, release: str = "bookworm") -> None:
    base, upstream = base_tag(release), f"debian:{release}-slim"
    if _exists(client, base):
        return
    try:
        say(f"pulling {upstream}", transient=True)
        client.images.pull(upstream).tag(base)
        return
    except docker.errors.APIError:
        say(f"{upstream} cannot be pulled: making {base} with mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="xmpp-lab-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        command = [_mmdebstrap(say), "--variant=minbase", "--include=ca-certificates", release, str(tarball), MIRROR]
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if result.returncode != 0 and "is expired" in result.stderr:
            # A mirror that lags behind serves a sid whose Release file has expired (it is
            # valid for days only). Taken as it is, and said: the option stays in the image.
            say(f"the mirror's {release} Release file has expired: taking it anyway (Acquire::Check-Valid-Until false)")
            command[1:1] = ['--aptopt=Acquire::Check-Valid-Until "false"']
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise LabError(f"making the {release} base image failed: mmdebstrap: {last}")
        say(f"importing the base rootfs as {base}")
        repository, tag = base.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)


def _mmdebstrap(say: Say) -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    # Only where installing it is ordinary: as root on a Debian-like host (as in CI).
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing mmdebstrap (apt-get)")
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "mmdebstrap"]):
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if result.returncode != 0:
                raise LabError(f"no base image can be pulled and installing mmdebstrap failed: "
                               f"{(result.stderr.strip().splitlines() or ['?'])[-1]}")
        return shutil.which("mmdebstrap") or "mmdebstrap"
    raise LabError("no base image: the Debian image cannot be pulled and mmdebstrap is not installed "
                   "(install it, e.g. 'sudo apt-get install mmdebstrap')")


def tag_for(name: str, folder: Path | None = None, release: str = "bookworm") -> str:
    """The tag of the build folder (default images/<name>) at ``release`` as it is now:
    changes whenever a file in it changes, but for a kind's kind.yml, which the image does
    not use (a changed description or log pattern builds nothing)."""
    folder = folder or IMAGES_DIR / name
    digest = hashlib.sha256(base_tag(release).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / "kind.yml"):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"xmpp-lab/{name}:{release}-{digest.hexdigest()[:12]}"


def kind_tag(kind: ServerKind, release: str = "bookworm") -> str:
    """The image a server kind runs at ``release``: its prebuilt reference, or the tag of its
    build folder."""
    return kind.prebuilt or tag_for(kind.name, kind.build_dir, release)


def ensure_kind_image(client: docker.DockerClient, kind: ServerKind, say: Say, release: str = "bookworm") -> str:
    """A kind's image at ``release``: built if missing; a prebuilt one taken from a local
    tag, else pulled."""
    if kind.prebuilt is None:
        ensure_images(client, [(kind.name, kind.build_dir, release)], say)
        return kind_tag(kind, release)
    if _exists(client, kind.prebuilt):
        return kind.prebuilt
    say(f"pulling {kind.prebuilt} (kind {kind.name})", transient=True)
    try:
        client.images.pull(kind.prebuilt)
    except (docker.errors.APIError, docker.errors.ImageNotFound) as error:
        reason = getattr(error, "explanation", None) or str(error)
        raise LabError(f"{kind.folder / 'kind.yml'}: image {kind.prebuilt} is not on this engine and cannot be "
                       f"pulled ({reason.strip()}): load it with 'docker load -i FILE.tar', or tag a local image "
                       f"as {kind.prebuilt}") from None
    return kind.prebuilt


def ensure_images(client: docker.DockerClient, builds: list[tuple[str, Path, str]], say: Say,
                  newer: tuple[str, ...] = ()) -> None:
    """Every image of ``builds`` ((name, build folder, release)) that is missing, built at the
    same time (they are independent: each only needs its base), with live progress. The
    releases in ``newer`` get a new base and every image again, without the build cache, so
    that apt installs what the mirror has today (sid moves; an image keeps what it got)."""
    missing = {(name if release == "bookworm" else f"{name}@{release}"): (name, folder, release)
               for name, folder, release in builds
               if release in newer or not _exists(client, tag_for(name, folder, release))}
    if not missing:
        return
    for release in newer:
        if _exists(client, base_tag(release)):
            say(f"taking {release} anew: its base and images are made again")
            client.images.remove(base_tag(release))  # the tag only: images built on it keep their layers
    for release in dict.fromkeys(release for _, _, release in missing.values()):
        ensure_base(client, say, release)
    progress = BuildProgress(say, list(missing), newer)
    errors: list[Exception] = []

    def build(label: str) -> None:
        try:
            _build(client, label, *missing[label], progress)
        except Exception as error:  # raised below, once every build has ended
            errors.append(error)
    # Daemon threads: on Ctrl-C the command ends at once and the engine, its request gone,
    # stops the builds; a pool's threads would be waited for at exit.
    threads = [threading.Thread(target=build, args=(label,), daemon=True) for label in missing]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.5)
        progress.show()
    if errors:
        raise errors[0]


class BuildProgress:
    """What each build is doing, shown as one status text: per image its step and time."""

    def __init__(self, say: Say, names: list[str], newer: tuple[str, ...] = ()):
        self.say, self.started, self.newer = say, time.monotonic(), newer
        self.state = {name: ("waiting", self.started, None) for name in names}
        self.lock = threading.Lock()

    def step(self, name: str, text: str) -> None:
        with self.lock:
            _, began, _ = self.state[name]
            self.state[name] = (text, began, None)
        self.show()

    def done(self, name: str) -> None:
        with self.lock:
            _, began, _ = self.state[name]
            self.state[name] = ("built", began, time.monotonic() - began)
        self.say(f"built image {name} in {time.monotonic() - began:.0f}s")

    def show(self) -> None:
        now = time.monotonic()
        with self.lock:
            lines = [f"building {len(self.state)} images ({now - self.started:.0f}s)"]
            for name, (text, began, took) in self.state.items():
                lines.append(f"  {name:<18} {text[:64]} ({(took if took is not None else now - began):.0f}s)")
        self.say("\n".join(lines), transient=True)


def _build(client: docker.DockerClient, label: str, image: str, folder: Path, release: str,
           progress: BuildProgress) -> None:
    name = label  # what the progress and errors call it
    buildargs = {"BASE": base_tag(release), "RELEASE": release,
                 **{k: os.environ[k] for k in PROXY_ARGS if k in os.environ}}
    log: list[str] = []
    progress.step(name, "sending the build context")
    try:
        for chunk in client.api.build(path=str(folder), tag=tag_for(image, folder, release), buildargs=buildargs,
                                      rm=True, forcerm=True, decode=True, nocache=release in progress.newer):
            if "error" in chunk:
                tail = " | ".join(line for line in log[-3:] if line)
                raise LabError(f"building image {name} failed: {chunk['error'].strip()}"
                               + (f" (last output: {tail})" if tail else ""))
            for line in chunk.get("stream", "").splitlines():
                if line.strip():
                    log.append(line.strip())
                    if line.startswith("Step "):
                        progress.step(name, line.strip())
    except docker.errors.APIError as error:
        raise LabError(f"building image {name} failed: {error.explanation or error}") from None
    progress.done(name)
