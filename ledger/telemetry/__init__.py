"""What every Ledger process tells its operators: Prometheus metrics, structured logs, health.

- `metrics`: the metric definitions of each process, and their text exposition;
- `interceptor`: per-method call counts and latency for any grpc.aio server;
- `exporter`: the /metrics HTTP endpoint of the gRPC servers (`LEDGER_METRICS_ADDR`);
- `logs`: `configure_logging(service)`: one line per event, JSON on request;
- `probe`: `python -m ledger.telemetry.probe`, the health check of the container images.

Nothing here registers or starts anything at import: each process does it in its `main()`.
"""
