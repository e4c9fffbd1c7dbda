from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.views.decorators.debug import sensitive_variables

from batches.models import Membership, Workspace
from batches.operations import workspaces as workspace_operations
from batches.outbound import validate_outbound_url
from foundations.env import env_str


def parse_member(value: str) -> tuple[str, str]:
    """USER or USER:ROLE; the role defaults to submitter."""
    username, _, role = value.partition(":")
    role = role or Membership.Role.SUBMITTER
    if role not in Membership.Role.values:
        raise CommandError(
            f"--member {value!r}: the role must be one of {', '.join(Membership.Role.values)}."
        )
    if not username:
        raise CommandError(f"--member {value!r}: name a user before the colon.")
    return username, role


class Command(BaseCommand):
    help = (
        "Create a workspace. The API key comes from the ANTHROPIC_API_KEY environment variable "
        "or --api-key-file, never from the command line (it would stay in the shell history)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--base-url", required=True, help="e.g. https://api.anthropic.com")
        parser.add_argument("--api-key-file", type=Path, help="a file holding the API key")
        parser.add_argument(
            "--member",
            action="append",
            default=[],
            metavar="USER[:ROLE]",
            help="a username to add, with a role (viewer, submitter or admin; submitter when "
            "left out); repeatable",
        )

    @sensitive_variables("key")
    def handle(
        self,
        name: str,
        base_url: str,
        api_key_file: Path | None,
        member: list[str],
        **options: Any,
    ) -> None:
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
        wanted = [parse_member(value) for value in member]
        users = {
            user.get_username(): user
            for user in get_user_model().objects.filter(username__in=[u for u, _ in wanted])
        }
        unknown = {username for username, _ in wanted} - users.keys()
        if unknown:
            raise CommandError(f"No such user: {', '.join(sorted(unknown))}.")
        workspace = workspace_operations.create(
            name,
            base_url,
            key,
            None,
            members=[(users[username], role) for username, role in wanted],
            where="command line",
        )
        self.stdout.write(
            f"Created workspace {workspace.name!r} ({workspace.slug}) on {workspace.base_url} "
            f"with key {workspace.api_key_hint}."
        )
