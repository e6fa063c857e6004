"""The build context: the files .dockerignore allows, plus an extra CA certificate to trust."""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
from pathlib import Path

from toolkit import reading
from toolkit.errors import InputError
from toolkit.paths import REPO_ROOT

CA_DIR = "docker/ca"


def allowed_roots(root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    """.dockerignore as an allowlist: its `!path` entries go in, its `**/name` patterns stay out."""
    lines = [ln.strip() for ln in (root / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#") and ln != "*"]
    return [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")], [ln for ln in lines if not ln.startswith("!")]


def build_context(extra_ca_cert: Path | None = None, root: Path = REPO_ROOT) -> io.BytesIO:
    """An uncompressed tar of the context, ready for the Docker API."""
    if extra_ca_cert is not None:
        _check_certificate(extra_ca_cert)
    keep, drop = allowed_roots(root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in keep:
            base = root / entry
            paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
            for path in paths:
                rel = path.relative_to(root).as_posix()
                if any(fnmatch.fnmatch(part, pattern.removeprefix("**/")) for part in rel.split("/") for pattern in drop):
                    continue
                if rel.startswith(CA_DIR + "/") and rel.endswith(".crt"):
                    continue  # only the certificate asked for in this build goes in
                tar.add(path, arcname=rel)
        if extra_ca_cert is not None:
            tar.add(extra_ca_cert, arcname=f"{CA_DIR}/extra.crt")
    buffer.seek(0)
    return buffer


def _check_certificate(path: Path) -> None:
    if not os.path.lexists(path):
        raise InputError(f"{path}: no such CA certificate file")
    if b"-----BEGIN CERTIFICATE-----" not in reading.read_bytes(path, what="CA certificate file"):
        raise InputError(f"{path}: not a PEM certificate (no BEGIN CERTIFICATE line)")
