import assert from "node:assert/strict";
import { test } from "node:test";

import { mergeTokens } from "../../src";
import { fakeClient, success } from "./fakes";

function token(positions: string): string {
  return "v1." + Buffer.from(positions).toString("base64url");
}

test("merging keeps the latest offset of every partition", () => {
  assert.equal(mergeTokens(token("0:5,2:9"), token("2:7,3:1")), token("0:5,2:9,3:1"));
  assert.equal(mergeTokens("", token("1:1")), token("1:1"));
  assert.equal(mergeTokens(token("1:1"), ""), token("1:1"));
  // Kafka offsets go up to 2**63 - 1, beyond what a JS number holds exactly.
  assert.equal(
    mergeTokens(token("0:9223372036854775806"), token("0:9223372036854775807")),
    token("0:9223372036854775807"),
  );
});

test("a token in a format the client does not know is taken as it is", () => {
  assert.equal(mergeTokens(token("0:5"), "v2.something"), "v2.something");
});

test("a session's reads carry every write it made, on any partition", async () => {
  const { client, sent } = fakeClient([
    success({ version: 1, consistencyToken: token("0:10") }),
    success({ version: 1, consistencyToken: token("4:3") }),
    success({ account: undefined, freshness: { consistencyToken: token("0:10,4:3,5:8") } }),
    success({ transactions: [], nextPageToken: "", freshness: undefined }),
  ]);
  const session = client.session();
  assert.equal(session.consistencyToken, "");
  await session.openAccount({ accountId: "a", currency: "USD" });
  await session.openAccount({ accountId: "b", currency: "USD" });
  await session.getAccount("a");
  await session.listTransactions({ accountId: "a" });
  assert.equal(sent[2]!.request.consistencyToken, token("0:10,4:3"));
  // What a read saw is carried too: the session never reads an older state afterwards.
  assert.equal(sent[3]!.request.consistencyToken, token("0:10,4:3,5:8"));
});
