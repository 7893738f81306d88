"""The ledger's rules as a pure decider: commands in, events out, no I/O.

`decider.decide` checks a command against the current accounts and returns the events it causes
(or raises `Rejection`); `decider.evolve` folds one event into an account's state.
"""
