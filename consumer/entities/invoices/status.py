"""Invoice statuses: the stages a source invoice moves through and the Zoho calls between them.

Pure rules. Zoho Billing moves an invoice forward only (draft -> sent -> paid; void ends any), so a move
backwards raises `StatusBackwards`, which the pipeline dead-letters with a sentence saying what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.model.plan import MappingError, as_text

#: Zoho's invoice statuses, by the source status they stand for (an overdue or part-paid invoice is open,
#: like a sent one). Unknown statuses count as open: Zoho's list documents more than it explains.
ZOHO_INVOICE_STAGE: Final = {
    "draft": "draft",
    "pending": "draft",
    "sent": "sent",
    "overdue": "sent",
    "unpaid": "sent",
    "partially_paid": "sent",
    "paid": "paid",
    "void": "void",
}


#: Source invoice statuses, in the order an invoice moves through them (void ends any of them).
INVOICE_STAGES: Final = ("draft", "sent", "paid")


#: Stages in which Zoho lets an invoice be edited with PUT.
EDITABLE_INVOICE_STAGES: Final = frozenset({"draft", "sent"})


class StatusBackwards(MappingError):
    """Raised when a source invoice moves to a status Zoho has no call to reach from where it is."""


def invoice_source_stage(row: Mapping[str, Any]) -> str:
    """The source invoice status as a stage (draft, sent, paid, void); unknown values count as draft."""
    status = as_text(row.get("status")).lower()
    return status if status in (*INVOICE_STAGES, "void") else "draft"


def zoho_invoice_stage(zoho_status: str | None) -> str | None:
    """The stage a Zoho invoice status stands for (None when unknown to the entity map)."""
    if zoho_status is None:
        return None
    return ZOHO_INVOICE_STAGE.get(zoho_status.lower(), "sent")


def invoice_status_steps(current: str, target: str, row: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The Zoho status calls that take an invoice from stage `current` to `target`, in order.

    "open" is converttoopen, "pay" records a payment for the balance, "void" voids. Zoho Billing
    has no call that takes a paid invoice back to open, any invoice back to draft, or a void one
    back to life, so those moves raise StatusBackwards (the event is dead-lettered, the record
    left as it is).
    """
    if current == target:
        return ()
    if target == "void":
        return ("void",)
    if current == "void" or INVOICE_STAGES.index(target) < INVOICE_STAGES.index(current):
        number = as_text((row or {}).get("invoice_number"))
        what = f"invoice {number}" if number else "the invoice"
        raise StatusBackwards(
            f"status goes backwards: {what} is {current} in Zoho but {target} in the source, and Zoho"
            f" Billing has no call to take an invoice from {current} back to {target}; change it in Zoho"
            " by hand (e.g. delete the payment), then run `zoho-cdc dlq reprocess`"
        )
    start = INVOICE_STAGES.index(current)
    return tuple(
        {"sent": "open", "paid": "pay"}[s]
        for s in INVOICE_STAGES[start + 1 : INVOICE_STAGES.index(target) + 1]
    )
