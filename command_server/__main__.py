"""`python -m command_server`: serve ledger.v1.CommandService (configuration: see settings.py)."""

from command_server.app import main

if __name__ == "__main__":
    main()
