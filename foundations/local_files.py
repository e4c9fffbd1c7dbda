"""What reading and scratch work need without a storage backend: a byte-limited reader, and this
machine's scratch directory. Apart from `foundations.storage` so that checking a file from the shell
(batches.intake.command_line) does not import Django's storage machinery to get them."""

from collections.abc import Buffer
from pathlib import Path
from typing import Protocol, Self

from django.conf import settings


class BinaryStream(Protocol):
    """What LimitedReader reads: a binary file, a storage's file, a boto3 body."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class LimitedReader:
    """At most `length` bytes of a binary stream, then end of file; closes the stream."""

    def __init__(self, stream: BinaryStream, length: int | None) -> None:
        self.stream = stream
        self.left = length

    def read(self, size: int = -1) -> bytes:
        if self.left is None:
            return self.stream.read(size)
        if self.left <= 0:
            return b""
        if size is None or size < 0 or size > self.left:
            size = self.left
        data = self.stream.read(size)
        self.left -= len(data)
        return data

    def readinto(self, buffer: Buffer) -> int:
        """Fill `buffer` (no new bytes object for each block: counting lines at memory speed)."""
        view = memoryview(buffer)
        if self.left is not None:
            view = view[: max(0, self.left)]
        if not len(view):
            return 0
        if hasattr(self.stream, "readinto"):
            count = self.stream.readinto(view)
        else:
            data = self.stream.read(len(view))
            count = len(data)
            view[:count] = data
        if self.left is not None:
            self.left -= count
        return count

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def scratch_dir() -> Path:
    """Where work keeps its temporary files (checks, ingestions): on this machine's own disk,
    under VAR_DIR."""
    directory = Path(settings.VAR_DIR) / "tmp"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
