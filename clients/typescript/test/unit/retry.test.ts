// The retry policy, against a fake stub and a fake clock: what is sent, how often, with which id.
import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";

import { LedgerError, isCommandId } from "../../src";
import { FakeTime, failure, fakeClient, success } from "./fakes";

const ACCEPTED = success({ version: 2, consistencyToken: "v1.MDo3" });

test("retries UNAVAILABLE and DEADLINE_EXCEEDED with the same command id", async () => {
  const { client, sent } = fakeClient([
    failure(status.UNAVAILABLE, "not ready"),
    failure(status.DEADLINE_EXCEEDED, "slow"),
    ACCEPTED,
  ]);
  const result = await client.deposit("acc-1", "12.34");
  assert.deepEqual(result, { version: 2, consistencyToken: "v1.MDo3", commandId: result.commandId });
  assert.equal(sent.length, 3);
  assert.ok(isCommandId(result.commandId));
  for (const call of sent) {
    assert.deepEqual(call.request, {
      commandId: result.commandId,
      accountId: "acc-1",
      amount: "12.34",
      expectedVersion: undefined,
      reference: "",
      memo: "",
    });
  }
});

test("waits a full-jitter back-off that grows with each retry", async () => {
  const time = new FakeTime(() => 0.5);
  const { client } = fakeClient(
    [failure(status.UNAVAILABLE), failure(status.UNAVAILABLE), failure(status.UNAVAILABLE), ACCEPTED],
    { time, retry: { initialBackoffMs: 100, multiplier: 2, maxBackoffMs: 300 } },
  );
  await client.deposit("acc-1", "1");
  assert.deepEqual(time.sleeps, [50, 100, 150]); // half of 100, 200, then the 300 cap
});

test("full jitter may wait anything from nothing to the bound", async () => {
  const dice = [0, 0.999];
  const time = new FakeTime(() => dice.shift() ?? 0);
  const { client } = fakeClient([failure(status.UNAVAILABLE), failure(status.UNAVAILABLE), ACCEPTED], {
    time,
    retry: { initialBackoffMs: 1000, multiplier: 1 },
  });
  await client.deposit("acc-1", "1");
  assert.deepEqual(time.sleeps, [0, 999]);
});

test("a full queue is retried with the same id after the server's pushback", async () => {
  const { client, sent, time } = fakeClient([
    failure(status.RESOURCE_EXHAUSTED, "command queue full", { "grpc-retry-pushback-ms": "700" }),
    ACCEPTED,
  ]);
  const result = await client.withdraw("acc-1", "5.00");
  assert.deepEqual(time.sleeps, [700]);
  assert.deepEqual(
    sent.map((call) => call.request.commandId),
    [result.commandId, result.commandId],
  );
});

test("a pushback that is not a non-negative integer means: do not retry", async () => {
  for (const pushback of ["-1", "soon"]) {
    const { client, sent } = fakeClient([
      failure(status.RESOURCE_EXHAUSTED, "full", { "grpc-retry-pushback-ms": pushback }),
      ACCEPTED,
    ]);
    await assert.rejects(client.deposit("acc-1", "1"), (error: LedgerError) => {
      assert.equal(error.code, status.RESOURCE_EXHAUSTED);
      return true;
    });
    assert.equal(sent.length, 1);
  }
});

test("a pushback beyond the deadline fails now rather than sleeping past it", async () => {
  const { client, time } = fakeClient(
    [failure(status.RESOURCE_EXHAUSTED, "full", { "grpc-retry-pushback-ms": "5000" }), ACCEPTED],
    { timeoutMs: 2000 },
  );
  await assert.rejects(client.deposit("acc-1", "1"), LedgerError);
  assert.deepEqual(time.sleeps, []);
});

test("a retry the server no longer remembers is final, and says so", async () => {
  const { client, sent } = fakeClient([
    failure(status.FAILED_PRECONDITION, "command 0190... is too old to deduplicate"),
    ACCEPTED,
  ]);
  const commandId = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  await assert.rejects(client.deposit("acc-1", "1", { commandId }), (error: LedgerError) => {
    assert.ok(error.tooOldToDeduplicate);
    assert.equal(error.attempts, 1);
    assert.equal(error.commandId, commandId);
    return true;
  });
  assert.equal(sent.length, 1);
});

