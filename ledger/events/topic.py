"""Where account events live in Kafka."""

ACCOUNT_EVENTS_TOPIC = "account_events"
"""The one topic holding every account's events, keyed by account id so each account's events
stay in order on one partition."""


def value_subject(topic: str) -> str:
    """Schema Registry subject of a topic's value schema (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


VALUE_SUBJECT = value_subject(ACCOUNT_EVENTS_TOPIC)
