"""``plantstream serve ROLE``: run a registered role (the ECS entry point)."""

from __future__ import annotations

from typing import Annotated

import click
import typer

from plantstream.runtime import ROLES, run_role
from plantstream.settings import load_settings

_ROLE_HELP = "which role to run: " + "; ".join(f"{name} ({ROLES.get(name).help})" for name in ROLES)


def serve(
    role: Annotated[str, typer.Argument(click_type=click.Choice(list(ROLES)), help=_ROLE_HELP)],
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="skip migrations")] = False,
) -> None:
    """Run a role against the configured services until SIGTERM."""
    run_role(role, load_settings(), migrate=not no_migrate)
