"""The deterministic simulation harness: the real pipeline on virtual time against in-memory stand-ins."""
