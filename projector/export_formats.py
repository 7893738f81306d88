"""The files `python -m projector export` writes: their columns, and a writer per format.

Money is exact in both: Parquet's `decimal128(38, MONEY_SCALE)` (one scale per column, the
largest any currency has, so every amount fits without rounding; the `currency` column says how
many of its places the currency uses), and in CSV decimal strings with the currency's own
places (`12.30` USD, `1200` JPY, `0.125` KWD). Never a float. Times are UTC: Parquet timestamps
in microseconds, ISO 8601 in CSV (always with six decimals: one shape for parsers).

Each file is written to `<name>.partial` and renamed once every file is complete, so a failed
export leaves no file that looks whole, nor a mix of two exports.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from ledger.domain.money import currency_exponent, known_currencies
from projector.export_arguments import FORMATS

MONEY_SCALE = max(currency_exponent(code) for code in known_currencies())
MONEY_PRECISION = 38
"""decimal128's most digits: with MONEY_SCALE places, far beyond any int64 of minor units."""

_ARROW_TYPES = {
    "text": pa.string(),
    "integer": pa.int64(),
    "money": pa.decimal128(MONEY_PRECISION, MONEY_SCALE),
    "time": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True, slots=True)
class Table:
    """One exported file: its name and its columns (name, kind), in order. Kinds: text,
    integer, money (needs a `currency` column), time."""

    name: str
    columns: tuple[tuple[str, str], ...]

    def file_name(self, export_format: str) -> str:
        return f"{self.name}.{export_format}"

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, _ARROW_TYPES[kind]) for name, kind in self.columns])


ACCOUNTS = Table(
    "accounts",
    (
        ("account_id", "text"),
        ("currency", "text"),
        ("owner", "text"),
        ("status", "text"),
        ("balance", "money"),
        ("version", "integer"),
        ("opened_at", "time"),
        ("closed_at", "time"),
    ),
)
MOVEMENTS = Table(
    "movements",
    (
        ("account_id", "text"),
        ("version", "integer"),
        ("occurred_at", "time"),
        ("kind", "text"),
        ("currency", "text"),
        ("amount", "money"),
        ("signed_amount", "money"),
        ("balance_after", "money"),
        ("counterparty_id", "text"),
        ("transfer_id", "text"),
        ("command_id", "text"),
        ("event_id", "text"),
        ("reference", "text"),
        ("memo", "text"),
    ),
)
TRANSFERS = Table(
    "transfers",
    (
        ("transfer_id", "text"),
        ("from_account_id", "text"),
        ("to_account_id", "text"),
        ("currency", "text"),
        ("amount", "money"),
        ("state", "text"),
        ("cross_shard", "text"),
        ("sent_at", "time"),
        ("credited_at", "time"),
        ("refunded_at", "time"),
        ("refund_reason", "text"),
    ),
)


class TableWriter(Protocol):
    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows, each with the table's columns in order."""

    def finish(self) -> None:
        """Complete the file (still under its partial name)."""

    def publish(self) -> None:
        """Give the finished file its name, replacing any earlier export's."""

    def abandon(self) -> None:
        """Remove what was written (after a failure)."""


def open_writer(export_format: str, table: Table, directory: Path) -> TableWriter:
    if export_format == "parquet":
        return _ParquetWriter(table, directory)
    if export_format == "csv":
        return _CsvWriter(table, directory)
    raise ValueError(f"unknown export format {export_format!r}: expected one of {FORMATS}")


class _FileWriter:
    """Writes `<name>.partial` (`_close` completes it), then renames it or removes it."""

    def __init__(self, table: Table, export_format: str, directory: Path) -> None:
        self._path = directory / table.file_name(export_format)
        self._partial = self._path.with_name(self._path.name + ".partial")

    def _close(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        self._close()

    def publish(self) -> None:
        os.replace(self._partial, self._path)

    def abandon(self) -> None:
        self._close()
        self._partial.unlink(missing_ok=True)


class _ParquetWriter(_FileWriter):
    def __init__(self, table: Table, directory: Path) -> None:
        super().__init__(table, "parquet", directory)
        self._schema = table.arrow_schema
        self._writer = pq.ParquetWriter(self._partial, self._schema, compression="zstd")

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        columns = [
            pa.array([row[index] for row in rows], type=field.type)
            for index, field in enumerate(self._schema)
        ]
        self._writer.write_batch(pa.record_batch(columns, schema=self._schema))

    def _close(self) -> None:
        self._writer.close()


class _CsvWriter(_FileWriter):
    def __init__(self, table: Table, directory: Path) -> None:
        super().__init__(table, "csv", directory)
        self._kinds = [kind for _, kind in table.columns]
        names = [name for name, _ in table.columns]
        self._currency = names.index("currency")
        self._stream = self._partial.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._stream)
        self._csv.writerow(names)

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        kinds = self._kinds
        currency = self._currency
        self._csv.writerows(
            [
                [
                    csv_text(value, kind, row[currency])
                    for value, kind in zip(row, kinds, strict=True)
                ]
                for row in rows
            ]
        )

    def _close(self) -> None:
        self._stream.close()


_QUANTA = {exponent: Decimal(1).scaleb(-exponent) for exponent in range(MONEY_SCALE + 1)}
# Quantizing only adds places to the read model's values; were one ever to need rounding, this
# raises instead.
_EXACT = Context(prec=2 * MONEY_PRECISION, traps=[Inexact, InvalidOperation])


def csv_text(value: Any, kind: str, currency: str) -> str:
    """A value as a CSV field: money with `currency`'s places, never in exponent notation;
    times in ISO 8601 UTC; nothing as an empty field."""
    if value is None:
        return ""
    if kind == "money":
        exact: Decimal = value
        return format(exact.quantize(_QUANTA[currency_exponent(currency)], context=_EXACT), "f")
    if kind == "time":
        moment: datetime = value
        return moment.isoformat(timespec="microseconds")
    return str(value)
