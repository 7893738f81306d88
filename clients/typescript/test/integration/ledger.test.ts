// Against the real, secure ledger: tests/e2e/test_typescript_client.py starts it and passes its
// addresses, CA and tokens in LEDGER_TS_* variables. Without them (a plain `npm test`) these skip.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { InterceptingCall, Metadata, status, type Interceptor } from "@grpc/grpc-js";

import {
  AccountStatus,
  LedgerClient,
  LedgerError,
  TransactionKind,
  isCommandId,
  type LedgerClientOptions,
} from "../../src";

const env = process.env;
const configured = ["LEDGER_TS_COMMAND_ADDRESS", "LEDGER_TS_QUERY_ADDRESS", "LEDGER_TS_CA_FILE"].every(
  (name) => env[name],
);

function options(token: string | undefined, interceptors: Interceptor[] = []): LedgerClientOptions {
  return {
    commandAddress: env.LEDGER_TS_COMMAND_ADDRESS!,
    queryAddress: env.LEDGER_TS_QUERY_ADDRESS!,
    caCert: readFileSync(env.LEDGER_TS_CA_FILE!),
    token,
    interceptors,
    timeoutMs: 20_000,
  };
}

function tokenFile(name: string): string {
  return readFileSync(env[name]!, "utf8").trim();
}

function accountId(): string {
  return `ts-${randomUUID().slice(0, 12)}`;
}

/** Records every request of `method` (e.g. "Deposit") sent; loses the answer of the first `lose` of them. */
function loseAnswers<Request>(method: string, lose: number, sent: Request[]): Interceptor {
  return (callOptions, nextCall) => {
    const isWatched = callOptions.method_definition.path === `/ledger.v1.CommandService/${method}`;
    const loseThis = isWatched && lose-- > 0;
    return new InterceptingCall(nextCall(callOptions), {
      sendMessage(message: Request, next) {
        if (isWatched) {
          sent.push(message);
        }
        next(message);
      },
      start(metadata, listener, next) {
        next(metadata, {
          // The answer reaches the call, but with a failed status grpc-js reports only the error.
          onReceiveStatus(received, nextStatus) {
            // The server applied the deposit and answered OK; the caller hears the network fail.
            nextStatus(
              loseThis
                ? { code: status.UNAVAILABLE, details: "answer lost (test)", metadata: new Metadata() }
                : received,
            );
          },
        });
      },
    });
  };
}

