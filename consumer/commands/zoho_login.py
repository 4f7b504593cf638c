"""`zoho-cdc zoho login`: walk through Zoho's self-client flow and print the settings to use."""

from __future__ import annotations

from pathlib import Path

import typer

zoho_app = typer.Typer(help="Zoho credentials.", no_args_is_help=True)


@zoho_app.command("login")
def login_command(
    dc: str = typer.Option(
        "",
        "--dc",
        help="Data centre: us, eu, in, au, jp, ca, cn, sa, or your API console's address (else asked).",
    ),
    accounts_url: str = typer.Option(
        "", help="An accounts server other than the data centre's (e.g. the Zoho simulator)."
    ),
    api_base: str = typer.Option("", help="An API base other than the one Zoho's reply names (simulator)."),
    client_id: str = typer.Option("", envvar="ZOHO_CLIENT_ID", help="The self-client's Client ID."),
    client_secret: str = typer.Option(
        "", envvar="ZOHO_CLIENT_SECRET", help="The self-client's Client Secret.", show_default=False
    ),
    code: str = typer.Option("", help="The grant code (else it is asked for)."),
    organization: str = typer.Option("", help="Organisation id, when the token sees several."),
    show_secrets: bool = typer.Option(False, "--show-secrets", help="Print the secrets unmasked."),
    write: Path = typer.Option(
        None, "--write", help="Write the settings, secrets included, to this file (0600)."
    ),
) -> None:
    """Exchange a self-client grant code once and print ZOHO_* settings for your organisation."""
    from connectors.zoho.oauth.data_centres import SCOPE_STRING, data_centre
    from consumer import event_loop
    from consumer.commands.cli import fail
    from consumer.jobs import zoho_login as login

    where = dc or (
        ""
        if accounts_url
        else typer.prompt("Data centre (us, eu, in, au, jp, ca, cn, sa) or console address")
    )
    centre = data_centre(where) if where else None
    if where and centre is None:
        fail(f"{where!r} is not a Zoho data centre: use one of us, eu, in, au, jp, ca, cn, sa.", code=2)
    accounts = (accounts_url or centre.accounts_url).rstrip("/")  # type: ignore[union-attr]
    typer.echo(
        f"1. Open {login.console_url(accounts)} > Self Client (create one if asked), tab Generate Code.\n"
        f"2. Scope (paste exactly):\n   {SCOPE_STRING}\n"
        "3. Time duration: 3 minutes; description: zoho-cdc; Create; choose your Billing organisation.\n"
        "4. Copy the code (it works once, for 3 minutes) and the Client ID and Client Secret"
        " (tab Client Secret)."
    )
    client_id = client_id or typer.prompt("Client ID")
    client_secret = client_secret or typer.prompt("Client Secret", hide_input=True)
    code = code or typer.prompt("Grant code", hide_input=True)
    try:
        grant = event_loop.run(login.exchange(accounts, client_id, client_secret, code))
        base = login.api_base_for(grant, centre, api_base or None)
        orgs = event_loop.run(login.organizations(base, grant))
        chosen = login.choose_organization(orgs, organization or None)
    except login.LoginError as exc:
        fail(str(exc))
        raise  # unreachable
    if chosen is None:
        for number, org in enumerate(orgs, 1):
            typer.echo(f"  {number}. {org.organization_id}  {org.name}")
        pick = 0
        while not 1 <= pick <= len(orgs):
            pick = typer.prompt(f"Organisation (1 to {len(orgs)}, or rerun with --organization ID)", type=int)
        chosen = orgs[pick - 1]
    credentials = login.Credentials(
        accounts, base, client_id, client_secret, grant.refresh_token, chosen.organization_id, chosen.name
    )
    _report(credentials, grant, show_secrets=show_secrets, write=write)


def _report(credentials, grant, *, show_secrets: bool, write: Path | None) -> None:  # type: ignore[no-untyped-def]
    from consumer import event_loop
    from consumer.commands.cli import settings_or_exit
    from consumer.jobs import zoho_login as login

    typer.echo(f"Organisation {credentials.organization_id} ({credentials.organization_name}). Settings:")
    for name, value in credentials.settings(show_secrets=show_secrets):
        typer.echo(f"{name}={value}")
    if write is not None:
        login.write_private(write, credentials.settings(show_secrets=True))
        typer.echo(f"Written, secrets included, to {write} (mode 0600).")
    elif not show_secrets:
        typer.echo("Secrets are masked: add --show-secrets, or --write FILE to keep them in a 0600 file.")
    database_url = settings_or_exit().database_url
    cached = event_loop.run(
        login.cache_access_token(database_url, credentials.accounts_url, credentials.client_id, grant)
    )
    typer.echo(
        "One token request spent (the exchange); its access token is cached in PostgreSQL, so doctor and run"
        " spend no refresh within the hour."
        if cached
        else "One token request spent (the exchange); DATABASE_URL was not reachable to cache its access"
        " token, so the first doctor or run spends one refresh."
    )
    typer.echo("Next: set these, then zoho-cdc doctor.")


def register(app: typer.Typer) -> None:
    app.add_typer(zoho_app, name="zoho")
