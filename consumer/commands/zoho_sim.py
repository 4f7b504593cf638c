"""`zoho-cdc zoho-sim`: run the Zoho Billing simulator (accounts + Billing API) on one port."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

import typer


def register(app: typer.Typer) -> None:
    @app.command("zoho-sim")
    def zoho_sim_command(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(8099, help="Port to listen on (accounts and API share it)."),
        client_id: str = typer.Option("1000.SIMCLIENTID", help="OAuth client id the simulator accepts."),
        client_secret: str = typer.Option("sim-client-secret", help="OAuth client secret it accepts."),
        refresh_token: list[str] = typer.Option(
            ["1000.simrefresh.0000000000000000"], help="Refresh token(s) it accepts (repeatable)."
        ),
        org_id: str = typer.Option("10234695", help="Organisation id expected in the org header."),
        other_org_id: list[str] = typer.Option(
            [], help="Another organisation the user belongs to (repeatable): its own records, ids, counters."
        ),
        rate_per_window: int = typer.Option(100, help="Accepted API calls per rate window (code 44 beyond)."),
        rate_window_seconds: float = typer.Option(60.0, help="Length of the sliding rate window."),
        daily_limit: int = typer.Option(1000, help="Accepted API calls per UTC day (code 45 beyond)."),
        concurrency: int = typer.Option(5, help="Requests in flight (code 1070 beyond)."),
        retry_after: float = typer.Option(
            -1.0, help="Send Retry-After with this many seconds on 429s (<0: off)."
        ),
        token_lifetime: float = typer.Option(3600.0, help="Access token lifetime in seconds."),
        token_refresh_limit: int = typer.Option(10, help="Token requests per refresh token per window."),
        token_refresh_window: float = typer.Option(600.0, help="Token request window in seconds."),
        max_active_tokens: int = typer.Option(10, help="Active access tokens per refresh token."),
        token_throttle_status: int = typer.Option(
            400, help="HTTP status of the 'too many requests' refusal."
        ),
        require_email: bool = typer.Option(False, help="Reject customers without an email."),
        unique_display_names: bool = typer.Option(True, help="Reject duplicate display names (code 3062)."),
        not_found_status: int = typer.Option(404, help="HTTP status of code 1002 replies."),
        fault_500: float = typer.Option(0.0, help="Probability of HTTP 500 per API request."),
        fault_503: float = typer.Option(0.0, help="Probability of HTTP 503 per API request."),
        latency: float = typer.Option(0.0, help="Seconds added to every API request."),
        timeout_rate: float = typer.Option(
            0.0, help="Probability of holding the reply past the client timeout."
        ),
        timeout_hold: float = typer.Option(35.0, help="How long a 'timeout' reply is held."),
        lost_response_rate: float = typer.Option(
            0.0, help="Probability of applying, then dropping the reply."
        ),
        drop_request_rate: float = typer.Option(0.0, help="Probability of dropping the request unapplied."),
        fault_applied_502: float = typer.Option(
            0.0, help="Probability of applying a write, then answering a gateway's HTML 502."
        ),
        token_refusal_seconds: float = typer.Option(
            0.0, help="Refuse token requests for this long after start."
        ),
        organization_name: str = typer.Option(
            "zoho-cdc simulated organisation", help="Name GET /organizations gives the organisation."
        ),
        grant_code_lifetime: float = typer.Option(180.0, help="Seconds a self-client grant code works."),
        customer_custom_field: list[str] = typer.Option(
            [], help="A customer custom field the organisation defines (repeat; none: any label is kept)."
        ),
        seed: int = typer.Option(-1, help="Random seed for faults (<0: random)."),
        db: str = typer.Option("", help="SQLite file to keep records across restarts (default: in memory)."),
        log_level: str = typer.Option("warning", help="uvicorn log level."),
    ) -> None:
        """Run a Zoho Billing simulator: OAuth, customers, invoices, limits and fault injection."""
        options = dict(locals())  # the options by name, before anything else is bound here
        import uvicorn

        from connectors.zoho_sim.app import build_app
        from connectors.zoho_sim.core import Simulator
        from connectors.zoho_sim.server import uvicorn_config
        from consumer.commands.cli import fail

        for name in _PROBABILITIES:
            if not 0.0 <= options[name] <= 1.0:
                fail(f"--{name.replace('_', '-')} must be a probability between 0 and 1.", code=2)
        typer.echo(
            f"Zoho simulator on http://{host}:{port} (API base http://{host}:{port}/billing/v1)", err=True
        )
        try:
            uvicorn.Server(
                uvicorn_config(build_app(Simulator(sim_config(options))), host, port, log_level)
            ).run()
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port.")


#: Fault options that are probabilities, by the `SimFaults` field each sets.
_PROBABILITIES: Final = {
    "fault_500": "error_500",
    "fault_503": "error_503",
    "timeout_rate": "timeout",
    "lost_response_rate": "lost_response",
    "drop_request_rate": "drop_request",
    "fault_applied_502": "applied_502",
}
#: The other options that are not named as the config field they set, by that field.
_RENAMED: Final = {
    "refresh_token": "refresh_tokens",
    "org_id": "organization_id",
    "other_org_id": "other_organization_ids",
    "db": "db_path",
    "customer_custom_field": "customer_custom_fields",
}
_LIMITS: Final = {
    "rate_per_window": "per_window",
    "rate_window_seconds": "window_seconds",
    "daily_limit": "daily",
    "concurrency": "concurrency",
    "retry_after": "retry_after",
}
_FAULTS: Final = {
    **_PROBABILITIES,
    "latency": "latency",
    "timeout_hold": "timeout_hold",
    "token_refusal_seconds": "token_refusal_seconds",
}
#: Options whose "off" value on the command line (negative, empty) is None in the config.
_OFF: Final = {
    "retry_after": lambda v: v < 0,
    "seed": lambda v: v < 0,
    "db": lambda v: not v,
    "customer_custom_field": lambda v: not v,
}


def sim_config(options: dict[str, Any]) -> Any:
    """The simulator's `SimConfig` from the command's options: each option sets the field of its name,
    or the one the tables above name; an option at its "off" value sets None."""
    from connectors.zoho_sim.config import SimConfig, SimFaults, SimLimits

    values = {name: None if name in _OFF and _OFF[name](v) else v for name, v in options.items()}
    values["refresh_token"] = tuple(values["refresh_token"])
    values["other_org_id"] = tuple(values["other_org_id"])
    if values["customer_custom_field"] is not None:
        values["customer_custom_field"] = tuple(values["customer_custom_field"])

    def part(names: dict[str, str]) -> dict[str, Any]:
        return {field: values[name] for name, field in names.items()}

    top = {f.name for f in fields(SimConfig)}
    config = {name: v for name, v in values.items() if name in top} | part(_RENAMED)
    return SimConfig(**config, limits=SimLimits(**part(_LIMITS)), faults=SimFaults(**part(_FAULTS)))