describe("against the real ledger", { skip: configured ? false : "LEDGER_TS_* not set" }, () => {
  let writer: LedgerClient;

  before(() => {
    writer = new LedgerClient(options(tokenFile("LEDGER_TS_WRITER_TOKEN_FILE")));
  });
  after(() => writer.close());

  test("opens, deposits and reads its own write in a session", async () => {
    const id = accountId();
    const session = writer.session();
    const opened = await session.openAccount({ accountId: id, currency: "USD", owner: "TypeScript client" });
    const deposited = await session.deposit(id, "12.34");
    assert.equal(opened.version, 1);
    assert.equal(deposited.version, 2);
    assert.ok(isCommandId(opened.commandId) && isCommandId(deposited.commandId));
    assert.notEqual(opened.commandId, deposited.commandId);

    const { account, freshness } = await session.getAccount(id);
    assert.equal(account?.balance, "12.34");
    assert.equal(account?.version, 2);
    assert.equal(account?.status, AccountStatus.ACCOUNT_STATUS_OPEN);
    assert.equal(account?.owner, "TypeScript client");
    assert.ok(freshness?.consistencyToken);
  });

  test("a lost answer is retried with the same id and the deposit is applied once", async () => {
    const sent: { commandId: string }[] = [];
    const client = new LedgerClient(
      options(tokenFile("LEDGER_TS_WRITER_TOKEN_FILE"), [loseAnswers("Deposit", 1, sent)]),
    );
    try {
      const id = accountId();
      const session = client.session();
      await session.openAccount({ accountId: id, currency: "EUR" });
      const deposited = await session.deposit(id, "5.00");
      assert.equal(sent.length, 2, "the first answer was lost, so the deposit was sent twice");
      assert.deepEqual(
        sent.map((request) => request.commandId),
        [deposited.commandId, deposited.commandId],
      );
      assert.equal(deposited.version, 2, "the retry returns the first try's result");

      const { transactions } = await session.listTransactions({ accountId: id });
      assert.deepEqual(
        transactions.map((t) => [t.kind, t.amount, t.commandId, t.version]),
        [[TransactionKind.TRANSACTION_KIND_DEPOSIT, "5.00", deposited.commandId, 2]],
      );
      const { account } = await session.getAccount(id);
      assert.equal(account?.balance, "5.00");
      assert.equal(account?.version, 2);
    } finally {
      client.close();
    }
  });

  test("sending a command again with its id changes nothing", async () => {
    const id = accountId();
    await writer.openAccount({ accountId: id, currency: "JPY" });
    const first = await writer.deposit(id, "1500");
    const again = await writer.deposit(id, "1500", { commandId: first.commandId });
    assert.deepEqual(again, first);
    const { account } = await writer.getAccount(id, { consistencyToken: again.consistencyToken });
    assert.equal(account?.balance, "1500");
  });

  test("a rejected command fails at once, with the server's status", async () => {
    const id = accountId();
    await writer.openAccount({ accountId: id, currency: "JPY" });
    await assert.rejects(writer.deposit(id, "1.50"), (error: LedgerError) => {
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.attempts, 1);
      return true;
    });
  });

  test("a session watches from a state that includes its writes", async () => {
    const id = accountId();
    const session = writer.session();
    await session.openAccount({ accountId: id, currency: "USD" });
    await session.deposit(id, "0.10");
    const stream = await session.watchAccount(id);
    try {
      for await (const message of stream) {
        assert.equal(message.account?.balance, "0.10");
        break;
      }
    } finally {
      stream.cancel();
    }
  });

  test("the reader token may read but not write", async () => {
    const reader = new LedgerClient(options(tokenFile("LEDGER_TS_READER_TOKEN_FILE")));
    try {
      await assert.rejects(reader.openAccount({ accountId: accountId(), currency: "USD" }), (error: LedgerError) => {
        assert.equal(error.code, status.PERMISSION_DENIED);
        return true;
      });
      const { partitions } = await reader.getProjectionStatus();
      assert.ok(partitions.length > 0);
    } finally {
      reader.close();
    }
  });

  test("without a token every call is refused", async () => {
    const anonymous = new LedgerClient(options(undefined));
    try {
      await assert.rejects(
        anonymous.getProjectionStatus(),
        (error: LedgerError) => error.code === status.UNAUTHENTICATED,
      );
    } finally {
      anonymous.close();
    }
  });

  test("a batch gets one result per command, and the failing one its own code", async () => {
    const id = accountId();
    const session = writer.session();
    const batch = await session.executeBatch([
      { openAccount: { accountId: id, currency: "USD" } },
      { deposit: { accountId: id, amount: "10.00" } },
      { withdraw: { accountId: id, amount: "99.00" } },
      { deposit: { accountId: id, amount: "2.50" } },
    ]);
    assert.deepEqual(
      batch.results.map((result) => [result.code, result.version]),
      [
        [status.OK, 1],
        [status.OK, 2],
        [status.FAILED_PRECONDITION, 0],
        [status.OK, 3],
      ],
    );
    assert.ok(batch.results[2]!.message);
    assert.ok(batch.results.every((result) => isCommandId(result.commandId)));
    const { accounts, missing } = await session.getAccounts([id, `${id}-none`]);
    assert.deepEqual(
      accounts.map((account) => [account.accountId, account.balance]),
      [[id, "12.50"]],
    );
    assert.deepEqual(missing, [`${id}-none`]);
    const { balances } = await session.listBalancesAt({ at: new Date(), accountIdPrefix: id });
    assert.deepEqual(
      balances.map((balance) => [balance.accountId, balance.balance, balance.version]),
      [[id, "12.50", 3]],
    );
    const { currencies } = await session.getTrialBalance({ at: new Date() });
    assert.ok(currencies.some((totals) => totals.currency === "USD" && totals.accountCount >= 1));
  });

  test("an atomic batch with a failing command applies nothing", async () => {
    const id = accountId();
    const session = writer.session();
    await session.openAccount({ accountId: id, currency: "EUR" });
    const batch = await session.executeBatch(
      [{ deposit: { accountId: id, amount: "10.00" } }, { withdraw: { accountId: id, amount: "50.00" } }],
      { atomic: true },
    );
    assert.deepEqual(
      batch.results.map((result) => result.code),
      [status.ABORTED, status.FAILED_PRECONDITION],
    );
    const { account } = await session.getAccount(id);
    assert.equal(account?.balance, "0.00");
    assert.equal(account?.version, 1);
  });

  test("a batch whose answer is lost is retried with the same ids and applied once", async () => {
    const sent: { commands: { deposit?: { commandId: string } }[] }[] = [];
    const client = new LedgerClient(
      options(tokenFile("LEDGER_TS_WRITER_TOKEN_FILE"), [loseAnswers("ExecuteBatch", 1, sent)]),
    );
    try {
      const id = accountId();
      const session = client.session();
      await session.openAccount({ accountId: id, currency: "GBP" });
      const batch = await session.executeBatch([
        { deposit: { accountId: id, amount: "1.00" } },
        { deposit: { accountId: id, amount: "2.00" } },
      ]);
      assert.equal(sent.length, 2, "the first answer was lost, so the batch was sent twice");
      assert.deepEqual(sent[1], sent[0]);
      assert.deepEqual(
        batch.results.map((result) => [result.code, result.version]),
        [
          [status.OK, 2],
          [status.OK, 3],
        ],
      );
      const { transactions } = await session.listTransactions({ accountId: id });
      assert.deepEqual(
        transactions.map((t) => [t.amount, t.commandId]),
        batch.results.map((result, index) => [["1.00", "2.00"][index], result.commandId]),
      );
    } finally {
      client.close();
    }
  });
});
