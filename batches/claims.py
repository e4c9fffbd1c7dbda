"""Claims: the one way two processes agree which of them does a piece of work.

A claim is a lease on one row, kept in one of its DateTimeFields. It is taken with a conditional
UPDATE (only when the field is empty or its time has passed, and the row count says who won),
renewed by its holder while the work goes on, and released only by that holder. The lease's
expiry is also the holder's token: renewing or releasing asks for the row whose field still
holds it, so a holder whose lease lapsed and was taken over can no longer touch the new holder's
claim.

Leases are short (CLAIM_LEASE_SECONDS, 20 s by default). Work that runs longer keeps its claim
alive (`kept_alive`): a thread renews it every few seconds for as long as the work reports
progress. A worker that is killed stops renewing, so its work is free again within one lease and
the next beat tick hands it out; a worker that hangs without progress lets go the same way.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)


def lease() -> timedelta:
    return timedelta(seconds=settings.CLAIM_LEASE_SECONDS)


# M: the model whose rows are claimed, any model, so its rows are reached through
# `_default_manager` (a model need not name its manager `objects`).
class Claim[M: Model]:
    def __init__(
        self, model: type[M], pk: int, field: str, until: datetime, lease: timedelta
    ) -> None:
        self.model = model
        self.pk = pk
        self.field = field
        self.until = until
        self.lease = lease
        # The holder's thread and its keep-alive thread both renew: one at a time, so neither
        # finds the other's new token where it expected its own.
        self._lock = threading.Lock()
        self._progress_at = time.monotonic()

    @classmethod
    def take(
        cls,
        model: type[M],
        pk: int,
        field: str,
        duration: timedelta | None = None,
        *,
        where: Q | None = None,
    ) -> "Claim[M] | None":
        """The claim on row `pk` (of the rows `where` allows), or None when another holds it."""
        duration = duration or lease()
        now = timezone.now()
        until = now + duration
        free = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now})
        rows = model._default_manager.filter(pk=pk).filter(where or Q()).filter(free)
        if rows.update(**{field: until}) != 1:
            return None
        return cls(model, pk, field, until, duration)

    def _ours(self) -> QuerySet[M]:
        return self.model._default_manager.filter(pk=self.pk, **{self.field: self.until})

    def renew(self, **fields: Any) -> bool:
        """Extend the lease (writing `fields` in the same UPDATE); False if it was lost."""
        with self._lock:
            until = max(timezone.now() + self.lease, self.until + timedelta(microseconds=1))
            if self._ours().update(**{self.field: until}, **fields) != 1:
                return False
            self.until = until
            return True

    def release(self, **fields: Any) -> bool:
        """Let go of the claim, writing `fields` with it; False if it was no longer ours."""
        with self._lock:
            return self._ours().update(**{self.field: None}, **fields) == 1

    def held(self) -> QuerySet[M]:
        """A queryset of the claimed row, empty once the claim is lost."""
        return self._ours()

    def progressed(self) -> None:
        """The work moved on: the keep-alive thread goes on renewing."""
        self._progress_at = time.monotonic()

    @contextmanager
    def kept_alive(self) -> Iterator["Claim[M]"]:
        """Renew the lease every CLAIM_RENEW_SECONDS from a thread of its own, while the work
        reports progress (`progressed()`) at least every CLAIM_STALL_SECONDS."""
        stop = threading.Event()
        self.progressed()

        def beat() -> None:
            try:
                while not stop.wait(settings.CLAIM_RENEW_SECONDS):
                    if time.monotonic() - self._progress_at > settings.CLAIM_STALL_SECONDS:
                        name = self.model.__name__
                        logger.warning("%s %s made no progress: its claim lapses", name, self.pk)
                        return
                    if not self.renew():
                        return
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=beat, name=f"claim-{self.field}-{self.pk}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=settings.CLAIM_RENEW_SECONDS + 5)
