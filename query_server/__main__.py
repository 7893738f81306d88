"""`python -m query_server`: serve ledger.v1.QueryService (configuration: see settings.py)."""

from query_server.app import main

if __name__ == "__main__":
    main()
