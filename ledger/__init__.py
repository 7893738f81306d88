"""Ledger: an event-sourced accounts ledger.

This package is what the three processes share: API stubs, events, the pure domain, telemetry
and worker supervision.
"""
