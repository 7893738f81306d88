"""End-to-end fault drill: the real stack and the three Ledger processes under load and faults.

`python -m fault_drill` starts its own local stack, runs concurrent gRPC clients against the
command server (and readers against the query server) while it SIGKILLs and restarts the
command server, the projector, the query server, the Kafka broker and PostgreSQL, starts a
second command server of the same shard, pauses (SIGSTOP) the broker and the command server,
and restarts the command server from a snapshot, at random moments (seeded), then checks that
nothing acknowledged was lost, nothing was applied twice and that the read model equals a fresh
fold of the whole log. See docs/reliability.md.

- `config`: the drill's sizes (the test suite's and the soak's).
- `journal`: the client-side journal of every command, attempt and answer.
- `calls`: how a client sends a command: deadlines, retries with backoff and jitter.
- `book`: what the clients know of the accounts from the answers they got.
- `workload`: the command clients (mixed commands, deliberate retries) and the resend after
  recovery.
- `readers`: the readers that read accounts back with consistency tokens.
- `faults`: the fault injector and the supervisor that restarts crashed processes.
- `fault_kinds`: the faults other than a kill: takeover, pause, restart from a snapshot.
- `command_servers`: the command-server instances of the shard, and the live one clients call.
- `event_log`: reading the whole topic back (read_committed) and decoding it.
- `read_model_snapshot`: waiting for the projector to catch up, and reading the read model.
- `log_fold`: the whole log folded into the rows the read model must hold; the log's invariants.
- `command_checks`: the journal against the log (lost, duplicated, wrong answers...).
- `read_model_checks`: the read model against the fold, and its own invariants.
- `report`: the figures and the verdict as one JSON document.
- `report_text`: the report printed as text and as Markdown.
- `drill`: the orchestration of one run on a given stack.
"""

import os as _os
import sys as _sys

if "grpc" not in _sys.modules:
    # The driver forks children (PostgreSQL is started as another user, so with a real fork())
    # while its gRPC clients are busy. With gRPC's fork support on, the forked child can crash
    # with SIGSEGV in gRPC's post-fork handler before it execs (docs/reliability.md, "Findings", 7).
    # gRPC reads the switch once, when it is imported; the children get the environment as it
    # was, unchanged.
    _saved = _os.environ.get("GRPC_ENABLE_FORK_SUPPORT")
    _os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    try:
        import grpc  # noqa: F401
    finally:
        if _saved is None:
            del _os.environ["GRPC_ENABLE_FORK_SUPPORT"]
        else:
            _os.environ["GRPC_ENABLE_FORK_SUPPORT"] = _saved
