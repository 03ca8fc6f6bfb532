"""A lab's TLS files: a self-signed CA and a server certificate for 127.0.0.1, made with the
`openssl` command (argv lists), every file 0600 in a 0700 directory of the lab."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flowkeeper.lab.run import run

DAYS = "30"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # clients trust this
    cert: Path  # the server's certificate, signed by the CA
    key: Path  # the server's private key


def tls_files(directory: Path) -> TlsFiles:
    return TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def make_tls(directory: Path) -> TlsFiles:
    """Create the CA and the server certificate in `directory` (kept if already there)."""
    files = tls_files(directory)
    if all(p.exists() for p in (files.ca, files.cert, files.key)):
        return files
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    ca_key, csr, ext = directory / "ca.key", directory / "server.csr", directory / "server.ext"
    fd = os.open(ext, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(SERVER_EXT)
    run(
        ["openssl", "req", "-x509", *EC, "-keyout", str(ca_key), "-out", str(files.ca),
         "-days", DAYS, "-subj", "/CN=flowkeeper lab CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )  # fmt: skip
    run(
        ["openssl", "req", *EC, "-keyout", str(files.key), "-out", str(csr),
         "-subj", "/CN=127.0.0.1"]
    )  # fmt: skip
    run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(files.ca),
         "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(files.cert),
         "-days", DAYS, "-extfile", str(ext)]
    )  # fmt: skip
    for path in directory.iterdir():
        os.chmod(path, 0o600)
    return files
