"""Where the dashboard's files live: local files under VAR_DIR, or an S3-compatible object store.

Every file (uploads, the requests a check prepared, problem reports, raw results) goes through
Django's storage API, so any process on any machine can do any job. Both backends add one thing
to that API, `stream(name, start, end)`: a file's bytes, or a byte range of them, read front to
back without first copying the whole file to local disk (django-storages' S3File downloads an
object whole before the first read). A check of a 2 GB upload, a download and one request's
preview all read this way.
"""

from django.core.files.storage import FileSystemStorage, default_storage
from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class LimitedReader:
    """At most `length` bytes of a binary stream, then end of file; closes the stream."""

    def __init__(self, stream, length: int | None):
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

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class LocalFileStorage(FileSystemStorage):
    """Files under MEDIA_ROOT (VAR_DIR/media): the default for one machine."""

    # Reading a byte range costs a seek: a large upload can be checked by several processes,
    # each reading its own range.
    cheap_ranges = True

    def stream(self, name: str, start: int = 0, end: int | None = None) -> LimitedReader:
        handle = self.open(name, "rb")
        if start:
            handle.seek(start)
        return LimitedReader(handle, None if end is None else max(0, end - start))


class ObjectStorage(S3Storage):
    """An S3 bucket (AWS, MinIO, R2, moto's server in the tests): for several machines."""

    # Each byte range is a request of its own: uploads are read in one stream.
    cheap_ranges = False

    def stream(self, name: str, start: int = 0, end: int | None = None) -> LimitedReader:
        obj = self.bucket.Object(self._normalize_name(clean_name(name)))
        if end is not None and end <= start:
            return LimitedReader(_Empty(), 0)
        options = {}
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            options["Range"] = f"bytes={start}-{last}"
        body = obj.get(**options)["Body"]
        return LimitedReader(body, None if end is None else end - start)


class _Empty:
    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def stream(name: str, start: int = 0, end: int | None = None, storage=None) -> LimitedReader:
    """The stored file `name` (bytes `start` to `end`) as a stream, on whatever storage is set."""
    storage = storage or default_storage
    if hasattr(storage, "stream"):
        return storage.stream(name, start, end)
    handle = storage.open(name, "rb")
    if start:
        handle.seek(start)
    return LimitedReader(handle, None if end is None else max(0, end - start))


def read_range(name: str, start: int, length: int, storage=None) -> bytes:
    with stream(name, start, start + length, storage=storage) as reader:
        return reader.read()
