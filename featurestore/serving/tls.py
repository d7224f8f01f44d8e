"""TLS for `featurestore serve` (gRPC and HTTP share one certificate and key) and its clients.

Given a certificate (PEM, the chain up from the server's own) and its unencrypted key, both
servers speak only TLS: a plaintext client is refused at the handshake. The files are read
and checked once in the parent, so a wrong path or a key that does not match fails
``serve`` with one line before any worker starts.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from featurestore.config import Config
from featurestore.errors import ConfigError


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate chain and its private key, PEM files."""

    cert: Path
    key: Path

    def check(self) -> None:
        """Fail with a ConfigError unless the files load and the key matches the certificate."""
        for what, path in (("certificate", self.cert), ("key", self.key)):
            if not path.is_file():
                raise ConfigError(f"TLS {what} {path} does not exist")

        def encrypted() -> bytes:  # without it, OpenSSL asks for the passphrase on the terminal
            raise ConfigError(
                f"TLS key {self.key} is encrypted (it needs a passphrase); serve takes an unencrypted "
                f"key: decrypt a copy with 'openssl pkey -in {self.key.name} -out server.key' and keep "
                "it readable only by the server's user"
            )

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                self.cert, self.key, password=encrypted
            )
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(
                f"TLS certificate {self.cert} and key {self.key} do not load together "
                f"(PEM files, key unencrypted and matching the certificate): {e}"
            ) from None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key.read_bytes(), self.cert.read_bytes())])

    def uvicorn_options(self) -> dict[str, Any]:
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}


def load_tls(config: Config, cert: Path | None = None, key: Path | None = None) -> TlsFiles | None:
    """The serve TLS files (arguments override the config's), checked; None for plaintext."""
    cert = cert or config.tls_cert
    key = key or config.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("certificate", "key") if cert else ("key", "certificate")
        raise ConfigError(
            f"a TLS {given} was given without its {missing}: give both (--tls-cert and --tls-key)"
        )
    tls = TlsFiles(cert.resolve(), key.resolve())
    tls.check()
    return tls


def channel_credentials(root_certificates: str | Path | bytes | None = None) -> grpc.ChannelCredentials:
    """Client TLS credentials: trust ``root_certificates`` (PEM bytes or a file), else the system CAs."""
    if isinstance(root_certificates, str | Path):
        path = Path(root_certificates)
        try:
            root_certificates = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the CA certificate {path}: {e.strerror}") from None
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)
