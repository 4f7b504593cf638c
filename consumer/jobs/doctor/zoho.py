"""Doctor's Zoho lines, and the gate `zoho-cdc run` passes before it reads an event.

The token costs at most one refresh: the cached one (PostgreSQL, shared with every zoho-cdc process)
is reused while valid. Then the facts Zoho can answer: the API base is on the token's data centre, the
organisation id is one the token sees, the account-number custom field is on customers, the default
item exists (or will be created). What Zoho offers no way to read (the plan's call limits, a list of
custom-field definitions) is said as "cannot check", with why. Only GET requests are sent.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from connectors.zoho import errors
from connectors.zoho.oauth.data_centres import api_base_mismatch, effective_api_base
from connectors.zoho.oauth.grant import visible_organizations
from connectors.zoho.oauth.tokens import OAuthClient, TokenManager
from connectors.zoho.stores import MemoryTokenStore, PgTokenStore
from connectors.zoho.stores.protocols import StoredToken, TokenStore, token_key
from connectors.zoho.wire.protocol import AUTH_SCHEME, ORG_HEADER
from consumer.jobs.doctor.checks import Check, cannot_check, fail, ok
from consumer.settings import Settings

AREA = "zoho"
CUSTOM_FIELD_FIX = (
    "create it in Zoho Billing (Settings > Preferences > Customers > Custom Fields) or set"
    " ZOHO_ACCOUNT_NUMBER_FIELD to the label your organisation uses"
)
# Reference, section 3: Books' figures, UNCONFIRMED for Billing.
PLAN_TABLE = (
    "Zoho's table (Books; unconfirmed for Billing): 100 calls/minute/organisation; per day Free 1,000,"
    " Standard 2,000, Professional 5,000, Premium/Elite/Ultimate 10,000; 5 in flight (Free), 10 (paid)"
)


def token_manager(
    settings: Settings, http: httpx.AsyncClient, store: TokenStore | None = None
) -> tuple[TokenManager, TokenStore]:
    """The token manager `run` itself uses (same store and key), so the cached token is shared."""
    oauth = OAuthClient(
        settings.zoho_accounts_url,
        settings.zoho_client_id,
        settings.zoho_client_secret.get_secret_value(),
        settings.zoho_refresh_token.get_secret_value(),
    )
    store = store or PgTokenStore(settings.database_url)
    key = token_key(oauth.accounts_url, oauth.client_id, oauth.refresh_token)
    manager = TokenManager(
        http,
        oauth,
        store,
        key,
        refresh_margin=settings.zoho_token_refresh_margin,
        backoff_seconds=settings.zoho_token_backoff_seconds,
        backoff_max_seconds=settings.zoho_token_backoff_max_seconds,
    )
    return manager, store


def missing_credentials(settings: Settings) -> str | None:
    unset = [
        name.upper()
        for name in ("zoho_client_id", "zoho_client_secret", "zoho_refresh_token", "zoho_organization_id")
        if not _value(getattr(settings, name))
    ]
    if not unset:
        return None
    return f"{', '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set: run zoho-cdc zoho login."


async def identity_checks(settings: Settings, http: httpx.AsyncClient, token: StoredToken) -> list[Check]:
    """Data centre and organisation: the lines `run` refuses to start on (`fatal`)."""
    mismatch = api_base_mismatch(settings.zoho_api_base, token.api_domain)
    if mismatch:
        return [fail(AREA, "data centre", mismatch, fatal=True)]
    base = effective_api_base(settings.zoho_api_base, token.api_domain)
    checks = [
        ok(AREA, "data centre", f"{base} matches the token's api_domain {token.api_domain or '(none)'}")
    ]
    try:
        orgs = await visible_organizations(http, base, token.access_token)
    except errors.AccessTokenRejected:
        return [
            *checks,
            fail(
                AREA,
                "organisation",
                f"the API at {base} refuses the token: it is another data centre's, or was revoked; run"
                " zoho-cdc zoho login for the data centre of your organisation.",
                fatal=True,
            ),
        ]
    except errors.ZohoError as exc:
        return [
            *checks,
            cannot_check(AREA, "organisation", f"{exc} (its reply's shape is unconfirmed for Billing)."),
        ]
    listed = ", ".join(f"{o.organization_id} ({o.name})" for o in orgs) or "none"
    if settings.zoho_organization_id not in {o.organization_id for o in orgs}:
        return [
            *checks,
            fail(
                AREA,
                "organisation",
                f"ZOHO_ORGANIZATION_ID={settings.zoho_organization_id or '(empty)'} is not an organisation"
                f" this token can see ({listed}): set it to one of them.",
                fatal=True,
            ),
        ]
    name = next(o.name for o in orgs if o.organization_id == settings.zoho_organization_id)
    return [
        *checks,
        ok(AREA, "organisation", f"{settings.zoho_organization_id} ({name}) is visible to the token"),
    ]


async def fatal_zoho_problem(settings: Settings, tokens: TokenManager) -> str | None:
    """The sentence `run` stops with before reading an event, or None: refused credentials, the wrong
    data centre or an organisation the token cannot see (what `doctor` marks fatal)."""
    problem = missing_credentials(settings)
    if problem:
        return problem
    try:
        token = await tokens.token()
    except errors.AuthError as exc:
        return exc.message
    except errors.TransientError:  # an unreachable accounts server is no verdict: the calls retry it
        return None
    async with httpx.AsyncClient(timeout=settings.zoho_read_timeout) as http:
        for check in await identity_checks(settings, http, token):
            if check.fatal and check.failed:
                return check.detail
    return None


async def zoho_checks(settings: Settings) -> list[Check]:
    problem = missing_credentials(settings)
    if problem:
        return [fail(AREA, "credentials", problem, fatal=True)]
    async with httpx.AsyncClient(timeout=settings.zoho_read_timeout) as http:
        try:
            token, refreshed = await _token(settings, http)
        except errors.RateLimited as exc:
            return [fail(AREA, "token", exc.message)]
        except errors.AuthError as exc:
            return [fail(AREA, "token", exc.message, fatal=True)]
        except errors.ZohoError as exc:
            return [fail(AREA, "token", f"{exc}: check ZOHO_ACCOUNTS_URL and the network.")]
        how = "one refresh at" if refreshed else "the cached token, no refresh, for"
        checks = [ok(AREA, "token", f"works ({how} {settings.zoho_accounts_url})")]
        checks += await identity_checks(settings, http, token)
        if any(c.failed for c in checks):
            return checks
        api = _Api(http, effective_api_base(settings.zoho_api_base, token.api_domain), token, settings)
        checks.append(await _custom_field(settings, api))
        checks.append(await _default_item(settings, api))
    checks.append(limits_line(settings))
    return checks


async def _token(settings: Settings, http: httpx.AsyncClient) -> tuple[StoredToken, bool]:
    """The token (and whether it cost a refresh) from the cache `run` shares; when that cache cannot be
    read (no database or migrations yet: the PostgreSQL lines say so), from one refresh all the same."""
    tokens, store = token_manager(settings, http)
    try:
        return await tokens.token_at_most_one_refresh()
    except psycopg.Error:
        tokens, _ = token_manager(settings, http, MemoryTokenStore())
        return await tokens.token_at_most_one_refresh()
    finally:
        await store.aclose()


class _Api:
    """GET requests with the token and the organisation header."""

    def __init__(self, http: httpx.AsyncClient, base: str, token: StoredToken, settings: Settings) -> None:
        self.http, self.base = http, base
        self.headers = {
            "Authorization": f"{AUTH_SCHEME} {token.access_token}",
            ORG_HEADER: settings.zoho_organization_id,
        }

    async def get(self, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
        reply = await self.http.get(self.base + path, params=params or None, headers=self.headers)
        try:
            body = reply.json()
        except ValueError:
            body = {}
        return reply.status_code, body if isinstance(body, dict) else {}


def _synced_customer(database_url: str, organization_id: str) -> str | None:
    """The Zoho id of the customer zoho-cdc synced last in this organisation: it was sent with the
    account-number field."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT zoho_id FROM zoho_entity_map WHERE organization_id = %s AND entity_type = 'customer'"
                " AND zoho_id IS NOT NULL AND natural_key IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                (organization_id,),
            ).fetchone()
    except psycopg.Error:  # no database or no migrations yet: the PostgreSQL lines say so
        return None
    return str(row[0]) if row else None


