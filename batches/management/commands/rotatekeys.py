from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from batches import crypto
from batches.models import Workspace


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored API key and webhook signing secret with the first key in "
        "FERNET_KEYS."
    )

    @transaction.atomic
    def handle(self, **options: Any) -> None:
        count = 0
        for workspace in Workspace.objects.select_for_update():
            workspace.api_key_encrypted = crypto.rotate(workspace.api_key_encrypted)
            if workspace.webhook_secret_encrypted:
                workspace.webhook_secret_encrypted = crypto.rotate(
                    workspace.webhook_secret_encrypted
                )
            workspace.save(update_fields=["api_key_encrypted", "webhook_secret_encrypted"])
            count += 1
        self.stdout.write(
            f"Re-encrypted the keys and webhook secrets of {count} workspace(s). Older "
            "FERNET_KEYS can now go."
        )
