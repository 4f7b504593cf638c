"""A backfill over the switch-over fixture: records made by others are matched against one listing read,
not a lookup call per entity and rule (real broker, PostgreSQL and simulator; calls counted by the
simulator). Where the list items show no custom field (Billing's list schema), a record is read in full
before it is adopted, and the account-number rule is asked of Zoho per entity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.consumer.harness import SimView, settings_for
from tests.consumer.test_backfill import backfill, emit_all
from tests.support import Source, sql_exec

FIXTURE = Path(__file__).parent.parent / "fixtures" / "switchover"


# What Zoho is asked, by whether customer list items show the account-number column.
CALLS = {
    # one listing page, then one write per record: 11 adopted (PUT: the account number added), 2 created
    True: {"GET /customers": 1, "PUT /customers/{id}": 11, "POST /customers": 2},
    # the listing, and the account-number rule asked of Zoho for the 3 rows without an id; each record
    # adopted read in full first, to see that it carries no other account number
    False: {
        "GET /customers": 1 + 3,
        "GET /customers/{id}": 11,
        "PUT /customers/{id}": 11,
        "POST /customers": 2,
    },
}


@pytest.mark.parametrize("lists_show_custom_fields", [True, False])
async def test_a_backfill_adopts_the_fixture_against_one_listing_and_writes_once_per_record(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix, lists_show_custom_fields
):
    others = json.loads((FIXTURE / "zoho-customers.json").read_text())["customers"]
    # An eleventh record made by others, with the e-mail of a 'failed' row: adopted by the e-mail rule.
    others.append({"customer_id": "OLD-by-email", "display_name": "Mitch", "email": "MitchAdams39@gmail.com"})
    zoho_sim.load_records_of_others(customers=others)
    zoho_sim.set_config(list_custom_fields=lists_show_custom_fields)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    sql_exec(database_url, (FIXTURE / "source-rows.sql").read_text())
    emit_all(source)
    await source.flush()

    result = await backfill(settings_for(zoho_settings, kafka_bootstrap, topic_prefix))

    stats = zoho_sim.stats()["by_endpoint"]
    calls = {e: sum(v.values()) for e, v in stats.items()}
    assert calls == CALLS[lists_show_custom_fields]
    assert result.extra["listing_reads"] == 1
    customers = SimView(zoho_sim).customers()
    assert len(customers) == 13
    rows = dict(source.query("SELECT account_number, zoho_billing_customer_id FROM customers"))
    assert rows["CT-2025-00023"] == "OLD-by-email"
    for other in others[:10]:
        assert other["customer_id"] in rows.values()
    notes = source.query("SELECT error FROM zoho_sync_log WHERE outcome = 'synced' ORDER BY error")
    assert sum(1 for (n,) in notes if "by the id the source held" in n) == 10
    assert sum(1 for (n,) in notes if n.startswith("adopted Zoho customer OLD-by-email by email")) == 1
    assert sum(1 for (n,) in notes if n.startswith("created: no Zoho record matched")) == 2
