"""structlog configuration: JSON lines to stderr, one per outcome, with secrets scrubbed.

The scrubber is a last line of defence: nothing should log a token, but if a value that looks like
a Zoho token or a key named like a secret slips in, it is masked before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from consumer.settings import mask_url_password

_SECRET_KEYS = re.compile(r"(secret|token|password|authorization)", re.IGNORECASE)
_TOKEN_VALUE = re.compile(r"1000\.[0-9a-f]{8,}\.[0-9a-f]{8,}", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(r"\1********@", _TOKEN_VALUE.sub("1000.********", value))
        return mask_url_password(value) if "password" in value.lower() else value
    return value


def _scrub_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEYS.search(key) and key != "event":
            event_dict[key] = "********"
        else:
            event_dict[key] = scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s", force=True)
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    # Plain tracebacks only: a rich traceback shows local variables, which can hold tokens.
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # a crash's traceback goes into the JSON line
            _scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
