from django.core.management.base import BaseCommand
from django.db import transaction

from batches import crypto
from batches.models import Workspace


class Command(BaseCommand):
    help = "Re-encrypt every stored API key with the first key in FERNET_KEYS."

    @transaction.atomic
    def handle(self, **options):
        count = 0
        for workspace in Workspace.objects.select_for_update():
            workspace.api_key_encrypted = crypto.rotate(workspace.api_key_encrypted)
            workspace.save(update_fields=["api_key_encrypted"])
            count += 1
        self.stdout.write(f"Re-encrypted {count} API key(s). Older FERNET_KEYS can now go.")
