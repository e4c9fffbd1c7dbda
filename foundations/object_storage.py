"""Files in an S3-compatible bucket, for web processes and workers on several machines. Its own
module, so that a setup with local files never loads boto3."""

from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from foundations.local_files import LimitedReader
from foundations.storage import _Empty


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
