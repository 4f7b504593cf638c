"""Zoho's data centres (reference, section 1) and the OAuth scopes zoho-cdc needs, defined once.

A token belongs to the data centre whose accounts server issued it; its replies name that centre's API
host (`api_domain`). Calling another centre's API host with it fails, so `login` and `doctor` compare
the API base zoho-cdc will call with the token's `api_domain` before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.zoho.wire.protocol import API_PATH, DEFAULT_API_BASE


@dataclass(frozen=True)
class DataCentre:
    code: str
    api_domain: str  # what a token reply's `api_domain` says for this centre
    accounts_url: str

    @property
    def api_base(self) -> str:
        return self.api_domain + API_PATH


DATA_CENTRES: tuple[DataCentre, ...] = (
    DataCentre("us", "https://www.zohoapis.com", "https://accounts.zoho.com"),
    DataCentre("eu", "https://www.zohoapis.eu", "https://accounts.zoho.eu"),
    DataCentre("in", "https://www.zohoapis.in", "https://accounts.zoho.in"),
    DataCentre("au", "https://www.zohoapis.com.au", "https://accounts.zoho.com.au"),
    DataCentre("jp", "https://www.zohoapis.jp", "https://accounts.zoho.jp"),
    DataCentre("ca", "https://www.zohoapis.ca", "https://accounts.zohocloud.ca"),
    DataCentre("cn", "https://www.zohoapis.com.cn", "https://accounts.zoho.com.cn"),
    DataCentre("sa", "https://www.zohoapis.sa", "https://accounts.zoho.sa"),
)

# Every call zoho-cdc makes, by the scope Billing's OpenAPI specs name for it: customers (create, read,
# update, mark (in)active = CREATE), invoices (create, read, update, delete a draft, void and
# convert-to-open = CREATE), items (the default item: read, create once), payments (record, read), and
# settings.READ for the organisations list `login` and `doctor` read.
SCOPES: tuple[str, ...] = (
    "ZohoSubscriptions.customers.CREATE",
    "ZohoSubscriptions.customers.READ",
    "ZohoSubscriptions.customers.UPDATE",
    "ZohoSubscriptions.invoices.CREATE",
    "ZohoSubscriptions.invoices.READ",
    "ZohoSubscriptions.invoices.UPDATE",
    "ZohoSubscriptions.invoices.DELETE",
    "ZohoSubscriptions.items.CREATE",
    "ZohoSubscriptions.items.READ",
    "ZohoSubscriptions.payments.CREATE",
    "ZohoSubscriptions.payments.READ",
    "ZohoSubscriptions.settings.READ",
)
SCOPE_STRING = ",".join(SCOPES)


def origin(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased: what two URLs of one data centre share."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def data_centre(code_or_url: str) -> DataCentre | None:
    """The data centre named by its code (`eu`), or by any of its addresses: the API console's
    (`https://api-console.zoho.eu/...`), an accounts server or an API host; None when unknown."""
    text = code_or_url.strip().lower()
    for dc in DATA_CENTRES:
        if text == dc.code:
            return dc
    host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    # the longest domain first, so `zoho.com.au` is not taken for `zoho.com`
    for dc, domain in sorted(_DOMAINS, key=lambda pair: -len(pair[1])):
        if host == domain or host.endswith("." + domain):
            return dc
    return None


def _domains(dc: DataCentre) -> tuple[str, str]:
    """The parts every host of the centre ends with: `zoho.eu` (accounts, console) and `zohoapis.eu` (API)."""
    accounts = urlsplit(dc.accounts_url).hostname or ""
    api = urlsplit(dc.api_domain).hostname or ""
    return accounts.removeprefix("accounts."), api.removeprefix("www.")


_DOMAINS = [(dc, domain) for dc in DATA_CENTRES for domain in _domains(dc)]


def effective_api_base(configured: str, api_domain: str) -> str:
    """The API base a call goes to: ZOHO_API_BASE, except that the default (US) one gives way to the
    token's own `api_domain`, so a user who set only the accounts server still reaches the right centre."""
    if configured.rstrip("/") == DEFAULT_API_BASE and api_domain:
        return api_domain.rstrip("/") + API_PATH
    return configured.rstrip("/")


def api_base_mismatch(configured: str, api_domain: str) -> str | None:
    """One sentence when the API base zoho-cdc calls is not on the token's data centre, else None."""
    if not api_domain:
        return None
    base = effective_api_base(configured, api_domain)
    if origin(base) == origin(api_domain):
        return None
    token_dc = data_centre(api_domain)
    fix = (
        f"set ZOHO_API_BASE={token_dc.api_base} and ZOHO_ACCOUNTS_URL={token_dc.accounts_url}"
        if token_dc
        else f"set ZOHO_API_BASE={api_domain.rstrip('/')}{API_PATH}"
    )
    return (
        f"ZOHO_API_BASE ({base}) is not on the data centre of the token, whose api_domain is "
        f"{api_domain}: {fix}."
    )
