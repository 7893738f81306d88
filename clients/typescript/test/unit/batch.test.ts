import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";

import { isCommandId, newCommandId } from "../../src";
import { failure, fakeClient, success } from "./fakes";

function token(positions: string): string {
  return "v1." + Buffer.from(positions).toString("base64url");
}

const answer = {
  results: [
    { code: 0, message: "", version: 1, consistencyToken: token("0:4") },
    { code: 9, message: "insufficient funds", version: 0, consistencyToken: "" },
  ],
  consistencyToken: token("0:4"),
};

test("a batch gives each command a fresh id and retries the whole batch with the same ids", async () => {
  const mine = newCommandId();
  const { client, sent } = fakeClient([failure(status.UNAVAILABLE, "lost"), success(answer)]);
  const batch = await client.executeBatch([
    { deposit: { accountId: "a", amount: "5.00" } },
    { withdraw: { accountId: "a", amount: "9.00", commandId: mine } },
  ]);
  assert.equal(sent.length, 2);
  assert.equal(sent[0]!.method, "executeBatch");
  assert.deepEqual(sent[1]!.request, sent[0]!.request, "the retry resends the very same batch");
  const ids = (sent[0]!.request.commands as { deposit?: { commandId: string } }[]).map(
    (command) => Object.values(command).find((value) => value !== undefined)?.commandId,
  );
  assert.ok(isCommandId(ids[0]!));
  assert.equal(ids[1], mine);
  assert.equal(sent[0]!.request.atomic, false);
  assert.deepEqual(
    batch.results.map((result) => [result.commandId, result.code, result.message]),
    [
      [ids[0], status.OK, ""],
      [mine, status.FAILED_PRECONDITION, "insufficient funds"],
    ],
  );
  assert.equal(batch.consistencyToken, token("0:4"));
});

test("a failure of the whole batch that is not retryable rejects at once", async () => {
  const { client, sent } = fakeClient([failure(status.INVALID_ARGUMENT, "too many commands")]);
  await assert.rejects(client.executeBatch([{ closeAccount: { accountId: "a" } }], { atomic: true }), /too many/);
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.request.atomic, true);
});

test("a command that is not exactly one request, or has a bad id or amount, is refused before sending", async () => {
  const { client, sent } = fakeClient([]);
  await assert.rejects(client.executeBatch([{} as never]), /exactly one request/);
  await assert.rejects(client.executeBatch([{ deposit: { accountId: "a", amount: "1", commandId: "x" } }]), /UUIDv7/);
  await assert.rejects(client.executeBatch([{ deposit: { accountId: "a", amount: 1 as never } }]), /decimal string/);
  assert.equal(sent.length, 0);
});

test("a session merges a batch's token and passes it to its new reads", async () => {
  const { client, sent } = fakeClient([
    success(answer),
    success({ accounts: [], missing: ["b"], freshness: { consistencyToken: token("0:4,1:2") } }),
    success({ balances: [], nextPageToken: "", freshness: undefined }),
    success({ currencies: [], freshness: undefined }),
  ]);
  const session = client.session(token("1:1"));
  await session.executeBatch([{ openAccount: { accountId: "a", currency: "USD" } }]);
  const found = await session.getAccounts(["b"]);
  assert.deepEqual(found.missing, ["b"]);
  assert.deepEqual(sent[1]!.request.accountIds, ["b"]);
  assert.equal(sent[1]!.request.consistencyToken, token("0:4,1:1"));
  await session.listBalancesAt({ at: new Date("2026-01-01T00:00:00Z"), accountIdPrefix: "a" });
  assert.equal(sent[2]!.request.consistencyToken, token("0:4,1:2"));
  assert.equal(sent[2]!.request.accountIdPrefix, "a");
  await session.getTrialBalance({ at: new Date() });
  assert.equal(sent[3]!.method, "getTrialBalance");
  assert.equal(sent[3]!.request.consistencyToken, token("0:4,1:2"));
});
