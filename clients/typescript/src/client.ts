// The client: the generated stubs, with a command id per command, retries with that same id within
// an overall deadline, TLS and token credentials, and amounts as decimal strings.
import {
  Metadata,
  type CallOptions as GrpcCallOptions,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type Interceptor,
  type ServiceError,
} from "@grpc/grpc-js";

import { batchRequest, batchResult, type BatchCommand, type BatchResult } from "./batch";
import { isCommandId, newCommandId } from "./commandId";
import { channelCredentials, currentToken, type Security, type TokenSource } from "./credentials";
import { CommandServiceClient, type ExecuteBatchResponse } from "./gen/ledger/v1/commands";
import {
  GetBalanceAtRequest,
  GetDailySummariesRequest,
  GetTrialBalanceRequest,
  ListAccountsRequest,
  ListBalancesAtRequest,
  ListTransactionsRequest,
  QueryServiceClient,
  type GetAccountResponse,
  type GetAccountsResponse,
  type GetTrialBalanceResponse,
  type ListBalancesAtResponse,
  type GetBalanceAtResponse,
  type GetDailySummariesResponse,
  type GetProjectionStatusResponse,
  type ListAccountsResponse,
  type ListTransactionsResponse,
  type WatchAccountResponse,
} from "./gen/ledger/v1/queries";
import { LedgerSession } from "./session";
import { DEFAULT_RETRY_POLICY, REAL_TIME, withRetries, type RetryEnvironment, type RetryPolicy } from "./retry";

/** Money: a decimal string in the account's currency ("12.34"), never a JS number. */
export type Amount = string;

const AMOUNT = /^[0-9]+(\.[0-9]+)?$/;
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface LedgerClientOptions extends Security {
  /** host:port of the command server. */
  commandAddress: string;
  /** host:port of the query server. */
  queryAddress: string;
  /** The overall deadline of a call, retries included, unless the call says otherwise. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  channelOptions?: ChannelOptions;
  /** grpc-js client interceptors, run on every try of every call. */
  interceptors?: Interceptor[];
}

export interface CallOptions {
  /** The call's overall deadline in ms from now (retries included). */
  timeoutMs?: number;
  /** The call's overall deadline as a time; wins over timeoutMs. */
  deadline?: Date;
}

export interface CommandOptions extends CallOptions {
  /** A UUIDv7 made earlier for this very change (to send it again after a crash); default: new. */
  commandId?: string;
  /** Apply only if the account (for transfers: the source) is at this version, else ABORTED. */
  expectedVersion?: number;
}

/** Options of a movement (deposit, withdraw, transfer): the client's own id of it and a note. */
export interface MovementOptions extends CommandOptions {
  /** Your own id of the movement (at most 64 characters); ListTransactions can filter by it. */
  reference?: string;
  /** A note kept with the movement (at most 128 characters). */
  memo?: string;
}

export interface QueryOptions extends CallOptions {
  /** Wait until the read model includes this position (a command's or query's token). */
  consistencyToken?: string;
}

/** What an accepted command returns. */
export interface CommandResult {
  /** The account's version after the command (for transfers: the source's). */
  version: number;
  /** Pass to a query to read a state that includes this command. */
  consistencyToken: string;
  /** The id the command was sent with (on every try). */
  commandId: string;
}

export interface OpenAccount {
  accountId: string;
  /** ISO 4217 code, e.g. "USD". */
  currency: string;
  owner?: string;
}

/** The two generated stubs a client calls; tests may pass their own. */
export interface Stubs {
  command: CommandServiceClient;
  query: QueryServiceClient;
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
/** One try of a unary call, its request already bound. */
type Send<Res> = (metadata: Metadata, options: Partial<GrpcCallOptions>, callback: Callback<Res>) => ClientUnaryCall;

function amount(value: Amount): Amount {
  // A JS caller could pass a number, which may already have lost cents; refuse it before sending.
  if (typeof value !== "string" || !AMOUNT.test(value)) {
    throw new TypeError(`an amount is a decimal string such as "12.34", not ${JSON.stringify(value)}`);
  }
  return value;
}

export class LedgerClient {
  private readonly stubs: Stubs;
  private readonly tokenInMetadata: TokenSource | undefined;
  private readonly policy: RetryPolicy;
  private readonly timeoutMs: number;

