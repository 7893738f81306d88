"""How the rows of a batch are turned into rows of the read model's tables: money from minor
units, times from microseconds, and the INSERT of each kind of row from arrays or from a
staging table (batch_writes.py says when each)."""

from __future__ import annotations

from dataclasses import dataclass


def major(column: str) -> str:
    """SQL for a minor-unit column as NUMERIC in major units with the currency's scale.

    Multiplying by 10^-exponent is exact (NUMERIC products keep every digit), where dividing
    by 10^exponent could round: PostgreSQL picks a division's scale from the operands' sizes.
    """
    return f"round({column}::numeric * 10::numeric ^ (-exponent), exponent)"


# Movement times travel as microseconds since the epoch: asyncpg encodes an integer much faster
# than a datetime (docs/performance.md, "What changed on the read side"). Whole seconds and the
# rest apart, so that the arithmetic is exact (a double holds whole seconds times 10^6 exactly,
# not any microsecond count), and no day-sized interval meets the session's time zone.
def time_from_micros(column: str) -> str:
    """SQL for a timestamptz from a column of microseconds since the epoch (NULL stays NULL)."""
    return f"to_timestamp({column} / 1000000) + ({column} % 1000000) * interval '1 microsecond'"


TIME_FROM_MICROS = time_from_micros("occurred_us")


@dataclass(frozen=True)
class Rows:
    """One kind of row a batch writes (`name`: movements, accounts, days): its columns (name,
    SQL type), money in minor units with the currency's exponent, and the INSERT that turns them
    into rows of their table from a source (`{rows}` stands for it)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    insert: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def staging_table(self) -> str:
        return f"staged_{self.name}"

    def create_staging(self) -> str:
        columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in self.columns)
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.staging_table} ({columns})"
            " ON COMMIT DELETE ROWS;"
        )

    def from_staging(self) -> str:
        return self.insert.replace("{rows}", f"pg_temp.{self.staging_table}")

    def from_arrays(self, first: int) -> str:
        """The INSERT reading its rows from array parameters $first, $first+1, ..."""
        arrays = ", ".join(
            f"${first + i}::{sql_type}[]" for i, (_, sql_type) in enumerate(self.columns)
        )
        names = ", ".join(f'"{name}"' for name in self.names)
        return self.insert.replace("{rows}", f"unnest({arrays}) AS r ({names})")
