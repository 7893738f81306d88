// Command ids are UUIDv7 (RFC 9562): the first 48 bits are the time the client made the command.
// The command server reads that time to tell a retry it no longer remembers from a new command
// (and refuses ids of any other shape), so ids are made here rather than by crypto.randomUUID,
// which makes version 4.
import { randomBytes } from "node:crypto";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A fresh UUIDv7 in canonical lowercase text, stamped with `nowMs` (default: now). */
export function newCommandId(nowMs: number = Date.now(), random: Uint8Array = randomBytes(10)): string {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0 || nowMs >= 2 ** 48) {
    throw new RangeError(`a UUIDv7 holds a 48-bit millisecond time, not ${nowMs}`);
  }
  if (random.length !== 10) {
    throw new RangeError("a UUIDv7 needs 10 random bytes");
  }
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(nowMs, 0, 6);
  bytes.set(random, 6);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f); // version 7
  bytes[8] = 0x80 | (bytes[8]! & 0x3f); // variant 0b10 (RFC 9562)
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Whether `id` is a UUIDv7 in the canonical lowercase form the servers accept. */
export function isCommandId(id: string): boolean {
  return UUID_V7.test(id);
}

/** The millisecond time stamped into a UUIDv7 id, or undefined if `id` is not one. */
export function commandIdTime(id: string): number | undefined {
  return isCommandId(id) ? Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16) : undefined;
}
