"""Writing an export to disk while hashing it, and checking the hash at the end."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from chainlog_sdk.errors import ChainlogError, ChecksumMismatch

#: The header carrying the export file's SHA-256 (hex).
SHA256_HEADER = "x-chainlog-sha256"

Destination = str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True, slots=True)
class Download:
    """A downloaded export: where (None for a file object), how many bytes, their SHA-256."""

    path: Path | None
    size: int
    sha256: str


class Sink:
    """Writes the body to a path or a binary file object, hashing every byte.

    To a path, the bytes go to ``<path>.part``, renamed only once the hash
    matches: ``path`` never holds a partial or corrupt export. A file object
    gets the bytes as they come; on a mismatch its content must be discarded.
    """

    def __init__(self, destination: Destination) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        if isinstance(destination, str | os.PathLike):
            self.path: Path | None = Path(destination)
            self._part: Path | None = self.path.with_name(self.path.name + ".part")
            self._file: BinaryIO = open(self._part, "wb")  # noqa: SIM115 closed in finish/abort
        else:
            self.path = self._part = None
            self._file = destination

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self, expected: str | None) -> Download:
        """Check the hash against ``expected`` (hex) and move the file in place."""
        actual = self._hash.hexdigest()
        if self._part is None:
            self._file.flush()
        else:
            self._file.close()
        if not expected:
            self.abort()
            raise ChainlogError(
                f"the download has no {SHA256_HEADER} header to check it against",
                code="checksum_missing",
            )
        if actual != expected.strip().lower():
            self.abort()
            raise ChecksumMismatch(expected, actual)
        if self._part is not None and self.path is not None:
            os.replace(self._part, self.path)
        return Download(self.path, self.size, actual)

    def abort(self) -> None:
        if self._part is not None:
            self._file.close()
            self._part.unlink(missing_ok=True)
