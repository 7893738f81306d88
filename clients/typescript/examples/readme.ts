import { readFileSync } from "node:fs";
import { LedgerClient } from "../src";

async function main(): Promise<void> {
  // `make run` writes the CA and the tokens here; the servers listen on 50051 and 50052.
  const credentials = process.env.LEDGER_CREDENTIALS ?? ".data/credentials";
  const client = new LedgerClient({
    commandAddress: process.env.LEDGER_COMMAND_ADDRESS ?? "127.0.0.1:50051",
    queryAddress: process.env.LEDGER_QUERY_ADDRESS ?? "127.0.0.1:50052",
    caCert: readFileSync(`${credentials}/ca.pem`),
    token: readFileSync(`${credentials}/writer.token`, "utf8").trim(),
  });
  try {
    const session = client.session(); // its reads wait for its own writes
    const accountId = `ts-${Date.now()}`;
    await session.openAccount({ accountId, currency: "EUR", owner: "Alice" });
    const deposit = await session.deposit(accountId, "12.50"); // amounts are decimal strings
    const { account } = await session.getAccount(accountId); // includes the deposit
    console.log(
      JSON.stringify({ accountId, balance: account?.balance, version: account?.version, commandId: deposit.commandId }),
    );
  } finally {
    client.close();
  }
}

main().catch((error: unknown) => {
  console.error(String(error));
  process.exitCode = 1;
});
