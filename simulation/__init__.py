"""A deterministic simulation of zoho-cdc: the real pipeline on virtual time against in-memory stand-ins."""
