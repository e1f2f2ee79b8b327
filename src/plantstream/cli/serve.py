"""``plantstream serve ROLE``: run a registered role (the ECS entry point)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from plantstream.runtime import ROLES, run_role
from plantstream.settings import load_settings

if TYPE_CHECKING:
    RoleName = str
else:  # the choices of the argument are the registered roles, whatever they are
    RoleName = StrEnum("RoleName", {name: name for name in ROLES})

_ROLE_HELP = "which role to run: " + "; ".join(f"{name} ({ROLES.get(name).help})" for name in ROLES)


def serve(
    role: Annotated[RoleName, typer.Argument(help=_ROLE_HELP)],
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="skip migrations")] = False,
) -> None:
    """Run a role against the configured services until SIGTERM."""
    run_role(str(role), load_settings(), migrate=not no_migrate)
