"""The lab's throwaway certificate authority and the server certificates it issues."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
# Tolerate clocks in containers a little behind the host's.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xmpp interop lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(lab_name: str, permitted_domains: list[str] | None = None) -> Issued:
    """A self-signed CA. With ``permitted_domains`` it may only vouch for those names."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"xmpp interop lab CA ({lab_name})"))
        .issuer_name(_name(f"xmpp interop lab CA ({lab_name})"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if permitted_domains:
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=[x509.DNSName(d) for d in permitted_domains],
                                 excluded_subtrees=None),
            critical=True)
    return Issued(key, builder.sign(key, hashes.SHA256()))


BOTH_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def issue(ca: Issued | None, names: list[str], valid_from: datetime.datetime | None = None,
          valid_until: datetime.datetime | None = None, usages=BOTH_USAGES) -> Issued:
    """A certificate for ``names`` (first = subject), usable as TLS server and client certificate.

    s2s connections present it as a client certificate too, so it carries both EKUs by
    default. ``ca`` None: self-signed. The other arguments make the faulty certificates of
    the fault scenarios (lab/cases/server_faults.py).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    signing_key = ca.key if ca else key
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.cert.subject if ca else _name(names[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from or now - BACKDATE)
        .not_valid_after(valid_until or now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return Issued(key, cert)


def permitted(authority: Issued) -> list[str] | None:
    """The domains a name-constrained CA may vouch for; None when unconstrained."""
    try:
        constraints = authority.cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    return sorted(name.value for name in constraints.permitted_subtrees or [])


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)


def read(key_path: Path, cert_path: Path) -> Issued | None:
    """The key and certificate at those paths, or None where either is missing."""
    if not (key_path.exists() and cert_path.exists()):
        return None
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return Issued(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))


def secret(authority: Issued, purpose: str) -> str:
    """A secret of the lab's for ``purpose`` (a component's password): made from its CA's key,
    so every part of the tool derives the same one, and a lab made again gets a new one.
    15 characters: jabberd2's router has one secret for every XEP-0114 component, and
    mu-conference 0.8 (its MUC) fails its handshake with 16 or more (docs/compliance.md)."""
    return hmac.new(authority.key_pem, purpose.encode(), hashlib.sha256).hexdigest()[:15]


def lab_secret(state_dir: Path, purpose: str) -> str | None:
    """``secret`` of the lab whose state is in ``state_dir`` (None before its CA exists)."""
    authority = read(state_dir / "ca" / "ca.key", state_dir / "ca" / "ca.pem")
    return secret(authority, purpose) if authority else None


def load_or_create_ca(directory: Path, lab_name: str, permitted_domains: list[str] | None) -> Issued:
    """The lab's CA from ``directory``, created there on first use (key mode 0600)."""
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    existing = read(key_path, cert_path)
    if existing is not None:
        allowed = permitted(existing)
        if (allowed is None and not permitted_domains) or (
                allowed is not None and permitted_domains and set(permitted_domains) <= set(allowed)):
            return existing
        # A domain the constraints do not cover, or constraints switched on or off:
        # a new CA (and so new certificates).
    ca = create_ca(lab_name, permitted_domains)
    write_private(key_path, ca.key_pem)
    cert_path.write_bytes(ca.cert_pem)
    return ca


def load_or_issue(directory: Path, authority: Issued, names: list[str]) -> Issued:
    """The certificate in ``directory`` if ``authority`` issued it for ``names``; else a new one."""
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    if key_path.exists() and cert_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        try:
            cert.verify_directly_issued_by(authority.cert)
            if san.get_values_for_type(x509.DNSName) == names:
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
                return Issued(key, cert)
        except (ValueError, TypeError, InvalidSignature):
            pass  # issued by an earlier CA of this lab
    issued = issue(authority, names)
    write_private(key_path, issued.key_pem)
    cert_path.write_bytes(issued.cert_pem)
    return issued
