from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from batches.models import Workspace
from batches.outbound import validate_outbound_url
from batches.workspaces import create_workspace
from dashboard.env import env_str


class Command(BaseCommand):
    help = (
        "Create a workspace. The API key comes from the ANTHROPIC_API_KEY environment variable "
        "or --api-key-file, never from the command line (it would stay in the shell history)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--base-url", required=True, help="e.g. https://api.anthropic.com")
        parser.add_argument("--api-key-file", type=Path, help="a file holding the API key")
        parser.add_argument(
            "--member", action="append", default=[], help="a username to add (repeatable)"
        )

    def handle(self, name, base_url, api_key_file, member, **options):
        try:
            validate_outbound_url(base_url)
        except ValidationError as error:
            raise CommandError(f"--base-url {base_url!r}: {' '.join(error.messages)}") from None
        if api_key_file:
            try:
                key = api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError(f"Cannot read {api_key_file}: {exc.strerror}.") from None
        else:
            key = env_str("ANTHROPIC_API_KEY", "").strip()
        if not key:
            raise CommandError("No API key: set ANTHROPIC_API_KEY or pass --api-key-file.")
        if Workspace.objects.filter(name=name).exists():
            raise CommandError(f"A workspace named {name!r} already exists.")
        users = list(get_user_model().objects.filter(username__in=member))
        unknown = set(member) - {user.get_username() for user in users}
        if unknown:
            raise CommandError(f"No such user: {', '.join(sorted(unknown))}.")
        workspace = create_workspace(name, base_url, key, members=users)
        self.stdout.write(
            f"Created workspace {workspace.name!r} ({workspace.slug}) on {workspace.base_url} "
            f"with key {workspace.api_key_hint}."
        )
