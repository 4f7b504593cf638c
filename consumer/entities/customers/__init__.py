"""The customer entity: its spec, its mapping rules, its Zoho calls and its comparison with Zoho."""
