"""TLS settings for a provider's store: paths or PEM text, checked before the first connection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme

from switchyard.config.loader import ConfigLoadError
from switchyard.providers.clienttls import ClientTLS, tls_files


def test_paths_are_used_as_they_are_and_pem_text_becomes_a_private_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    leaf = ca.issue_cert("client.example")
    files = tls_files(ClientTLS(ca=str(ca_path), cert=leaf.cert_chain_pems[0].bytes().decode(),
                                key=leaf.private_key_pem.bytes().decode()), "providers.x.tls")
    assert files.ca == str(ca_path)
    assert files.cert is not None and Path(files.cert).stat().st_mode & 0o077 == 0
    assert files.verify and files.context().verify_mode.name == "CERT_REQUIRED"


def test_insecure_skip_verify_turns_verification_off() -> None:
    files = tls_files(ClientTLS(insecure_skip_verify=True), "providers.x.tls")
    context = files.context()
    assert (context.check_hostname, context.verify_mode.name) == (False, "CERT_NONE")


@pytest.mark.parametrize(("tls", "message"), [
    (ClientTLS(cert="/nonexistent.pem"), "providers.x.tls: cert and key go together"),
    (ClientTLS(ca="/nonexistent/ca.pem"), ('providers.x.tls.ca: "/nonexistent/ca.pem" is '
                                          "neither a file nor PEM text")),
    (ClientTLS(ca="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
     "providers.x.tls: cannot use the certificates"),
])
def test_settings_that_cannot_work_stop_the_start_with_the_option_named(
        tls: ClientTLS, message: str) -> None:
    with pytest.raises(ConfigLoadError, match="^" + re.escape(message)):
        tls_files(tls, "providers.x.tls")
