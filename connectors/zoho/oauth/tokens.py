"""OAuth access tokens for Zoho: one cached token shared by every task, refreshed single-flight.

The token is refreshed only within `refresh_margin` of its expiry or after the API rejected it, by
one task at a time (the others await the same refresh), and persisted through a `TokenStore` so a
restart within the hour does not spend one of Zoho's 10 refreshes per 10 minutes. When the token
endpoint answers "too many requests" the refresh backs off with jitter (while a still-valid token
keeps being used), never in a hot loop. Tokens never appear in messages or reprs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from connectors.zoho import errors
from connectors.zoho.stores.protocols import StoredToken, TokenStore
from connectors.zoho.tracking import ClientMetrics
from connectors.zoho.wire.protocol import TOKEN_PATH


@dataclass(frozen=True)
class OAuthClient:
    """The self-client credentials (secrets kept out of repr)."""

    accounts_url: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


class _Throttled(Exception):
    """The token endpoint refused with 'Access Denied / too many requests'."""


class TokenManager:
    def __init__(
        self,
        http: httpx.AsyncClient,
        oauth: OAuthClient,
        store: TokenStore,
        store_key: str,
        *,
        refresh_margin: float,
        backoff_seconds: float,
        backoff_max_seconds: float,
        metrics: ClientMetrics | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._oauth = oauth
        self._store = store
        self._key = store_key
        self.refresh_margin = refresh_margin
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.metrics = metrics or ClientMetrics()
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: StoredToken | None = None
        self._loaded = False
        self._refusals = 0
        self._refresh_not_before = 0.0

    def __repr__(self) -> str:
        return f"<TokenManager client_id={self._oauth.client_id!r} has_token={self._token is not None}>"

    def _usable(self, token: StoredToken | None, now: float) -> bool:
        if token is None:
            return False
        if now < token.expires_at - self.refresh_margin:
            return True
        # a refresh was just refused: keep using the current token while it is surely still valid
        return now < self._refresh_not_before and now < token.expires_at - min(1.0, self.refresh_margin / 2)

    async def token(self) -> StoredToken:
        """A valid access token, refreshing it first if it is within the margin of expiry."""
        if self._usable(self._token, self._clock()):
            return self._token  # type: ignore[return-value]
        async with self._lock:
            await self._load_newer()
            while not self._usable(self._token, self._clock()):
                await self._refresh_or_back_off()
                await self._load_newer()  # another process may have refreshed it while this one waited
            return self._token  # type: ignore[return-value]

    async def _load_newer(self) -> None:
        """Take the store's token (another process's, or this one's before a restart) when it is newer.
        Read whenever this process's own token is not usable, under the lock: once a refresh of any
        process succeeds, every process uses its token instead of asking the accounts server again (a
        process refused at start kept asking every back-off, which kept Zoho's 10-per-10-minutes block
        alive for ever while the other processes held a valid token: simulation seed 456)."""
        stored = await self._store.load(self._key)
        if stored is not None and (self._token is None or stored.expires_at > self._token.expires_at):
            self._token = stored

    async def _load_once(self) -> None:
        """`_load_newer`, once per process (`token_at_most_one_refresh`)."""
        if not self._loaded:
            self._loaded = True
            await self._load_newer()

    async def token_at_most_one_refresh(self) -> tuple[StoredToken, bool]:
        """A valid token and whether getting it spent a refresh: the cached one (this process's or the
        store's) when still valid, else one refresh, never a back-off loop (`zoho-cdc doctor`).
        Raises `RateLimited` when the token endpoint refuses with 'too many requests'."""
        async with self._lock:
            await self._load_once()
            if self._token is not None and self._clock() < self._token.expires_at - self.refresh_margin:
                return self._token, False
            try:
                token = await self._request_token()
            except _Throttled:
                self.metrics.token_refusals += 1
                raise errors.RateLimited(
                    "Zoho's accounts server refuses token requests for now (too many in 10 minutes):"
                    " wait 15 to 30 minutes without requesting tokens, then try again."
                ) from None
            await self._keep(token)
            return token, True

    async def invalidate(self, rejected: StoredToken) -> None:
        """The API answered 401 for `rejected`: drop it unless another task already replaced it."""
        async with self._lock:
            if self._token is not None and self._token.access_token == rejected.access_token:
                self._token = None
                self._refresh_not_before = 0.0
                await self._store.clear(self._key)

    async def _refresh_or_back_off(self) -> None:
        try:
            token = await self._request_token()
        except _Throttled:
            self._refusals += 1
            self.metrics.token_refusals += 1
            cap = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (self._refusals - 1))
            wait = self._rng.uniform(cap / 2, cap)
            now = self._clock()
            self._refresh_not_before = now + wait
            if self._usable(self._token, now):
                return  # keep using the current token; the next refresh waits for the backoff
            await asyncio.sleep(wait)
            return
        self._refusals = 0
        self._refresh_not_before = 0.0
        await self._keep(token)

    async def _keep(self, token: StoredToken) -> None:
        self._token = token
        self.metrics.token_refreshes += 1
        await self._store.save(self._key, token)

    async def _request_token(self) -> StoredToken:
        self.metrics.token_requests += 1
        asked_at = self._clock()  # expiry counted from before the request, never later than Zoho's
        form = {
            "refresh_token": self._oauth.refresh_token,
            "client_id": self._oauth.client_id,
            "client_secret": self._oauth.client_secret,
            "grant_type": "refresh_token",
        }
        try:
            reply = await self._http.post(self._oauth.accounts_url + TOKEN_PATH, data=form)
        except httpx.TransportError as exc:
            raise errors.TransientError(f"Zoho accounts server unreachable ({type(exc).__name__})") from None
        try:
            body = reply.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("access_token"):
            expires_in = float(body.get("expires_in") or 3600)
            return StoredToken(
                access_token=str(body["access_token"]),
                api_domain=str(body.get("api_domain") or ""),
                expires_at=asked_at + expires_in,
            )
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        if error == "invalid_code":
            raise errors.RefreshTokenRevoked(
                errors.REFRESH_TOKEN_REVOKED_SENTENCE, http_status=reply.status_code
            )
        if error.lower() == "access denied" or "too many requests" in description.lower():
            raise _Throttled()
        if error in ("invalid_client", "invalid_client_secret"):
            raise errors.AuthError(
                f"Zoho refused the OAuth client ({error}): check ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET.",
                http_status=reply.status_code,
            )
        if reply.status_code >= 500 or not error:
            raise errors.TransientError(
                f"Zoho accounts server answered HTTP {reply.status_code} without a token",
                http_status=reply.status_code,
            )
        raise errors.AuthError(f"Zoho refused the token refresh ({error})", http_status=reply.status_code)
