"""`zoho-cdc zoho-sim`: run the Zoho Billing simulator (accounts + Billing API) on one port."""

from __future__ import annotations

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
        token_refusal_seconds: float = typer.Option(
            0.0, help="Refuse token requests for this long after start."
        ),
        seed: int = typer.Option(-1, help="Random seed for faults (<0: random)."),
        db: str = typer.Option("", help="SQLite file to keep records across restarts (default: in memory)."),
        log_level: str = typer.Option("warning", help="uvicorn log level."),
    ) -> None:
        """Run a Zoho Billing simulator: OAuth, customers, invoices, limits and fault injection."""
        import uvicorn

        from connectors.zoho_sim.app import build_app
        from connectors.zoho_sim.config import SimConfig, SimFaults, SimLimits
        from connectors.zoho_sim.core import Simulator
        from connectors.zoho_sim.server import uvicorn_config
        from consumer.commands.cli import fail

        for name, value in (
            ("--fault-500", fault_500),
            ("--fault-503", fault_503),
            ("--timeout-rate", timeout_rate),
            ("--lost-response-rate", lost_response_rate),
            ("--drop-request-rate", drop_request_rate),
        ):
            if not 0.0 <= value <= 1.0:
                fail(f"{name} must be a probability between 0 and 1.", code=2)
        config = SimConfig(
            client_id=client_id,
            client_secret=client_secret,
            refresh_tokens=tuple(refresh_token),
            organization_id=org_id,
            token_lifetime=token_lifetime,
            token_refresh_limit=token_refresh_limit,
            token_refresh_window=token_refresh_window,
            max_active_tokens=max_active_tokens,
            token_throttle_status=token_throttle_status,
            require_email=require_email,
            unique_display_names=unique_display_names,
            not_found_status=not_found_status,
            seed=seed if seed >= 0 else None,
            db_path=db or None,
            limits=SimLimits(
                per_window=rate_per_window,
                window_seconds=rate_window_seconds,
                daily=daily_limit,
                concurrency=concurrency,
                retry_after=retry_after if retry_after >= 0 else None,
            ),
            faults=SimFaults(
                error_500=fault_500,
                error_503=fault_503,
                latency=latency,
                timeout=timeout_rate,
                timeout_hold=timeout_hold,
                lost_response=lost_response_rate,
                drop_request=drop_request_rate,
                token_refusal_seconds=token_refusal_seconds,
            ),
        )
        typer.echo(
            f"Zoho simulator on http://{host}:{port} (API base http://{host}:{port}/billing/v1)", err=True
        )
        try:
            uvicorn.Server(uvicorn_config(build_app(Simulator(config)), host, port, log_level)).run()
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port.")
