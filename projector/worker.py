"""`python -m projector.worker`: one of the projectors a supervisor runs (supervisor.py).

Started by `projector.supervisor` only, with its own LEDGER_PROJECTOR_HTTP and a pipe on stdin
that stays open for as long as the supervisor lives. Otherwise it is `python -m projector run`.
"""

from __future__ import annotations

import sys

from projector.app import run_and_exit
from projector.cli import settings_or_exit


def main() -> None:
    run_and_exit(settings_or_exit(), parent_pipe=sys.stdin.fileno())


if __name__ == "__main__":
    main()
