"""The projector: keeps the PostgreSQL read model in step with the `account_events` topic.

`python -m projector` consumes the topic and applies each batch of events in one PostgreSQL
transaction together with its checkpoint; `python -m projector rebuild` replays the topic into a
shadow schema, verifies it and swaps it in. See `app.py` for how the pieces fit together.
"""
