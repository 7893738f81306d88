"""Fast, pure unit tests: no network, no Kafka, no registry, no database."""
