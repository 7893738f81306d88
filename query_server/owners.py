"""Owners as a reader may see them: sealed owners opened with their account's data key, erased
owners shown as erased (docs/design.md, decision 14)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from ledger.personal_data import KeyStore, KeysUnreachable, UnreadableSecret, readable_owner
from query_server.errors import Unavailable
from query_server.rows import AccountRow


class Owners:
    """Opens the owners of account rows. `keys` None: this server has no key store
    (LEDGER_KEY_ENCRYPTION_KEY_FILE or LEDGER_KAFKA_BOOTSTRAP_SERVERS unset), so it can show
    only owners recorded before sealing."""

    def __init__(self, keys: KeyStore | None) -> None:
        self._keys = keys

    async def opened(self, row: AccountRow) -> AccountRow:
        [opened] = await self.all_opened([row])
        return opened

    async def all_opened(self, rows: Sequence[AccountRow]) -> list[AccountRow]:
        keys = self._keys
        if all(not row.owner_sealed or keys is None or keys.holds(row.account_id) for row in rows):
            return [self._opened(row) for row in rows]
        # A key not yet in memory is read from Kafka: not on the event loop.
        return await asyncio.to_thread(lambda: [self._opened(row) for row in rows])

    def _opened(self, row: AccountRow) -> AccountRow:
        if row.owner_sealed and self._keys is None:
            raise Unavailable(
                f"the owner of account {row.account_id!r} is sealed and this query server has "
                "no key store: set LEDGER_KEY_ENCRYPTION_KEY_FILE and "
                "LEDGER_KAFKA_BOOTSTRAP_SERVERS"
            )
        try:
            owner, erased = readable_owner(
                self._keys,  # type: ignore[arg-type]  # checked above when it is needed
                row.account_id,
                row.owner,
                row.owner_sealed,
                row.owner_erased,
            )
        except UnreadableSecret as error:
            raise Unavailable(f"{error}: check LEDGER_KEY_ENCRYPTION_KEY_FILE") from error
        except KeysUnreachable as error:
            raise Unavailable(
                f"the owner of account {row.account_id!r} cannot be opened now ({error}); retry"
            ) from error
        if owner == row.owner and erased == row.owner_erased and not row.owner_sealed:
            return row
        return dataclasses.replace(row, owner=owner, owner_sealed=None, owner_erased=erased)