  /**
   * Connects lazily: the first call opens the channels. `stubs` and `env` are for tests: stubs to
   * call instead of connecting, and the clock, sleep and dice of the retries.
   */
  constructor(
    options: LedgerClientOptions,
    stubs?: Stubs,
    private readonly env: RetryEnvironment = REAL_TIME,
  ) {
    const { channel, tokenInMetadata } = channelCredentials(options);
    const clientOptions = { ...options.channelOptions, interceptors: options.interceptors ?? [] };
    this.stubs = stubs ?? {
      command: new CommandServiceClient(options.commandAddress, channel, clientOptions),
      query: new QueryServiceClient(options.queryAddress, channel, clientOptions),
    };
    this.tokenInMetadata = tokenInMetadata;
    this.policy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** A session: its reads see its own writes (and never an older state than it read before). */
  session(consistencyToken = ""): LedgerSession {
    return new LedgerSession(this, consistencyToken);
  }

  close(): void {
    this.stubs.command.close();
    this.stubs.query.close();
  }

  // Commands: one fresh command id per call, reused by every retry of that call.

  async openAccount(account: OpenAccount, options: CommandOptions = {}): Promise<CommandResult> {
    return this.command(
      options,
      (commandId) => (m, o, c) =>
        this.stubs.command.openAccount(
          { commandId, accountId: account.accountId, currency: account.currency, owner: account.owner ?? "" },
          m,
          o,
          c,
        ),
    );
  }

  async deposit(accountId: string, value: Amount, options: MovementOptions = {}): Promise<CommandResult> {
    const checked = amount(value);
    const { expectedVersion, reference = "", memo = "" } = options;
    return this.command(
      options,
      (commandId) => (m, o, c) =>
        this.stubs.command.deposit(
          { commandId, accountId, amount: checked, expectedVersion, reference, memo },
          m,
          o,
          c,
        ),
    );
  }

  async withdraw(accountId: string, value: Amount, options: MovementOptions = {}): Promise<CommandResult> {
    const checked = amount(value);
    const { expectedVersion, reference = "", memo = "" } = options;
    return this.command(
      options,
      (commandId) => (m, o, c) =>
        this.stubs.command.withdraw(
          { commandId, accountId, amount: checked, expectedVersion, reference, memo },
          m,
          o,
          c,
        ),
    );
  }

  async transfer(
    fromAccountId: string,
    toAccountId: string,
    value: Amount,
    options: MovementOptions = {},
  ): Promise<CommandResult> {
    const checked = amount(value);
    const { expectedVersion, reference = "", memo = "" } = options;
    return this.command(
      options,
      (commandId) => (m, o, c) =>
        this.stubs.command.transfer(
          { commandId, fromAccountId, toAccountId, amount: checked, expectedVersion, reference, memo },
          m,
          o,
          c,
        ),
    );
  }

  async closeAccount(accountId: string, options: CommandOptions = {}): Promise<CommandResult> {
    const expectedVersion = options.expectedVersion;
    return this.command(
      options,
      (commandId) => (m, o, c) => this.stubs.command.closeAccount({ commandId, accountId, expectedVersion }, m, o, c),
    );
  }

  /**
   * Up to 8,000 commands (MAX_BATCH_COMMANDS) in one call, one result each, in order; `atomic`: all
   * applied or none. A command without a commandId gets a fresh one, the same on every retry of the
   * call. A command's own failure (its result's `code`) rejects nothing; only a failure of the whole
   * call rejects, with the gRPC error.
   */
  async executeBatch(
    commands: readonly BatchCommand[],
    options: CallOptions & { atomic?: boolean } = {},
  ): Promise<BatchResult> {
    const request = batchRequest(commands, options.atomic ?? false);
    const response = await this.unary<ExecuteBatchResponse>(options, undefined, (m, o, c) =>
      this.stubs.command.executeBatch(request, m, o, c),
    );
    return batchResult(request, response);
  }

  // Queries: reads change nothing, so they are retried like commands.

  getAccount(accountId: string, options: QueryOptions = {}): Promise<GetAccountResponse> {
    const request = { accountId, consistencyToken: options.consistencyToken ?? "" };
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.getAccount(request, m, o, c));
  }

  /** Up to 1,000 accounts by id; the ids that name no account come back in `missing`. */
  getAccounts(accountIds: readonly string[], options: QueryOptions = {}): Promise<GetAccountsResponse> {
    const request = { accountIds: [...accountIds], consistencyToken: options.consistencyToken ?? "" };
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.getAccounts(request, m, o, c));
  }

