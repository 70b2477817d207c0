"""``flask users create-admin | set-role | deactivate``: accounts, through the users services.

Input is checked as the API checks it (the registration schema), and a service's refusal is
shown as its own message with a non-zero exit.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from marshmallow import ValidationError

from ecommerce.auth.schemas import RegisterSchema
from ecommerce.errors import DomainError
from ecommerce.users import services as user_services
from ecommerce.users.models import Role


def _validation_failure(error: ValidationError) -> click.ClickException:
    lines = [
        f"  {field}: {' '.join(messages) if isinstance(messages, list) else messages}"
        for field, messages in sorted(error.normalized_messages().items())
    ]
    return click.ClickException("\n".join(["Invalid account details:", *lines]))


@click.command("create-admin")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def create_admin_command(username: str, email: str, password: str) -> None:
    """Create an admin account."""
    try:
        account = RegisterSchema(only=("username", "email", "password")).load(
            {"username": username, "email": email, "password": password}
        )
    except ValidationError as error:
        raise _validation_failure(error) from None
    try:
        user = user_services.create_admin(account["username"], account["email"], account["password"])
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"Admin {user.username} created with id {user.id}.")


@click.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(Role.values()))
@with_appcontext
def set_role_command(username: str, role: str) -> None:
    """Give an existing account a role."""
    try:
        user_services.set_role(username, Role(role))
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"{username} is now {role}.")


@click.command("deactivate")
@click.argument("username")
@with_appcontext
def deactivate_command(username: str) -> None:
    """Block an account: it can no longer log in and its tokens stop working."""
    try:
        user_services.deactivate_user(username)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"{username} is deactivated.")
