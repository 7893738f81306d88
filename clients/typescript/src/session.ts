// A session reads its own writes: every command's consistency token (and every read's freshness)
// is merged into the session's token, which every read of the session passes to the server, so
// a read waits until the read model includes everything the session did and saw before it.
import type { ClientReadableStream } from "@grpc/grpc-js";

import type {
  Amount,
  CallOptions,
  CommandOptions,
  CommandResult,
  LedgerClient,
  MovementOptions,
  OpenAccount,
  QueryOptions,
} from "./client";
import type { BatchCommand, BatchResult } from "./batch";
import { mergeTokens } from "./consistency";
import type {
  Freshness,
  GetAccountResponse,
  GetAccountsResponse,
  GetBalanceAtRequest,
  GetBalanceAtResponse,
  GetDailySummariesRequest,
  GetDailySummariesResponse,
  GetProjectionStatusResponse,
  GetTrialBalanceRequest,
  GetTrialBalanceResponse,
  ListAccountsRequest,
  ListAccountsResponse,
  ListBalancesAtRequest,
  ListBalancesAtResponse,
  ListTransactionsRequest,
  ListTransactionsResponse,
  WatchAccountResponse,
} from "./gen/ledger/v1/queries";

type WithoutToken<T> = Omit<Partial<T>, "consistencyToken">;

export class LedgerSession {
  private token: string;

  /** `consistencyToken`: a position to start from, e.g. another session's. */
  constructor(
    readonly client: LedgerClient,
    consistencyToken = "",
  ) {
    this.token = consistencyToken;
  }

  /** What the session's reads wait for: everything it wrote or read so far. */
  get consistencyToken(): string {
    return this.token;
  }

  openAccount(account: OpenAccount, options?: CommandOptions): Promise<CommandResult> {
    return this.wrote(this.client.openAccount(account, options));
  }

  deposit(accountId: string, amount: Amount, options?: MovementOptions): Promise<CommandResult> {
    return this.wrote(this.client.deposit(accountId, amount, options));
  }

  withdraw(accountId: string, amount: Amount, options?: MovementOptions): Promise<CommandResult> {
    return this.wrote(this.client.withdraw(accountId, amount, options));
  }

  transfer(
    fromAccountId: string,
    toAccountId: string,
    amount: Amount,
    options?: MovementOptions,
  ): Promise<CommandResult> {
    return this.wrote(this.client.transfer(fromAccountId, toAccountId, amount, options));
  }

  closeAccount(accountId: string, options?: CommandOptions): Promise<CommandResult> {
    return this.wrote(this.client.closeAccount(accountId, options));
  }

  /** Its token covers every command of the batch that succeeded. */
  async executeBatch(
    commands: readonly BatchCommand[],
    options?: CallOptions & { atomic?: boolean },
  ): Promise<BatchResult> {
    const done = await this.client.executeBatch(commands, options);
    this.token = mergeTokens(this.token, done.consistencyToken);
    return done;
  }

  getAccounts(accountIds: readonly string[], options: CallOptions = {}): Promise<GetAccountsResponse> {
    return this.read(this.client.getAccounts(accountIds, { ...options, consistencyToken: this.token }));
  }

  listBalancesAt(
    request: WithoutToken<ListBalancesAtRequest> & { at: Date },
    options?: CallOptions,
  ): Promise<ListBalancesAtResponse> {
    return this.read(this.client.listBalancesAt({ ...request, consistencyToken: this.token }, options));
  }

  getTrialBalance(
    request: WithoutToken<GetTrialBalanceRequest> & { at: Date },
    options?: CallOptions,
  ): Promise<GetTrialBalanceResponse> {
    return this.read(this.client.getTrialBalance({ ...request, consistencyToken: this.token }, options));
  }

  getAccount(accountId: string, options: CallOptions = {}): Promise<GetAccountResponse> {
    return this.read(this.client.getAccount(accountId, { ...options, consistencyToken: this.token }));
  }

  listAccounts(request: WithoutToken<ListAccountsRequest> = {}, options?: CallOptions): Promise<ListAccountsResponse> {
    return this.read(this.client.listAccounts({ ...request, consistencyToken: this.token }, options));
  }

  listTransactions(
    request: WithoutToken<ListTransactionsRequest> & { accountId: string },
    options?: CallOptions,
  ): Promise<ListTransactionsResponse> {
    return this.read(this.client.listTransactions({ ...request, consistencyToken: this.token }, options));
  }

  getBalanceAt(
    request: WithoutToken<GetBalanceAtRequest> & { accountId: string },
    options?: CallOptions,
  ): Promise<GetBalanceAtResponse> {
    return this.read(this.client.getBalanceAt({ ...request, consistencyToken: this.token }, options));
  }

  getDailySummaries(
    request: WithoutToken<GetDailySummariesRequest> = {},
    options?: CallOptions,
  ): Promise<GetDailySummariesResponse> {
    return this.read(this.client.getDailySummaries({ ...request, consistencyToken: this.token }, options));
  }

  getProjectionStatus(options: CallOptions = {}): Promise<GetProjectionStatusResponse> {
    return this.read(this.client.getProjectionStatus({ ...options, consistencyToken: this.token }));
  }

  /** Follows an account from a state that includes everything the session did so far. */
  watchAccount(
    accountId: string,
    options: Omit<QueryOptions, "consistencyToken"> = {},
  ): Promise<ClientReadableStream<WatchAccountResponse>> {
    return this.client.watchAccount(accountId, { ...options, consistencyToken: this.token });
  }

  private async wrote(result: Promise<CommandResult>): Promise<CommandResult> {
    const done = await result;
    this.token = mergeTokens(this.token, done.consistencyToken);
    return done;
  }

  private async read<T extends { freshness?: Freshness | undefined }>(answer: Promise<T>): Promise<T> {
    const done = await answer;
    // Merging (never replacing) keeps the token from moving back when calls overlap.
    this.token = mergeTokens(this.token, done.freshness?.consistencyToken ?? "");
    return done;
  }
}