  listAccounts(request: Partial<ListAccountsRequest> = {}, options: CallOptions = {}): Promise<ListAccountsResponse> {
    const full = ListAccountsRequest.fromPartial(request);
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.listAccounts(full, m, o, c));
  }

  listTransactions(
    request: Partial<ListTransactionsRequest> & { accountId: string },
    options: CallOptions = {},
  ): Promise<ListTransactionsResponse> {
    const full = ListTransactionsRequest.fromPartial(request);
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.listTransactions(full, m, o, c));
  }

  getBalanceAt(
    request: Partial<GetBalanceAtRequest> & { accountId: string },
    options: CallOptions = {},
  ): Promise<GetBalanceAtResponse> {
    const full = GetBalanceAtRequest.fromPartial(request);
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.getBalanceAt(full, m, o, c));
  }

  /** Every account (or those whose id starts with `accountIdPrefix`) as it was at `at`, a page at a time. */
  listBalancesAt(
    request: Partial<ListBalancesAtRequest> & { at: Date },
    options: CallOptions = {},
  ): Promise<ListBalancesAtResponse> {
    const full = ListBalancesAtRequest.fromPartial(request);
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.listBalancesAt(full, m, o, c));
  }

  /** Per currency: the accounts, their total balance and the money in and out, at `at`. */
  getTrialBalance(
    request: Partial<GetTrialBalanceRequest> & { at: Date },
    options: CallOptions = {},
  ): Promise<GetTrialBalanceResponse> {
    const full = GetTrialBalanceRequest.fromPartial(request);
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.getTrialBalance(full, m, o, c));
  }

  getDailySummaries(
    request: Partial<GetDailySummariesRequest> = {},
    options: CallOptions = {},
  ): Promise<GetDailySummariesResponse> {
    const full = GetDailySummariesRequest.fromPartial(request);
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.getDailySummaries(full, m, o, c));
  }

  getProjectionStatus(options: QueryOptions = {}): Promise<GetProjectionStatusResponse> {
    const request = { consistencyToken: options.consistencyToken ?? "" };
    return this.unary(options, undefined, (m, o, c) => this.stubs.query.getProjectionStatus(request, m, o, c));
  }

  /**
   * The account's state, then one message per change, until cancelled (`stream.cancel()`) or the
   * account is closed. Async-iterable. Not retried: a broken stream is restarted by the caller,
   * with the last message's token so that nothing is missed.
   */
  async watchAccount(
    accountId: string,
    options: QueryOptions = {},
  ): Promise<ClientReadableStream<WatchAccountResponse>> {
    const metadata = await this.metadata();
    const deadline =
      options.deadline ?? (options.timeoutMs === undefined ? undefined : new Date(Date.now() + options.timeoutMs));
    return this.stubs.query.watchAccount(
      { accountId, consistencyToken: options.consistencyToken ?? "" },
      metadata,
      deadline === undefined ? {} : { deadline },
    );
  }

  private async command(
    options: CommandOptions,
    send: (commandId: string) => Send<CommandResponse>,
  ): Promise<CommandResult> {
    const commandId = options.commandId ?? newCommandId();
    if (!isCommandId(commandId)) {
      // The servers refuse any other id; better said here than after a round trip.
      throw new TypeError(
        `a command id is a UUIDv7 in lowercase text (newCommandId()), not ${JSON.stringify(commandId)}`,
      );
    }
    const response = await this.unary(options, commandId, send(commandId));
    return { version: response.version, consistencyToken: response.consistencyToken, commandId };
  }

  private unary<Res>(options: CallOptions, commandId: string | undefined, send: Send<Res>): Promise<Res> {
    const deadline = options.deadline?.getTime() ?? this.env.now() + (options.timeoutMs ?? this.timeoutMs);
    const attempt = async (attemptDeadline: Date): Promise<Res> => {
      const metadata = await this.metadata();
      return new Promise<Res>((resolve, reject) => {
        send(metadata, { deadline: attemptDeadline }, (error, response) => (error ? reject(error) : resolve(response)));
      });
    };
    return withRetries(attempt, deadline, this.policy, commandId, this.env);
  }

  private async metadata(): Promise<Metadata> {
    const metadata = new Metadata();
    if (this.tokenInMetadata !== undefined) {
      metadata.set("authorization", `Bearer ${await currentToken(this.tokenInMetadata)}`);
    }
    return metadata;
  }
}

interface CommandResponse {
  version: number;
  consistencyToken: string;
}
