"""`zoho-cdc zoho login`: from a self-client grant code to the settings `zoho-cdc run` needs.

One exchange (`grant_type=authorization_code`) at the data centre's accounts server; the reply's
`api_domain` must be that data centre's, and the organisation is chosen among those the new token sees.
The access token the exchange returned is cached in PostgreSQL (when DATABASE_URL reaches a migrated
database) under the key `run` and `doctor` use, so neither spends a refresh within the hour.
Secrets are shown masked unless asked for, and written to a file only with mode 0600.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from connectors.zoho import errors
from connectors.zoho.oauth.data_centres import DataCentre, api_base_mismatch, origin
from connectors.zoho.oauth.grant import Grant, Organization, exchange_grant_code, visible_organizations
from connectors.zoho.stores import PgTokenStore, StoredToken, token_key
from connectors.zoho.wire.protocol import API_PATH


class LoginError(Exception):
    """Raised with the one sentence the person at the terminal needs."""


@dataclass(frozen=True)
class Credentials:
    accounts_url: str
    api_base: str  # where the organisations are read and `run` calls
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    organization_id: str
    organization_name: str

    def settings(self, *, show_secrets: bool) -> list[tuple[str, str]]:
        def secret(value: str) -> str:
            return value if show_secrets else mask(value)

        return [
            ("ZOHO_API_BASE", self.api_base),
            ("ZOHO_ACCOUNTS_URL", self.accounts_url),
            ("ZOHO_CLIENT_ID", self.client_id),
            ("ZOHO_CLIENT_SECRET", secret(self.client_secret)),
            ("ZOHO_REFRESH_TOKEN", secret(self.refresh_token)),
            ("ZOHO_ORGANIZATION_ID", self.organization_id),
        ]


def mask(secret: str) -> str:
    """Enough to tell two secrets apart, never enough to use one."""
    return "********" + (secret[-4:] if len(secret) >= 16 else "")


def console_url(accounts_url: str) -> str:
    """The API console of the data centre: `accounts.zoho.eu` -> `api-console.zoho.eu`."""
    return accounts_url.replace("://accounts.", "://api-console.", 1)


def api_base_for(grant: Grant, dc: DataCentre | None, api_base: str | None) -> str:
    """The API base to use, after checking the reply's `api_domain` belongs to the data centre asked for."""
    if api_base:
        mismatch = api_base_mismatch(api_base, grant.api_domain)
        if mismatch:
            raise LoginError(mismatch)
        return api_base.rstrip("/")
    if dc is not None and grant.api_domain and origin(grant.api_domain) != origin(dc.api_domain):
        raise LoginError(
            f"Zoho answered with api_domain {grant.api_domain}, not {dc.api_domain} of the {dc.code.upper()}"
            " data centre asked for: run zoho-cdc zoho login again with the data centre of your organisation."
        )
    domain = grant.api_domain or (dc.api_domain if dc else "")
    if not domain:
        raise LoginError(
            "Zoho's reply named no api_domain: pass --api-base with your data centre's API base."
        )
    return domain.rstrip("/") + API_PATH


def choose_organization(orgs: list[Organization], wanted: str | None) -> Organization | None:
    """The organisation asked for (it must be visible), the only one, or None when the person must choose."""
    if wanted:
        for org in orgs:
            if org.organization_id == wanted:
                return org
        listed = ", ".join(f"{o.organization_id} ({o.name})" for o in orgs) or "none"
        raise LoginError(f"organisation {wanted} is not one this token can see ({listed}): pick one of them.")
    if not orgs:
        raise LoginError(
            "the token sees no Zoho Billing organisation: sign up for Zoho Billing with this user, or log in"
            " with a user of your organisation."
        )
    return orgs[0] if len(orgs) == 1 else None


async def exchange(
    accounts_url: str, client_id: str, client_secret: str, code: str, *, timeout: float = 30.0
) -> Grant:
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            return await exchange_grant_code(http, accounts_url, client_id, client_secret, code)
        except errors.ZohoError as exc:
            raise LoginError(exc.message) from None


async def organizations(api_base: str, grant: Grant, *, timeout: float = 30.0) -> list[Organization]:
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            return await visible_organizations(http, api_base, grant.access_token)
        except errors.ZohoError as exc:
            raise LoginError(
                f"the organisations could not be read ({exc.message}): pass --organization with the id"
                " shown in Zoho Billing under Settings > Organization Profile."
            ) from None


async def cache_access_token(database_url: str, accounts_url: str, client_id: str, grant: Grant) -> bool:
    """Keep the exchange's access token where `run` and `doctor` look first; False when the database
    (or zoho-cdc's tables) cannot be reached: they then spend one refresh."""
    store = PgTokenStore(database_url)
    key = token_key(accounts_url.rstrip("/"), client_id, grant.refresh_token)
    token = StoredToken(grant.access_token, grant.api_domain, time.time() + grant.expires_in - 5)
    try:
        await store.save(key, token)
    except psycopg.Error:
        return False
    finally:
        await store.aclose()
    return True


def write_private(path: Path, lines: list[tuple[str, str]]) -> None:
    """`NAME=value` lines in a file only its owner can read (mode 0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, "".join(f"{k}={v}\n" for k, v in lines).encode())
    finally:
        os.close(fd)
