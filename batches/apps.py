from django.apps import AppConfig
from django.conf import settings

from dashboard.env import env_str


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batches"

    def first_run(self, say) -> None:
        """Called by `make run` after migrating: the Sandbox, and the real API when a key is set."""
        from batches.workspaces import ensure_real_api_workspace, ensure_sandbox

        if settings.EMULATOR_ENABLED:
            sandbox = ensure_sandbox()
            say(f"supervisor | Workspace {sandbox.name!r} uses the built-in emulator.")
        real = ensure_real_api_workspace(env_str("ANTHROPIC_API_KEY", ""))
        if real:
            say(
                f"supervisor | Workspace {real.name!r} created with the key from ANTHROPIC_API_KEY."
            )