test("every other status is final", async () => {
  for (const code of [
    status.INVALID_ARGUMENT,
    status.NOT_FOUND,
    status.ALREADY_EXISTS,
    status.ABORTED,
    status.PERMISSION_DENIED,
    status.UNAUTHENTICATED,
    status.INTERNAL,
    status.UNKNOWN,
    status.CANCELLED,
  ]) {
    const { client, sent } = fakeClient([failure(code, "no"), ACCEPTED]);
    await assert.rejects(client.deposit("acc-1", "1"), (error: LedgerError) => error.code === code);
    assert.equal(sent.length, 1, status[code]);
  }
});

test("gives up with the last status once the overall deadline is near", async () => {
  const outcomes = Array.from({ length: 100 }, () => failure(status.UNAVAILABLE, "down"));
  const { client, sent, time } = fakeClient(outcomes, {
    timeoutMs: 1000,
    time: new FakeTime(() => 0.99),
    retry: { initialBackoffMs: 100, maxBackoffMs: 400, maxAttempts: 100 },
  });
  const start = time.now();
  await assert.rejects(client.deposit("acc-1", "1"), (error: LedgerError) => {
    assert.equal(error.code, status.UNAVAILABLE);
    assert.equal(error.attempts, sent.length);
    return true;
  });
  assert.ok(sent.length > 1);
  assert.ok(time.now() < start + 1000, "never sleeps past the deadline");
  for (const call of sent) {
    assert.ok(call.deadline <= start + 1000, "no try may outlive the call's deadline");
  }
});

test("each try gets its own deadline, so a slow try leaves time for another", async () => {
  const { client, sent, time } = fakeClient([failure(status.DEADLINE_EXCEEDED), ACCEPTED], {
    timeoutMs: 10_000,
    retry: { attemptTimeoutMs: 2000 },
  });
  const start = time.now();
  await client.deposit("acc-1", "1");
  assert.equal(sent[0]!.deadline, start + 2000);
});

test("stops after maxAttempts", async () => {
  const outcomes = Array.from({ length: 10 }, () => failure(status.UNAVAILABLE));
  const { client, sent } = fakeClient(outcomes, { retry: { maxAttempts: 3 } });
  await assert.rejects(client.deposit("acc-1", "1"), (error: LedgerError) => error.attempts === 3);
  assert.equal(sent.length, 3);
});

test("each command gets a fresh id", async () => {
  const { client, sent } = fakeClient([ACCEPTED, ACCEPTED]);
  await client.openAccount({ accountId: "acc-1", currency: "USD" });
  await client.deposit("acc-1", "1");
  const [first, second] = sent.map((call) => call.request.commandId as string);
  assert.ok(isCommandId(first!) && isCommandId(second!));
  assert.notEqual(first, second);
});

test("amounts are decimal strings: a number is refused before anything is sent", async () => {
  const { client, sent } = fakeClient([ACCEPTED]);
  await assert.rejects(client.deposit("acc-1", 12.34 as unknown as string), TypeError);
  await assert.rejects(client.transfer("a", "b", "1e3"), TypeError);
  await assert.rejects(client.withdraw("a", "-1"), TypeError);
  assert.equal(sent.length, 0);
});

test("a command id of another shape is refused before anything is sent", async () => {
  const { client, sent } = fakeClient([ACCEPTED]);
  await assert.rejects(client.deposit("acc-1", "1", { commandId: "4b0e3a3c-3c2e-4d8e-9d3a-0a7e8f9b1c2d" }), TypeError);
  assert.equal(sent.length, 0);
});

test("on a plaintext channel the token goes in every try's metadata", async () => {
  const { client, sent } = fakeClient([failure(status.UNAVAILABLE), ACCEPTED], { token: "t0ken" });
  await client.closeAccount("acc-1");
  assert.deepEqual(
    sent.map((call) => call.metadata.get("authorization")),
    [["Bearer t0ken"], ["Bearer t0ken"]],
  );
});

test("reads are retried too", async () => {
  const { client, sent } = fakeClient([
    failure(status.UNAVAILABLE),
    success({ account: undefined, freshness: undefined }),
  ]);
  await client.getAccount("acc-1");
  assert.equal(sent.length, 2);
});