async def _custom_field(settings: Settings, api: _Api) -> Check:
    """Billing documents no list of custom-field definitions (UNCONFIRMED), but a customer's record carries
    its custom fields by label (openapi/customers.yml): read one zoho-cdc wrote the field to, else any."""
    label, name = settings.zoho_account_number_field, "account-number field"
    ours = _synced_customer(settings.database_url, settings.zoho_organization_id)
    customer_id = ours
    if customer_id is None:
        status, body = await api.get("/customers", per_page=1)
        listed = body.get("customers") or []
        if status != 200 or body.get("code") != 0:
            return cannot_check(
                AREA, name, f"GET /customers answered HTTP {status}: {body.get('message', '')}"
            )
        if not listed:
            return cannot_check(
                AREA,
                name,
                f"the organisation has no customer yet to read custom fields from, and Billing documents no"
                f" way to list their definitions; make sure a customer custom field {label!r} exists.",
            )
        customer_id = str(listed[0].get("customer_id"))
    status, body = await api.get(f"/customers/{customer_id}")
    record = body.get("customer") if isinstance(body.get("customer"), dict) else None
    if record is None:
        return cannot_check(AREA, name, f"GET /customers/{customer_id} answered HTTP {status}")
    labels = [str(f.get("label")) for f in record.get("custom_fields") or [] if isinstance(f, dict)]
    if label in labels:
        return ok(AREA, name, f"customers carry the custom field {label!r} (read on customer {customer_id})")
    if ours is not None:
        return fail(
            AREA,
            name,
            f"Zoho has no customer custom field labelled {label!r}: customer {customer_id}, which zoho-cdc"
            f" synced, carries none ({', '.join(map(repr, labels)) or 'no custom fields'});"
            f" {CUSTOM_FIELD_FIX}.",
        )
    return cannot_check(
        AREA,
        name,
        f"customer {customer_id} (not written by zoho-cdc) has no value in {label!r}, and Billing documents"
        f" no way to list custom-field definitions; make sure the field exists.",
    )


