"""File checksums for manifests (inputs, model files)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (inputs and model files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path | str, chunk: int = 1 << 20) -> str:
    """Git's object id of a file's content (SHA-1 of ``blob <size>\\0`` + bytes).

    A repository's tree lists this id for every file at a commit, so a file fetched from
    a pinned commit can be checked against the id the tree gives, without trusting the
    server that sent it.
    """
    path = Path(path)
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
