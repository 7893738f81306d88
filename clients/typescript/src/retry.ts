// When to send a call again, and after how long. Commands carry their command id, so sending one
// again is safe: the server applies it once and answers every copy with the first result.
import { status, type ServiceError } from "@grpc/grpc-js";

import { LedgerError, isServiceError } from "./errors";

/** How retries are spaced. Every wait is bounded by the call's overall deadline. */
export interface RetryPolicy {
  /** The upper bound of the first back-off, in ms. */
  initialBackoffMs: number;
  /** No back-off bound grows beyond this, in ms. */
  maxBackoffMs: number;
  /** Each retry multiplies the bound by this. */
  multiplier: number;
  /** Sends at most this many times in all (the first try included). */
  maxAttempts: number;
  /** Each try gets at most this long (less if the overall deadline is nearer), in ms. */
  attemptTimeoutMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  initialBackoffMs: 50,
  maxBackoffMs: 2_000,
  multiplier: 2,
  maxAttempts: 10,
  attemptTimeoutMs: 5_000,
});

/**
 * UNAVAILABLE: the server is not ready or does not own the partition. DEADLINE_EXCEEDED: one
 * try's own deadline passed (the overall one is checked separately). RESOURCE_EXHAUSTED: the
 * command queue is full. Everything else, FAILED_PRECONDITION "too old to deduplicate" included,
 * is the server's final answer.
 */
export const RETRYABLE_CODES: ReadonlySet<status> = new Set([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
]);

export const PUSHBACK_HEADER = "grpc-retry-pushback-ms";

/** The wait the server asked for; null if it asked not to retry; undefined if it said nothing. */
export function pushbackMs(error: ServiceError): number | null | undefined {
  const values = error.metadata?.get(PUSHBACK_HEADER) ?? [];
  if (values.length === 0) {
    return undefined;
  }
  // gRFC A6: a value that is not a non-negative integer means "do not retry".
  const text = String(values[0]);
  return /^[0-9]+$/.test(text) ? Number(text) : null;
}

/** The clock, sleep and dice a retry loop uses; tests pass their own. */
export interface RetryEnvironment {
  now(): number;
  sleep(ms: number): Promise<void>;
  random(): number;
}

export const REAL_TIME: RetryEnvironment = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** "Full jitter": a uniformly random wait up to the retry's exponential bound. */
export function backoffMs(policy: RetryPolicy, retry: number, random: () => number): number {
  const bound = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.multiplier ** retry);
  return Math.floor(random() * bound);
}

/**
 * Calls `attempt` until it succeeds, fails with a final status, or the next try could not start
 * before `deadline` (ms since the epoch). `attempt` gets each try's own deadline. Throws
 * LedgerError with the last status.
 */
export async function withRetries<T>(
  attempt: (attemptDeadline: Date) => Promise<T>,
  deadline: number,
  policy: RetryPolicy,
  commandId?: string,
  env: RetryEnvironment = REAL_TIME,
): Promise<T> {
  for (let tries = 1; ; tries++) {
    const attemptDeadline = Math.min(deadline, env.now() + policy.attemptTimeoutMs);
    try {
      return await attempt(new Date(attemptDeadline));
    } catch (error) {
      if (!isServiceError(error)) {
        throw error;
      }
      const wait = nextWait(error, tries, policy, () => env.random());
      // No retry that could not even start before the caller's deadline.
      if (wait === undefined || env.now() + wait >= deadline) {
        throw new LedgerError(error, tries, commandId);
      }
      await env.sleep(wait);
    }
  }
}

function nextWait(error: ServiceError, tries: number, policy: RetryPolicy, random: () => number): number | undefined {
  if (!RETRYABLE_CODES.has(error.code) || tries >= policy.maxAttempts) {
    return undefined;
  }
  // A full command queue says how long to wait; any retryable answer may (gRFC A6).
  const pushback = pushbackMs(error);
  if (pushback === null) {
    return undefined;
  }
  return pushback ?? backoffMs(policy, tries - 1, random);
}
