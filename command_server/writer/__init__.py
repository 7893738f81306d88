"""The writer: the process that owns the shard's write model and its transactional producers.

The gRPC process hands it batches of commands over a pipe; it decides them in order against the
committed state overlaid with what earlier commands of the same batch changed, appends the
resulting events in one Kafka transaction, folds them into the write model once committed, and
answers with one verdict per command (docs/design.md, decisions 2 and 3).

Why a process of its own: deciding, encoding and producing are CPU work in Python. In the gRPC
process they would share one interpreter lock with gRPC's own per-call work; here they run on
the other core, and the gRPC process only forwards commands and answers.

Modules:
- `protocol`: everything that crosses the pipe, both ways (packed commands and verdicts, the
  start messages, `BatchReply`) and the errors that cross it.
- `handle`: the gRPC process's side: `WriterProcess` spawns the writer, waits until it has
  rebuilt its state and exchanges batches with it without blocking the event loop.
- `process`: the writer process's loop (`writer_main`): start-up, batches, snapshots, stop.
- `batcher`: the `Batcher`, which decides, appends and applies one batch, and may decide the
  next one while that batch's transaction commits.
- `deciding`: the `Decider`, which decides a batch's commands in order against the committed and
  pending state.
- `decisions`: what deciding a batch produces, and how an atomic span of it is taken back.
"""