async def _default_item(settings: Settings, api: _Api) -> Check:
    name = "default item"
    if settings.zoho_adhoc_line_items:
        return ok(AREA, name, "not used: ZOHO_ADHOC_LINE_ITEMS sends lines without a code with no item")
    if settings.zoho_default_item_id:
        status, body = await api.get(f"/items/{settings.zoho_default_item_id}")
        item = body.get("item") if isinstance(body.get("item"), dict) else None
        if status == 200 and item is not None:
            return ok(
                AREA, name, f"ZOHO_DEFAULT_ITEM_ID={settings.zoho_default_item_id} is {item.get('name')!r}"
            )
        return fail(
            AREA,
            name,
            f"ZOHO_DEFAULT_ITEM_ID={settings.zoho_default_item_id} is not an item of this organisation (HTTP"
            f" {status}: {body.get('message', '')}): set an existing item's id, or leave it empty and"
            " zoho-cdc creates one.",
        )
    wanted = settings.zoho_default_item_name
    status, body = await api.get("/items", name=wanted)
    if status != 200 or body.get("code") != 0:
        return cannot_check(AREA, name, f"GET /items answered HTTP {status}: {body.get('message', '')}")
    found = [i for i in body.get("items") or [] if str(i.get("name", "")).lower() == wanted.lower()]
    if found:
        return ok(AREA, name, f"{wanted!r} exists (item {found[0].get('item_id')})")
    return ok(
        AREA, name, f"{wanted!r} does not exist yet: zoho-cdc creates it for the first line without a code"
    )


def limits_line(settings: Settings) -> Check:
    configured = (
        f"configured {settings.zoho_rate_per_minute}/minute, {settings.zoho_daily_limit:,}/day,"
        f" {settings.zoho_max_concurrency} in flight"
    )
    return cannot_check(
        AREA,
        "call limits",
        f"Zoho offers no API for the organisation's plan or limits; {configured}; {PLAN_TABLE}.",
    )


def _value(value: object) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)  # type: ignore[no-any-return]
