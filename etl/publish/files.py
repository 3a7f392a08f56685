"""Published data files that compute their SHA-256 while they are written.

`datapackage.json` carries every data file's hash. Reading a gigabyte of freshly written files
back only to hash them cost a second pass over the bytes (and the system time of copying them
out of the page cache again); a `HashedFile` hashes each block on its way to the file instead,
so the digest is ready when the file is closed. The bytes written are exactly the bytes hashed:
the CSV and Parquet writers write only through `write`, from the start of the file, in order.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any


class HashedFile(io.RawIOBase):
    """A new file, written sequentially, that keeps the SHA-256 and size of what it was given.
    Pass it to `pyarrow.parquet.ParquetWriter` or `pyarrow.csv.CSVWriter` like any binary
    file; `sha256` is the file's digest once everything is written."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._file = path.open("wb")
        self._digest = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._file.write(view)
        self._digest.update(view)
        self._size += len(view)
        return len(view)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()
