"""The read side of the ledger: ledger.v1.QueryService over the PostgreSQL read model."""
