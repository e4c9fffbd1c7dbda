"""Where the dashboard's files live: local files under VAR_DIR, or an S3-compatible object store.

Every file (uploads, the requests a check prepared, problem reports, raw results) goes through
Django's storage API, so any process on any machine can do any job. Both backends (this one, and
`foundations.object_storage` for S3) add one thing to that API, `stream(name, start, end)`: a
file's bytes, or a byte range of them, read front to back without first copying the whole file
to local disk (django-storages' S3File downloads an object whole before the first read). A
check of a 2 GB upload, a download and one request's preview all read this way.
"""

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage

from foundations.local_files import LimitedReader, scratch_dir


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


class _Empty:
    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def stream(
    name: str, start: int = 0, end: int | None = None, storage: Storage | None = None
) -> LimitedReader:
    """The stored file `name` (bytes `start` to `end`) as a stream, on whatever storage is set."""
    storage = storage or default_storage
    if hasattr(storage, "stream"):
        return storage.stream(name, start, end)
    handle = storage.open(name, "rb")
    if start:
        handle.seek(start)
    return LimitedReader(handle, None if end is None else max(0, end - start))


def read_range(name: str, start: int, length: int, storage: Storage | None = None) -> bytes:
    with stream(name, start, start + length, storage=storage) as reader:
        return reader.read()


class LocalFile(File):
    """A finished temporary file handed to storage: local storage moves it into place instead of
    copying it, object storage uploads it."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__(open(path, "rb"), name=name)  # noqa: SIM115 (File closes it)
        self.path_on_disk = path

    def temporary_file_path(self) -> str:
        return self.path_on_disk


def sweep_scratch() -> int:
    """Remove the temporary files that killed workers left: any not written to for longer than
    a task may run (no live task still writes it). Returns how many went."""
    import time

    oldest = time.time() - settings.CELERY_TASK_TIME_LIMIT - 60
    removed = 0
    for path in scratch_dir().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < oldest:
                path.unlink()
                removed += 1
        except OSError:
            continue  # another process swept it first
    return removed
