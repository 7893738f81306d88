"""Ledger: an event-sourced accounts ledger (shared contract: API stubs, events, domain)."""
