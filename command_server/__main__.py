"""`python -m command_server`: serve ledger.v1.CommandService (configuration: see settings.py)."""

if __name__ == "__main__":
    # Imported here, not at the top: the writer process re-imports this module (as __mp_main__)
    # and needs none of the gRPC side.
    from command_server.app import main

    main()
