"""What the Zoho calls of an apply need from the settings: the payment mode, the invoice-line item rules,
and the rules a record made by others is matched by before a create."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consumer.entities.invoices.items import LineItemRules
from consumer.entities.registry import specs
from consumer.model.events import EntityType
from consumer.settings import Settings, setting_default


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    """Settings the calls need: ZOHO_PAYMENT_MODE, the invoice-line item rules and the match rules."""

    payment_mode: str = setting_default("zoho_payment_mode")
    lines: LineItemRules = field(default_factory=LineItemRules)
    # Rules a record made by others is matched by before a create, in order (ZOHO_*_MATCH_RULES).
    match_rules: Mapping[EntityType, tuple[str, ...]] = field(default_factory=lambda: rules_of(None))

    @classmethod
    def from_settings(cls, settings: Any) -> ApplyOptions:
        return cls(
            payment_mode=settings.zoho_payment_mode,
            match_rules=rules_of(settings),
            lines=LineItemRules(
                default_item_id=settings.zoho_default_item_id,
                default_item_name=settings.zoho_default_item_name,
                adhoc_lines=settings.zoho_adhoc_line_items,
            ),
        )


def match_rules(setting: str) -> tuple[str, ...]:
    """ZOHO_*_MATCH_RULES as an ordered tuple: comma-separated rule names, blanks dropped."""
    return tuple(name.strip() for name in setting.split(",") if name.strip())


def rules_of(settings: Any) -> dict[EntityType, tuple[str, ...]]:
    """Each registered entity's match rules, from its setting `ZOHO_<ENTITY>_MATCH_RULES` (None: the
    defaults); an entity without such a setting is never matched, only created."""
    out = {}
    for spec in specs():
        name = f"zoho_{spec.entity.value}_match_rules"
        if name in Settings.model_fields:
            out[spec.entity] = match_rules(getattr(settings, name) if settings else setting_default(name))
    return out
