"""Change stamps: one value per workspace that moves whenever anything its pages show changes.

A poll asks "has anything this viewer can see changed since this region was rendered?". Counting
rows to find out costs as much as rendering; reading one stamp per workspace from the cache costs
a round trip to Redis. So every ORM write to a batch, an upload or an upload's part bumps its
workspace's stamp: saves and deletes through signals, and querysets' `update`, `bulk_update`,
`bulk_create` and `delete` through `StampedQuerySet`. The bump happens at once and again when
the transaction commits, so a poll that read the old rows just before the commit cannot keep
them under the new stamp.

Stamps save work; they are never the truth. A stamp the cache does not have (emptied, evicted,
Redis down) reads as "changed", and the region is rendered from the database. Which workspaces a
person can see is cached beside the stamps and forgotten when a membership changes.

This module imports no model: the models use it.
"""

import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import models, transaction

if TYPE_CHECKING:  # no model is imported before the app is ready (see above)
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    # The type of a queryset's rows (the stubs make every QuerySet subclass generic in it).
    from django.db.models.query import _Model

logger = logging.getLogger(__name__)

STAMP_KEY = "stamp:{}"
VISIBLE_KEY = "visible:{}"
# Long enough that a quiet workspace's polls keep hitting; a stamp that expires only costs one
# render.
STAMP_TIMEOUT = 24 * 3600
VISIBLE_TIMEOUT = 600


def _new_token() -> str:
    # Random, not the time: two bumps in one clock tick (or under a frozen clock) still differ.
    return secrets.token_hex(8)


def _set_stamps(workspace_ids: Iterable[int]) -> None:
    token = _new_token()
    try:
        cache.set_many({STAMP_KEY.format(pk): token for pk in workspace_ids}, STAMP_TIMEOUT)
    except Exception as error:
        logger.warning("Could not bump change stamps: %s", error)


def bump(workspace_ids: Iterable[int | None]) -> None:
    """Mark these workspaces changed, now and again when the current transaction commits."""
    ids = sorted({pk for pk in workspace_ids if pk is not None})
    if not ids:
        return
    _set_stamps(ids)
    transaction.on_commit(lambda: _set_stamps(ids))


def stamps(workspace_ids: Iterable[int]) -> tuple[str, ...] | None:
    """The current stamps of these workspaces, in their order; None if any is unknown."""
    ids = list(workspace_ids)
    if not ids:
        return ()
    keys = [STAMP_KEY.format(pk) for pk in ids]
    try:
        found = cache.get_many(keys)
    except Exception as error:
        logger.warning("Could not read change stamps: %s", error)
        return None
    if len(found) != len(keys):
        # Unknown stamps are set now, so the next poll can hit; this one renders.
        _set_stamps(pk for pk, key in zip(ids, keys, strict=True) if key not in found)
        return None
    return tuple(found[key] for key in keys)


# Who sees which workspace ------------------------------------------------------------------------


def visible_workspaces(
    user: "AbstractBaseUser | AnonymousUser", load: Callable[[], dict[str, int]]
) -> dict[str, int] | None:
    """{slug: id} of the workspaces `user` can see, from the cache, else from `load()` (a query)
    and kept. None when the cache cannot be reached (the caller then skips the shortcut)."""
    key = VISIBLE_KEY.format(user.pk)
    try:
        found = cache.get(key)
        if found is None:
            found = load()
            cache.set(key, found, VISIBLE_TIMEOUT)
    except Exception as error:
        logger.warning("Could not read visible workspaces: %s", error)
        return None
    return found


def forget_visibility(user_ids: Iterable[int | None]) -> None:
    keys = [VISIBLE_KEY.format(pk) for pk in set(user_ids) if pk is not None]
    if not keys:
        return
    try:
        cache.delete_many(keys)
        transaction.on_commit(lambda: cache.delete_many(keys))
    except Exception as error:
        logger.warning("Could not forget visible workspaces: %s", error)


# Writes that bump ---------------------------------------------------------------------------------


# Which field of each stamped model leads to its workspace's id ("workspace_id",
# "submission__workspace_id"): registered by the app as it starts (batches/apps.py).
_workspace_paths: dict[type[models.Model], str] = {}


def register(model: type[models.Model], path: str) -> None:
    _workspace_paths[model] = path


def workspace_id_of(obj: models.Model) -> int | None:
    """The workspace id of a stamped model's instance, following its registered path."""
    value: object = obj
    for step in _workspace_paths[type(obj)].split("__"):
        value = getattr(value, step, None)
        if value is None:
            return None
    return value if isinstance(value, int) else None


def stamp_saved(sender: type[models.Model], instance: models.Model, **kwargs: object) -> None:
    """Signal receiver (post_save, post_delete) for every registered model."""
    bump([workspace_id_of(instance)])


class StampedQuerySet(models.QuerySet):
    """A queryset whose writes bump the stamps of the workspaces they touch. (`update` and
    `delete` first read which workspaces their rows are in: one indexed query.)"""

    def _workspace_ids(self) -> list[int | None]:
        path = _workspace_paths[self.model]
        return list(self.order_by().values_list(path, flat=True).distinct())

    def update(self, **kwargs: Any) -> int:
        ids = self._workspace_ids()
        changed = super().update(**kwargs)
        if changed:
            bump(ids)
        return changed

    def delete(self) -> tuple[int, dict[str, int]]:
        ids = self._workspace_ids()
        deleted = super().delete()
        if deleted[0]:
            bump(ids)
        return deleted

    def bulk_update(
        self, objs: Iterable["_Model"], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        objs = list(objs)
        changed = super().bulk_update(objs, fields, batch_size=batch_size)
        bump(workspace_id_of(obj) for obj in objs)
        return changed

    def bulk_create(self, objs: Iterable["_Model"], *args: Any, **kwargs: Any) -> list["_Model"]:
        objs = list(objs)
        created = super().bulk_create(objs, *args, **kwargs)
        bump(workspace_id_of(obj) for obj in objs)
        return created
