// A fake command and query stub: each call takes the next scripted outcome and records what was
// sent, so the retry logic can be checked without a server (the servers are in test/integration).
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";

import { LedgerClient, type RetryEnvironment, type RetryPolicy, type Stubs } from "../../src";

export type Outcome = { error: ServiceError } | { response: object };

export interface Sent {
  method: string;
  request: Record<string, unknown>;
  metadata: Metadata;
  deadline: number;
}

export function failure(code: status, details = "", trailers: Record<string, string> = {}): Outcome {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(trailers)) {
    metadata.set(key, value);
  }
  return { error: Object.assign(new Error(details), { code, details, metadata }) };
}

export function success(response: object): Outcome {
  return { response };
}

/** A clock that only moves when the client sleeps. */
export class FakeTime implements RetryEnvironment {
  nowMs = 1_000_000;
  readonly sleeps: number[] = [];
  constructor(private readonly dice: () => number = () => 0.5) {}
  now(): number {
    return this.nowMs;
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.nowMs += ms;
    return Promise.resolve();
  }
  random(): number {
    return this.dice();
  }
}

export function fakeClient(
  outcomes: Outcome[],
  options: { timeoutMs?: number; retry?: Partial<RetryPolicy>; time?: FakeTime; token?: string } = {},
): { client: LedgerClient; sent: Sent[]; time: FakeTime } {
  const sent: Sent[] = [];
  const time = options.time ?? new FakeTime();
  const stub = new Proxy(
    { close: () => undefined },
    {
      get(target, method: string) {
        if (method === "close") {
          return target.close;
        }
        return (
          request: Record<string, unknown>,
          metadata: Metadata,
          callOptions: { deadline: Date },
          callback: (error: ServiceError | null, response?: object) => void,
        ) => {
          sent.push({ method, request, metadata, deadline: callOptions.deadline.getTime() });
          const outcome = outcomes.shift() ?? failure(status.INTERNAL, "the test scripted no more answers");
          setImmediate(() => ("error" in outcome ? callback(outcome.error) : callback(null, outcome.response)));
          return {};
        };
      },
    },
  );
  const stubs = { command: stub, query: stub } as unknown as Stubs;
  const client = new LedgerClient(
    {
      commandAddress: "fake",
      queryAddress: "fake",
      insecure: true,
      token: options.token,
      timeoutMs: options.timeoutMs,
      retry: options.retry,
    },
    stubs,
    time,
  );
  return { client, sent, time };
}
