"""What each kind of timeline step does to the world (`simulation.scenario` draws them).

Source changes are only made when the source would accept them now (an invoice's status moves only
forward, to void, and only once the invoice exists); a step that no longer applies is traced and
skipped, so the drawn timeline never has to foresee the order its steps end up in.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from connectors import clock
from consumer.entities.customers.rules import customer_payload
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig
from consumer.pipeline.codec.encode import encode_event
from simulation.loop import CURRENT
from simulation.scenario import INVOICE_FORWARD
from simulation.zoho import RefusedByZoho

if TYPE_CHECKING:
    from simulation.instances import World

CUSTOMERS: Final = "customers"
INVOICES: Final = "customer_invoices"
_LARGE_NOTES: Final = "Long account history. " * 120  # past TOAST's threshold (about 2 KB)
#: A numeric as Debezium's base64 of 2,000 bytes: about 4,800 digits, past Python's int-to-text limit.
_HUGE_FOR_PYTHON: Final = base64.b64encode(b"\x7f" + b"\xff" * 1999).decode()


class Acts:
    def __init__(self, world: World) -> None:
        self.world = world
        self.customers: dict[int, str] = {}  # drawn index -> source id
        self.invoices: dict[int, str] = {}
        self.edits = 0

    # --- the application's changes to the source ----------------------------------------
    def insert_customer(self, index: int, status: str, large: bool) -> None:
        world = self.world
        row = {
            "account_number": f"CT-SIM-{index:04d}",
            "email": f"customer{index}@example.co.za",
            "first_name": f"First{index}",
            "last_name": f"Last{index}",
            "company_name": None,
            "phone": None,
            "account_type": "personal",
            "billing_address": {"street": f"{index} Main Rd", "city": "Durban", "country": "South Africa"},
            "status": status,
            "notes": _LARGE_NOTES if large else None,
        }
        if index < world.scenario.made_before:  # an older integration made it in Zoho already
            payload = customer_payload(row, MappingConfig.from_settings(world.settings))
            if index % 2:  # one that never wrote the account number: matched by e-mail
                payload.pop("custom_fields")
            world.zoho.create_customer(**payload)
        self.customers[index] = world.source.insert(CUSTOMERS, row)

    def update_customer(self, index: int, what: str) -> None:
        customer_id = self.customers.get(index)
        if customer_id is None:
            return self._skip("update_customer", index)
        self.edits += 1
        changes: dict[str, Any] = {
            "email": {"email": f"customer{index}.{self.edits}@example.co.za"},
            "name": {"last_name": f"Last{index}-{self.edits}"},
            "notes": {"notes": f"note {self.edits}"},
        }[what]
        self.world.source.update(CUSTOMERS, customer_id, **changes)

    def customer_status(self, index: int, status: str) -> None:
        customer_id = self.customers.get(index)
        if customer_id is None:
            return self._skip("customer_status", index)
        self.world.source.update(CUSTOMERS, customer_id, status=status)

    def insert_invoice(self, index: int, customer: int, status: str) -> None:
        customer_id = self.customers.get(customer)
        if customer_id is None:
            return self._skip("insert_invoice", index)
        quantity = 1 + index % 3
        subtotal = Decimal("649.00") * quantity
        vat = (subtotal * Decimal("0.15")).quantize(Decimal("0.01"))
        day = clock.utc_now().date() - dt.timedelta(days=3)
        row = {
            "customer_id": customer_id,
            "invoice_number": f"INV-SIM-{index:04d}",
            "invoice_date": day,
            "due_date": day + dt.timedelta(days=30),
            "currency": "ZAR",
            "subtotal": subtotal,
            "vat_amount": vat,
            "total_amount": subtotal + vat,
            "status": status,
            "line_items": [
                {"description": "Fibre 50 Mbps monthly", "quantity": quantity, "unit_price": "649.00"}
            ],
        }
        self.invoices[index] = self.world.source.insert(INVOICES, row)

    def invoice_status(self, index: int, status: str) -> None:
        invoice_id = self.invoices.get(index)
        if invoice_id is None:
            return self._skip("invoice_status", index)
        now = self.world.source.row(INVOICES, invoice_id)["status"]
        forward = now in INVOICE_FORWARD and status in INVOICE_FORWARD
        if now == "void" or (forward and INVOICE_FORWARD.index(status) <= INVOICE_FORWARD.index(now)):
            return self._skip("invoice_status", index)
        self.world.source.update(INVOICES, invoice_id, status=status)

    def poison(self, kind: str) -> None:
        """A record no row explains lands on the invoices topic (a bug upstream, a hand-made produce): it must
        end in one dead letter while the sync runs on (issue 23 a: a numeric past Python's digit limit)."""
        world = self.world
        entity_id = world.source.new_id()
        world.poisoned.add(entity_id)
        key = json.dumps({"id": entity_id}).encode()
        row = {
            "id": entity_id,
            "customer_id": entity_id,
            "invoice_number": f"INV-POISON-{len(world.poisoned)}",
        }
        _, value = encode_event(
            EntityType.INVOICE, "c", row, key_id=entity_id, topic_prefix=world.settings.topic_prefix
        )
        doc = json.loads(value)
        if kind == "huge_numeric":
            doc["after"]["total_amount"] = _HUGE_FOR_PYTHON
        elif kind == "unknown_op":
            doc["op"] = "x" * 5000
        body = b"{not json" if kind == "not_json" else json.dumps(doc).encode()
        world.broker.append(
            EntityType.INVOICE.topic(world.settings.topic_prefix), key, body, timestamp_ms=clock.wall_ms()
        )

    # --- the processes ---------------------------------------------------------------------
    def kill(self, who: int) -> None:
        self.world.instances[who].kill()

    def restart(self, who: int) -> None:
        self.world.instances[who].start()

    def stop(self, who: int) -> None:
        self.world.instances[who].stop()

    def backfill(self) -> None:
        """`zoho-cdc backfill` beside the live sync: both passes over the topics, in its own process."""
        from consumer.jobs.backfill import run_backfill
        from simulation.instances import Command

        command = Command(self.world, f"zoho-cdc-backfill-{len(self.world.commands)}", run_backfill)
        self.world.commands.append(command)
        command.start()

    def reprocess(self) -> None:
        """`zoho-cdc dlq reprocess` (every letter not re-driven yet), in its own process."""
        from consumer.jobs.reprocess import reprocess
        from simulation.instances import Command

        command = Command(self.world, f"zoho-cdc-dlq-reprocess-{len(self.world.commands)}", reprocess)
        self.world.commands.append(command)
        command.start()

    def join(self) -> None:
        from simulation.instances import Instance

        instance = Instance(self.world, len(self.world.instances))
        self.world.instances.append(instance)
        instance.start()

    # --- people in Zoho, and the infrastructure ---------------------------------------------
    def portal_payment(self, index: int) -> None:
        invoice_id = self.invoices.get(index)
        zoho_id = invoice_id and self.world.zoho_id("invoice", invoice_id)
        try:
            if not zoho_id or not self.world.zoho.pay_invoice(zoho_id):
                return self._skip("portal_payment", index)
        except RefusedByZoho:  # paid already, void, or a draft: the portal offers nothing to pay
            return self._skip("portal_payment", index)
        self.world.people_changed.add(("invoice", invoice_id))

    def inactive_by_hand(self, index: int) -> None:
        customer_id = self.customers.get(index)
        zoho_id = customer_id and self.world.zoho_id("customer", customer_id)
        if not zoho_id:
            return self._skip("inactive_by_hand", index)
        try:
            self.world.zoho.set_customer_status(zoho_id, "inactive")
        except RefusedByZoho:
            return self._skip("inactive_by_hand", index)
        self.world.people_changed.add(("customer", customer_id))

    def edit_by_hand(self, index: int) -> None:
        """Someone changes a customer's email in Zoho's web app. The sync does not watch Zoho for such
        edits: the next source change of the customer's mapped fields puts its own state back."""
        customer_id = self.customers.get(index)
        zoho_id = customer_id and self.world.zoho_id("customer", customer_id)
        if not zoho_id:
            return self._skip("edit_by_hand", index)
        try:
            self.world.zoho.edit_customer(zoho_id, email=f"edited-by-hand-{index}@example.com")
        except RefusedByZoho:
            return self._skip("edit_by_hand", index)
        self.world.edited_by_hand[customer_id] = self.world.customer_body(customer_id)

    def db_outage(self, seconds: float) -> None:
        self.world.db.unavailable_until = clock.monotonic() + seconds

    def compact(self) -> None:
        for topic in self.world.topics:
            self.world.broker.compact(topic)

    def _skip(self, kind: str, index: int) -> None:
        assert CURRENT.get() is None  # the timeline acts as the world, never as a process
        self.world.trace(f"skipped {kind} {index}: not possible now")
