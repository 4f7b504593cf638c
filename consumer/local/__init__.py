"""The single-machine stack: PostgreSQL with logical decoding, the Tansu broker, the relay."""
