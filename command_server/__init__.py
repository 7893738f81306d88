"""The command server: decides commands against the write model and appends events to Kafka."""
