"""Claims: the one way two processes agree which of them does a piece of work.

A claim is a lease on one row, kept in one of its DateTimeFields. It is taken with a conditional
UPDATE (only when the field is empty or its time has passed, and the row count says who won),
renewed by its holder while the work goes on, and released only by that holder. The lease's
expiry is also the holder's token: renewing or releasing asks for the row whose field still
holds it, so a holder whose lease lapsed and was taken over can no longer touch the new holder's
claim. A process that dies stops renewing, and the work is free again within one lease.
"""

from datetime import datetime, timedelta

from django.db.models import Model, Q
from django.utils import timezone


class Claim:
    def __init__(self, model: type[Model], pk, field: str, until: datetime, lease: timedelta):
        self.model = model
        self.pk = pk
        self.field = field
        self.until = until
        self.lease = lease

    @classmethod
    def take(
        cls, model: type[Model], pk, field: str, lease: timedelta, *, where: Q | None = None
    ) -> "Claim | None":
        """The claim on row `pk` (of the rows `where` allows), or None when another holds it."""
        now = timezone.now()
        until = now + lease
        free = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now})
        rows = model.objects.filter(pk=pk).filter(where or Q()).filter(free)
        if rows.update(**{field: until}) != 1:
            return None
        return cls(model, pk, field, until, lease)

    def _ours(self):
        return self.model.objects.filter(pk=self.pk, **{self.field: self.until})

    def renew(self, **fields) -> bool:
        """Extend the lease (writing `fields` in the same UPDATE); False if it was lost."""
        until = max(timezone.now() + self.lease, self.until)
        if self._ours().update(**{self.field: until}, **fields) != 1:
            return False
        self.until = until
        return True

    def release(self, **fields) -> bool:
        """Let go of the claim, writing `fields` with it; False if it was no longer ours."""
        return self._ours().update(**{self.field: None}, **fields) == 1

    def held(self):
        """A queryset of the claimed row, empty once the claim is lost: `.update()` on it writes
        only while the claim holds."""
        return self._ours()
