"""`python -m projector export` without a database: its arguments, its files and their money."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from projector.cli import main
from projector.exit_codes import EXIT_CANNOT_START
from projector.export import ExportFailed, ReadModelSwapped, export, prepare_directory
from projector.export_arguments import parse_at
from projector.export_formats import ACCOUNTS, MONEY_SCALE, csv_text, open_writer

OPENED = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
ROWS = [
    ("a-usd", "USD", "Ada", "OPEN", Decimal("12.30"), 3, OPENED, None),
    ("b-jpy", "JPY", "Bo", "CLOSED", Decimal("0"), 5, OPENED, OPENED + timedelta(days=1)),
    ("c-kwd", "KWD", "Cy", "OPEN", Decimal("92233720368547758.075"), 2, OPENED, None),
    ("d-clf", "CLF", "Di", "OPEN", Decimal("0.0001"), 2, OPENED, None),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-31T23:59:59.999Z", datetime(2026, 3, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        (
            "2026-04-01T01:00:00+02:00",
            datetime(2026, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
        ),
        (" 2026-04-01 00:00:00+00:00 ", datetime(2026, 4, 1, tzinfo=UTC)),
    ],
)
def test_at_is_an_iso_8601_instant(text: str, expected: datetime) -> None:
    assert parse_at(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("2026-03-31", "has no time zone: add Z for UTC"),
        ("2026-03-31T12:00:00", "has no time zone: add Z for UTC"),
        ("yesterday", "is not an ISO 8601 timestamp (e.g. 2026-03-31T23:59:59.999Z)"),
        ("2026-02-30T00:00:00Z", "is not an ISO 8601 timestamp"),
        ("", "is not an ISO 8601 timestamp"),
    ],
)
def test_a_bad_at_is_refused_saying_what_to_write(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_at(text)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--at", "2026-03-31", "--format", "csv"], "argument --at: '2026-03-31' has no time zone"),
        (["--at", "2026-03-31T00:00Z", "--format", "xlsx"], "argument --format: invalid choice"),
        (["--format", "csv"], "the following arguments are required: --at"),
    ],
)
def test_the_command_line_refuses_bad_arguments_before_connecting(
    arguments: list[str], complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export", *arguments, "--out", str(tmp_path)])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_the_directory_is_made_when_missing(tmp_path: Path) -> None:
    out = tmp_path / "exports" / "2026-03"
    assert prepare_directory(out) == out
    assert out.is_dir()
    assert not list(out.iterdir()), "the probe of writability leaves nothing behind"


def test_a_directory_that_cannot_be_made_or_written_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a directory")
    with pytest.raises(ExportFailed, match="exists and is not a directory") as refused:
        prepare_directory(a_file)
    assert refused.value.exit_code == EXIT_CANNOT_START
    with pytest.raises(ExportFailed, match=f"cannot write in --out {a_file}/sub") as refused:
        prepare_directory(a_file / "sub")
    assert refused.value.exit_code == EXIT_CANNOT_START


def test_csv_money_has_its_currencys_places_and_never_an_exponent() -> None:
    assert csv_text(Decimal("12.3"), "money", "USD") == "12.30"
    assert csv_text(Decimal("0"), "money", "USD") == "0.00"
    assert csv_text(Decimal("1E+3"), "money", "JPY") == "1000"
    assert csv_text(Decimal("-0.125"), "money", "KWD") == "-0.125"
    assert csv_text(Decimal("92233720368547758.07"), "money", "EUR") == "92233720368547758.07"
    assert csv_text(None, "money", "USD") == ""
    assert csv_text(OPENED, "time", "USD") == "2026-03-01T22:00:00.000000+00:00"


def test_csv_money_is_never_rounded() -> None:
    with pytest.raises(ArithmeticError):
        csv_text(Decimal("12.345"), "money", "USD")


def test_parquet_money_is_decimal128_and_reads_back_exactly(tmp_path: Path) -> None:
    writer = open_writer("parquet", ACCOUNTS, tmp_path)
    writer.write(ROWS[:2])
    writer.write(ROWS[2:])
    writer.finish()
    assert not (tmp_path / "accounts.parquet").exists(), "published only once all are done"
    writer.publish()
    table = pq.read_table(tmp_path / "accounts.parquet")
    assert str(table.schema.field("balance").type) == f"decimal128(38, {MONEY_SCALE})"
    assert str(table.schema.field("opened_at").type) == "timestamp[us, tz=UTC]"
    assert [tuple(row.values()) for row in table.to_pylist()] == ROWS
    assert not list(tmp_path.glob("*.partial"))


def test_csv_reads_back_as_the_same_decimal_strings(tmp_path: Path) -> None:
    writer = open_writer("csv", ACCOUNTS, tmp_path)
    writer.write(ROWS)
    writer.finish()
    writer.publish()
    text_only = pa_csv.ConvertOptions(
        column_types={name: "string" for name, _ in ACCOUNTS.columns}, strings_can_be_null=True
    )
    table = pa_csv.read_csv(tmp_path / "accounts.csv", convert_options=text_only)
    assert table.column_names == [name for name, _ in ACCOUNTS.columns]
    assert table.column("balance").to_pylist() == [
        "12.30",
        "0",
        "92233720368547758.075",
        "0.0001",
    ]
    assert table.column("closed_at").to_pylist() == [
        None,
        "2026-03-02T22:00:00.000000+00:00",
        None,
        None,
    ]


@pytest.mark.parametrize("export_format", ["parquet", "csv"])
def test_an_abandoned_file_leaves_nothing(export_format: str, tmp_path: Path) -> None:
    earlier = tmp_path / f"accounts.{export_format}"
    earlier.write_text("an earlier export")
    writer = open_writer(export_format, ACCOUNTS, tmp_path)
    writer.write(ROWS)
    writer.abandon()
    assert sorted(path.name for path in tmp_path.iterdir()) == [earlier.name]
    assert earlier.read_text() == "an earlier export"


class _Cursor:
    def __init__(self, chunks: list[Sequence[tuple[object, ...]]]) -> None:
        self._chunks = chunks

    async def fetch(self, count: int) -> Sequence[tuple[object, ...]]:
        if not self._chunks:
            raise asyncpg.ConnectionDoesNotExistError("the connection was closed midway")
        return self._chunks.pop(0)


class _Connection:
    """What `export` asks of an asyncpg connection; the movements' cursor breaks midway, or
    (`swapped`) the live model is another at the end."""

    def __init__(self, *, swapped: bool = False) -> None:
        self._swapped = swapped
        self._models = [16384, 20480 if swapped else 16384]

    def transaction(self, **options: object) -> contextlib.AbstractAsyncContextManager[None]:
        assert options == {"isolation": "repeatable_read", "readonly": True}
        return contextlib.nullcontext()

    async def fetch(self, statement: str, *arguments: object) -> list[dict[str, int]]:
        return [{"partition": 0, "last_offset": 41}]

    async def fetchval(self, statement: str, *arguments: object) -> int:
        if "to_regclass" in statement:
            return self._models.pop(0)
        return 4

    async def cursor(self, statement: str, *arguments: object) -> _Cursor:
        if "FROM ledger_analytics.accounts a" in statement:
            return _Cursor([ROWS, []])
        return _Cursor([[]] if self._swapped else [])


@pytest.mark.parametrize("export_format", ["parquet", "csv"])
async def test_an_export_that_fails_midway_leaves_the_earlier_one_whole(
    export_format: str, tmp_path: Path
) -> None:
    earlier = {f"{name}.{export_format}": name for name in ("accounts", "movements")}
    _write_files(tmp_path, earlier)
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await export(_Connection(), OPENED, export_format, tmp_path, topic="account_events")
    assert _files(tmp_path) == earlier
    with pytest.raises(ReadModelSwapped, match="export again"):
        await export(
            _Connection(swapped=True), OPENED, export_format, tmp_path, topic="account_events"
        )
    assert _files(tmp_path) == earlier


def _write_files(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text)


def _files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in directory.iterdir()}
