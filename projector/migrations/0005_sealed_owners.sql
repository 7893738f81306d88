-- Owners are sealed per account (docs/design.md, decision 14): the read model keeps the sealed
-- bytes, which the query server opens with the account's key, and never the plaintext of a new
-- owner. `owner` keeps only owners recorded before sealing, and is emptied by an erasure.
ALTER TABLE accounts
    ADD COLUMN owner_sealed bytea,
    ADD COLUMN owner_erased boolean NOT NULL DEFAULT false;
