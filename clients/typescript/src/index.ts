export { LedgerClient, DEFAULT_TIMEOUT_MS } from "./client";
export type {
  Amount,
  CallOptions,
  CommandOptions,
  CommandResult,
  LedgerClientOptions,
  MovementOptions,
  OpenAccount,
  QueryOptions,
  Stubs,
} from "./client";
export { LedgerSession } from "./session";
export { MAX_BATCH_COMMANDS } from "./batch";
export type { BatchCommand, BatchCommandResult, BatchResult } from "./batch";
export { newCommandId, isCommandId, commandIdTime } from "./commandId";
export { mergeTokens } from "./consistency";
export type { Security, TokenSource } from "./credentials";
export { LedgerError } from "./errors";
export { DEFAULT_RETRY_POLICY, RETRYABLE_CODES, PUSHBACK_HEADER, backoffMs, pushbackMs, withRetries } from "./retry";
export type { RetryEnvironment, RetryPolicy } from "./retry";
export * as commands from "./gen/ledger/v1/commands";
export * as queries from "./gen/ledger/v1/queries";
export { AccountStatus, SortOrder, TransactionKind } from "./gen/ledger/v1/queries";
export type { Account, BalanceAt, CurrencyTotals, Freshness, Transaction } from "./gen/ledger/v1/queries";
