-- A movement is identified by (account_id, version): the event id is a function of the two
-- (uuid5), so a second unique index on it only cost every insert a random-order B-tree write,
-- the most expensive of the three indexes on this table during a catch-up.
ALTER TABLE movements
    DROP CONSTRAINT movements_pkey,
    DROP CONSTRAINT movements_account_id_version_key,
    ADD CONSTRAINT movements_pkey PRIMARY KEY (account_id, version);
