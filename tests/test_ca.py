import stat

import pytest

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import ca
from lab.cases import builtin


def test_server_certificate_verifies_against_the_ca_with_expected_names():
    authority = ca.create_ca("t")
    issued = ca.issue(authority, ["prosody.test", "conference.prosody.test"])
    issued.cert.verify_directly_issued_by(authority.cert)
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["prosody.test", "conference.prosody.test"]


def test_server_certificate_is_good_for_tls_server_and_client():
    issued = ca.issue(ca.create_ca("t"), ["ejabberd.test"])
    usages = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert issued.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_certificate_from_another_ca_does_not_verify():
    issued = ca.issue(ca.create_ca("a"), ["prosody.test"])
    with pytest.raises(ValueError, match="Issuer certificate subject does not match certificate issuer"):
        issued.cert.verify_directly_issued_by(ca.create_ca("b").cert)
    # Same name, another key: only the signature tells them apart.
    with pytest.raises(InvalidSignature):
        issued.cert.verify_directly_issued_by(ca.create_ca("a").cert)


def test_name_constraints_limit_the_ca_to_lab_domains():
    authority = ca.create_ca("t", ["prosody.test", "ejabberd.test"])
    constraints = authority.cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert [n.value for n in constraints.value.permitted_subtrees] == ["prosody.test", "ejabberd.test"]


def test_ca_is_kept_with_a_private_key_only_its_owner_can_read(tmp_path):
    first = ca.load_or_create_ca(tmp_path / "ca", "t", None)
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    again = ca.load_or_create_ca(tmp_path / "ca", "t", None)
    assert again.cert == first.cert


def _verify(authority, issued, name):
    """Path validation as a TLS client does it (cryptography's verifier enforces name constraints)."""
    from cryptography.x509.verification import PolicyBuilder, Store
    verifier = PolicyBuilder().store(Store([authority.cert])).build_server_verifier(x509.DNSName(name))
    return verifier.verify(issued.cert, [])


def test_constrained_ca_vouches_for_lab_domains_and_nothing_else():
    from cryptography.x509.verification import VerificationError
    authority = ca.create_ca("t", ["prosody.test"])
    _verify(authority, ca.issue(authority, ["prosody.test", "conference.prosody.test"]), "conference.prosody.test")
    with pytest.raises(VerificationError):
        _verify(authority, ca.issue(authority, ["www.example.com"]), "www.example.com")


def test_ca_is_replaced_only_when_its_constraints_no_longer_fit(tmp_path):
    first = ca.load_or_create_ca(tmp_path, "t", ["a.test"])
    assert ca.load_or_create_ca(tmp_path, "t", ["a.test"]).cert == first.cert
    second = ca.load_or_create_ca(tmp_path, "t", ["a.test", "b.test"])  # a domain added
    assert second.cert != first.cert and ca.permitted(second) == ["a.test", "b.test"]
    assert ca.load_or_create_ca(tmp_path, "t", ["b.test"]).cert == second.cert  # one removed
    unconstrained = ca.load_or_create_ca(tmp_path, "t", None)
    assert ca.permitted(unconstrained) is None


def test_server_certificate_is_kept_until_its_ca_or_names_change(tmp_path):
    authority = ca.create_ca("t")
    first = ca.load_or_issue(tmp_path, authority, ["a.test"])
    assert ca.load_or_issue(tmp_path, authority, ["a.test"]).cert == first.cert
    renamed = ca.load_or_issue(tmp_path, authority, ["a.test", "conference.a.test"])
    assert renamed.cert != first.cert
    assert ca.load_or_issue(tmp_path, ca.create_ca("t"), ["a.test", "conference.a.test"]).cert != renamed.cert
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600


def verify(issued: ca.Issued, chain: bytes, authority: ca.Issued, name: str, as_client: bool = False) -> str:
    """"ok", or why the lab CA's trust rejects ``issued`` (with ``chain``) for ``name`` (RFC
    5280 path validation with the Web PKI profile, as a TLS peer would check it)."""
    from cryptography.x509 import verification
    store = verification.Store([authority.cert])
    intermediates = [c for c in x509.load_pem_x509_certificates(chain)[1:] if c != authority.cert]
    builder = verification.PolicyBuilder().store(store)
    try:
        if as_client:
            builder.build_client_verifier().verify(issued.cert, intermediates)
        else:
            builder.build_server_verifier(verification.DNSName(name)).verify(issued.cert, intermediates)
    except verification.VerificationError as error:
        return str(error)
    return "ok"


FAULT = {case.id: case.phase for case in builtin() if getattr(case.phase, "certificate", None)}


def test_each_fault_certificate_fails_the_check_it_is_about_and_no_other():
    authority = ca.create_ca("t")
    names, other = ["prosody.test", "conference.prosody.test"], ["ejabberd.test"]
    good = ca.issue(authority, names)
    assert verify(good, good.cert_pem, authority, "prosody.test") == "ok"
    assert verify(good, good.cert_pem, authority, "prosody.test", as_client=True) == "ok"
    results = {}
    for fault, setup in FAULT.items():
        issued, chain = setup.certificate(authority, names, other)
        results[fault] = (verify(issued, chain, authority, "prosody.test"),
                          verify(issued, chain, authority, "prosody.test", as_client=True))
    assert "no matching subjectAltName" in results["F3a"][0] and results["F3a"][1] == "ok"  # right CA, other name
    assert all("not valid at validation time" in r for r in results["F3b"] + results["F3e"]), results
    assert all("candidates exhausted" in r for r in results["F3c"] + results["F3d"]), results  # no path to the lab CA
    assert results["F4"][0] == "ok" and "required EKU not found" in results["F4"][1], results["F4"]


def test_fault_certificates_present_their_chain():
    authority = ca.create_ca("t")
    _, chain = FAULT["F3c"].certificate(authority, ["prosody.test"], ["ejabberd.test"])
    assert len(x509.load_pem_x509_certificates(chain)) == 1  # self-signed: no CA
    issued, chain = FAULT["F3d"].certificate(authority, ["prosody.test"], ["ejabberd.test"])
    second = x509.load_pem_x509_certificates(chain)[1]
    assert second != authority.cert and issued.cert.issuer == second.subject
    _, chain = FAULT["F3b"].certificate(authority, ["prosody.test"], ["ejabberd.test"])
    assert x509.load_pem_x509_certificates(chain)[1] == authority.cert
