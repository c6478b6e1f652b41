"""TLS for the game port: the server's context from settings, and a client's.

Built while the settings are validated, so a missing file, a key that does
not match its certificate, or a half-configured pair stops start-up with a
message naming the setting, before any port is bound.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ServerSettings


class TLSConfigError(ValueError):
    """A TLS setting names a file that is missing or cannot be used."""


def _readable(setting: str, path: str) -> None:
    if not Path(path).is_file():
        raise TLSConfigError(f"{setting}: no such file {path!r}")


def server_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The SSLContext the listener uses, or None when TLS is off."""
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if not (cert or key or ca):
        return None
    if not cert or not key:
        missing = "tls_key_file" if cert else "tls_cert_file"
        raise TLSConfigError(f"{missing}: TLS needs both tls_cert_file and tls_key_file")
    _readable("tls_cert_file", cert)
    _readable("tls_key_file", key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise TLSConfigError(
            f"tls_cert_file/tls_key_file: cannot load {cert!r} with {key!r}: {exc}"
        ) from None
    if ca:
        _readable("tls_client_ca_file", ca)
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"tls_client_ca_file: cannot load {ca!r}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client context: the system's CAs, or ``ca_file``'s; a client certificate if given.

    ``verify=False`` is for the server's own health probe on 127.0.0.1, which
    checks that the process answers, not who it is.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
