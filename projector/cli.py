"""`python -m projector [run|rebuild [--until T --schema NAME]|export]`: the command line,
the settings, and which process to be.

Kept apart from the composition root (app.py), which imports the Kafka, PostgreSQL and registry
clients: with LEDGER_PROJECTOR_WORKERS > 1 this process only supervises (supervisor.py), and
importing them would delay its workers' start by ~0.6 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.telemetry.logs import configure_logging
from projector.exit_codes import EXIT_CANNOT_START
from projector.export_arguments import FORMATS, parse_at
from projector.settings import Settings, SettingsError

log = logging.getLogger("projector")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m projector",
        description="Project account events from Kafka into the PostgreSQL read model.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="consume and project until SIGTERM (the default)")
    rebuild_parser = commands.add_parser(
        "rebuild", help="replay the whole topic into a shadow schema, verify it and swap it in"
    )
    rebuild_parser.add_argument(
        "--keep-old", action="store_true", help="keep the replaced schema as ledger_old_<stamp>"
    )
    rebuild_parser.add_argument(
        "--until",
        type=_instant,
        metavar="TIMESTAMP",
        help="instead, build the read model as of this instant (ISO 8601 with a time zone, "
        "e.g. 2026-01-31T23:59:59.999Z) into the schema --schema names, verify it and leave it "
        "there; the live read model is untouched",
    )
    rebuild_parser.add_argument(
        "--schema", help="with --until: the schema to build into (lower-case letters, digits, _)"
    )
    _add_export(commands)
    args = parser.parse_args(argv)
    if args.command == "rebuild" and (args.until is None) != (args.schema is None):
        parser.error("rebuild: --until and --schema go together")
    if args.command == "rebuild" and args.until is not None and args.keep_old:
        parser.error("rebuild: --keep-old swaps nothing with --until")
    settings = settings_or_exit()
    if args.command == "rebuild" and args.until is not None:
        from projector.app import rebuild_until_and_exit

        rebuild_until_and_exit(settings, args.until, args.schema)
    if args.command == "rebuild":
        from projector.app import rebuild_and_exit

        rebuild_and_exit(settings, keep_old=args.keep_old)
    if args.command == "export":
        # Imported only here: pyarrow takes a while to import, and only export needs it.
        from projector.export import export_and_exit

        export_and_exit(settings, args.at, args.format, args.out)
    if settings.workers > 1:
        from projector.supervisor import supervise

        sys.exit(asyncio.run(supervise(settings)))
    from projector.app import run_and_exit

    run_and_exit(settings)


def _add_export(commands: Any) -> None:
    export_parser = commands.add_parser(
        "export",
        help="write the accounts and movements as of an instant to Parquet or CSV files",
        description="Write accounts.<format> and movements.<format> as of --at, and "
        "manifest.json, into --out (made if missing; earlier exports' files are replaced). "
        "Reads the analysts' views: any role that may read them can export.",
    )
    export_parser.add_argument(
        "--at",
        required=True,
        type=_instant,
        help="ISO 8601 with a time zone, e.g. 2026-03-31T23:59:59.999Z: accounts opened at or "
        "before it, as they were then, and every movement at or before it",
    )
    export_parser.add_argument("--format", required=True, choices=FORMATS)
    export_parser.add_argument("--out", required=True, type=Path, help="the directory to write")


def _instant(text: str) -> datetime:
    """An ISO 8601 instant with its time zone, for --until and --at."""
    try:
        return parse_at(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def settings_or_exit() -> Settings:
    """The settings from the environment, after logging is configured; exit 2 if they are bad."""
    configure_logging("projector")
    # The registry client logs every HTTP request at INFO.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        return Settings.from_env()
    except SettingsError as error:
        log.critical("cannot start: %s", error)
        sys.exit(EXIT_CANNOT_START)
