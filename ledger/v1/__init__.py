"""Generated protobuf and gRPC stubs for the `ledger.v1` API (see proto/ledger/v1).

Everything here except this file is written by scripts/generate_stubs.py: edit the .proto files
and run `make generate` instead of editing the stubs.
"""
