"""The `ledger.v1` API's generated stubs, written by scripts/generate_stubs.py (do not edit)."""
