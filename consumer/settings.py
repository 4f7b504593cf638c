"""The one typed settings object, read from the environment (and an optional `.env`).

Every bad value is reported as one sentence naming the variable, so `zoho-cdc` never starts
with a half-valid configuration and never prints a traceback for a typo.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Zoho's documented defaults (see README "Zoho facts"): 100 calls/minute/organisation,
# 1,000 calls/day on the Free plan, 5 requests in flight.
DEFAULT_RATE_PER_MINUTE = 100
DEFAULT_DAILY_LIMIT = 1000
DEFAULT_MAX_CONCURRENCY = 5

SECRET_FIELDS = ("zoho_client_secret", "zoho_refresh_token")

# The match rules each entity knows (consumer/entities/*_calls.py MATCH_RULES: kept equal by a test).
_MATCH_RULES = {
    "zoho_customer_match_rules": ("account_number", "email"),
    "zoho_invoice_match_rules": ("invoice_number",),
}


def setting_default(name: str) -> Any:
    """The default of a setting. The option values the pipeline takes (`MappingConfig`, `EngineOptions`,
    `RunOptions`, `ApplyOptions`) default to it, so a default is written once: on its setting."""
    default = Settings.model_fields[name].default
    return default.get_secret_value() if isinstance(default, SecretStr) else default


class ConfigError(Exception):
    """Raised when the settings cannot be loaded; the message is meant for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- where things are -------------------------------------------------------------
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/zoho_cdc",
        description="PostgreSQL holding the source tables, the sync log and the entity map.",
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    topic_prefix: str = Field(
        "billing", description="Debezium topic.prefix; topics are <prefix>.public.<table>."
    )
    consumer_group: str = Field("zoho-sync", description="Consumer group of the live sync.")
    kafka_group_instance_id: str = Field(
        "",
        description="Static membership (group.instance.id), unique per instance; empty: dynamic membership.",
    )
    kafka_session_timeout_ms: int = Field(
        10_000, gt=0, description="Consumer session timeout: how long a silent member keeps its partitions."
    )
    kafka_heartbeat_interval_ms: int = Field(
        1_000, gt=0, description="Consumer heartbeat interval (well under the session timeout)."
    )
    dlq_topic: str = Field("zoho-sync.dlq", description="Dead-letter topic.")
    kafka_connect_url: str = Field(
        "", description="Kafka Connect REST address, when Debezium runs there; zoho-cdc doctor checks it."
    )
    kafka_connect_connector: str = Field(
        "zoho-cdc-postgres", description="Name of the Debezium connector on that Kafka Connect worker."
    )
    state_dir: str = Field(
        ".zoho-cdc", description="Folder for pids, logs and relay offsets of the local stack."
    )

    # --- Zoho ---------------------------------------------------------------------------
    zoho_api_base: str = "https://www.zohoapis.com/billing/v1"
    zoho_accounts_url: str = "https://accounts.zoho.com"
    zoho_client_id: str = ""
    zoho_client_secret: SecretStr = SecretStr("")
    zoho_refresh_token: SecretStr = SecretStr("")
    zoho_organization_id: str = ""
    zoho_rate_per_minute: int = Field(DEFAULT_RATE_PER_MINUTE, gt=0)
    zoho_max_concurrency: int = Field(DEFAULT_MAX_CONCURRENCY, gt=0)
    zoho_daily_limit: int = Field(DEFAULT_DAILY_LIMIT, gt=0)
    zoho_connect_timeout: float = Field(5.0, gt=0)
    zoho_read_timeout: float = Field(30.0, gt=0)
    zoho_max_attempts: int = Field(
        8, gt=0, description="Attempts per call for transient and rate-limit errors."
    )
    zoho_retry_max_seconds: float = Field(
        300.0, gt=0, description="Total time budget for one call's retries."
    )
    zoho_account_number_field: str = Field(
        "Account Number", description="Label of the customer custom field holding the source account number."
    )
    zoho_default_currency: str = Field("ZAR", min_length=3, max_length=3)
    zoho_payment_mode: Literal[
        "cash", "check", "creditcard", "banktransfer", "bankremittance", "autotransaction", "others"
    ] = Field(
        "banktransfer", description="payment_mode of the payment recorded when a source invoice is paid."
    )
    zoho_default_item_id: str = Field(
        "",
        description="Zoho item for invoice lines without a sku/item_code; empty: one zoho-cdc creates once.",
    )
    zoho_default_item_name: str = Field(
        "Invoice line", min_length=1, description="Name of the default item zoho-cdc creates (or finds)."
    )
    zoho_adhoc_line_items: bool = Field(
        False,
        description="Send lines without a code with no product_id (only if your organisation accepts it).",
    )
    zoho_suspended_customer_status: Literal["active", "inactive"] = Field(
        "active",
        description="Zoho status of a suspended source customer (active: a suspended account still owes).",
    )
    zoho_token_refresh_margin: float = Field(
        120.0, ge=0, description="Refresh this many seconds before expiry."
    )
    zoho_rate_window_seconds: float = Field(
        60.0,
        gt=0,
        description="Length of Zoho's rate window; ZOHO_RATE_PER_MINUTE calls are allowed per window.",
    )
    zoho_rate_guard_seconds: float = Field(
        0.5,
        ge=0,
        description="Extra spacing per window so network jitter never pushes a call into the last window.",
    )
    zoho_rate_pacing: Literal["burst", "even"] = Field(
        "burst",
        description="burst: waiting calls spend the rest of the window at once; even: evenly spaced sends.",
    )
    zoho_rate_block_size: int = Field(
        5, gt=0, description="Send slots a process reserves from the shared window per database round trip."
    )
    zoho_rate_block_seconds: float = Field(
        2.0, gt=0, description="How long a reserved block of send slots may be used before it lapses."
    )
    zoho_retry_base_seconds: float = Field(
        1.0, gt=0, description="First retry backoff (doubles, full jitter)."
    )
    zoho_token_backoff_seconds: float = Field(
        120.0, gt=0, description="First wait after the token endpoint answers 'too many requests' (doubles)."
    )
    zoho_token_backoff_max_seconds: float = Field(1800.0, gt=0)
    zoho_budget_poll_seconds: float = Field(
        30.0, gt=0, description="How often a call waiting for the daily budget re-checks it."
    )
    zoho_account_number_filter: str = Field(
        "",
        description="List filter for the account-number custom field; empty means cf_<label as snake_case>.",
    )
    zoho_customer_email_filter: str = Field(
        "email", description="List filter used to find a customer by email."
    )
    zoho_invoice_number_filter: str = Field(
        "invoice_number", description="List filter to find an invoice by number."
    )
    zoho_customer_match_rules: str = Field(
        "account_number,email",
        description="How a customer zoho-cdc did not create is found before a create, in order"
        " (account_number, email); empty: never matched.",
    )
    zoho_invoice_match_rules: str = Field(
        "invoice_number",
        description="How an invoice zoho-cdc did not create is found before a create (invoice_number).",
    )

    # --- consumer -----------------------------------------------------------------------
    max_in_flight: int = Field(1000, gt=0, description="Events held in memory before partitions are paused.")
    commit_interval_seconds: float = Field(1.0, gt=0)
    shutdown_timeout_seconds: float = Field(30.0, gt=0)
    reprocess_max_attempts: int = Field(
        3, gt=0, description="DLQ reprocess attempts before an event is parked."
    )
    status_host: str = "127.0.0.1"
    status_port: int = Field(8088, ge=0, le=65535)
    status_token: SecretStr = Field(
        SecretStr(""),
        validate_default=True,
        description="Bearer token for the status page, /status.json and /metrics; required off loopback.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- Debezium relay -----------------------------------------------------------------
    debezium_slot_name: str = "zoho_cdc"
    slot_wal_warn_bytes: int = Field(
        1 << 30, gt=0, description="WAL retained by the replication slot above which status warns."
    )
    debezium_publication_name: str = "zoho_cdc"
    relay_offset_storage: Literal["kafka", "file"] = Field(
        "kafka",
        description="Where the relay keeps Debezium offsets: with the broker (like Kafka Connect) or a file.",
    )
    relay_offset_flush_interval_ms: int = Field(
        1000,
        gt=0,
        description="How often the relay stores Debezium offsets (bounds re-delivery after a crash).",
    )
    relay_heartbeat_interval_ms: int = Field(
        0, ge=0, description="Debezium heartbeat interval; 0 turns it off."
    )
    relay_jvm_max_heap: str = Field("384m", pattern=r"^\d+[kmgKMG]$", description="-Xmx of the relay's JVM.")
    relay_java_log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    relay_publish_timeout_ms: int = Field(30000, gt=0, description="How long the relay waits for Kafka acks.")

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname and not parts.path.strip("/"):
            raise ValueError("must look like postgresql://user@host:5432/dbname")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError("has a port that is not a number") from exc
        return value

    @field_validator("status_token")
    @classmethod
    def _status_page_never_open_to_the_network(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        host = info.data.get("status_host", "127.0.0.1")
        if not value.get_secret_value() and not is_loopback(host):
            raise ValueError(
                f"must be set when STATUS_HOST ({host}) is not a loopback address, so the status page"
                " and /metrics are not open to the network"
            )
        return value

    @field_validator("zoho_customer_match_rules", "zoho_invoice_match_rules")
    @classmethod
    def _known_match_rules(cls, value: str, info: ValidationInfo) -> str:
        known = _MATCH_RULES[info.field_name or ""]
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown match rule {unknown[0]!r}; known: {', '.join(known)}")
        if len(set(names)) != len(names):
            raise ValueError("a match rule is named twice")
        return ",".join(names)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_is_host_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("must be host:port[,host:port...], for example 127.0.0.1:9092")
        return value

    @field_validator("zoho_api_base", "zoho_accounts_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    # --- derived ------------------------------------------------------------------------
    def __repr_args__(self):  # type: ignore[no-untyped-def]
        # Reprs end up in tracebacks and test output: never show the database password there.
        for name, value in super().__repr_args__():
            yield (
                name,
                (mask_url_password(value) if name == "database_url" and isinstance(value, str) else value),
            )

    def masked(self) -> dict[str, object]:
        """Effective settings with every secret replaced, safe to print or serve."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            out[name] = value
        out["database_url"] = mask_url_password(self.database_url)
        return out


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_MASK = "********"
# libpq key/value DSNs (`host=db password=secret`) and URL query parameters (`?password=secret`).
_KEYWORD_SECRET = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask_url_password(url: str) -> str:
    """The connection string with every form of password masked: in the user info, as a query
    parameter (`?password=`, `sslpassword=`) or as a key/value DSN entry."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL (e.g. a key/value DSN)
        password = None
    if password:
        url = url.replace(f":{password}@", f":{_MASK}@", 1)
    return _KEYWORD_SECRET.sub(lambda m: m.group(1) + _MASK, url)


def load_settings(**overrides: object) -> Settings:
    """Load settings or raise ConfigError with one sentence per bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        sentences = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            sentences.append(f"{field.upper()} {msg}.")
        raise ConfigError(" ".join(sentences)) from None
