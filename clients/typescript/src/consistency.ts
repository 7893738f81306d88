// Consistency tokens are opaque to callers, but a session must carry *every* write it made into
// its reads: a token names the positions of one command's events, per partition, so the last
// command's token alone would not cover an earlier command on another partition. The servers'
// format (ledger/consistency.py) is "v1." + unpadded base64url of "partition:offset,..."; the
// session merges tokens of that format (the latest offset per partition) and, for a token it
// cannot read, keeps the newest one, which is what a client without this knowledge would do.

const PREFIX = "v1.";
const POSITIONS = /^[0-9]{1,10}:[0-9]{1,19}(?:,[0-9]{1,10}:[0-9]{1,19})*$/;

function positions(token: string): Map<number, bigint> | undefined {
  if (!token.startsWith(PREFIX)) {
    return undefined;
  }
  const body = token.slice(PREFIX.length);
  if (!/^[A-Za-z0-9_-]*$/.test(body)) {
    return undefined;
  }
  const text = Buffer.from(body, "base64url").toString("ascii");
  if (text === "") {
    return new Map();
  }
  if (!POSITIONS.test(text)) {
    return undefined;
  }
  const result = new Map<number, bigint>();
  for (const pair of text.split(",")) {
    const [partition, offset] = pair.split(":") as [string, string];
    result.set(Number(partition), BigInt(offset)); // offsets reach 2**63 - 1: beyond a number
  }
  return result;
}

function encode(merged: Map<number, bigint>): string {
  const text = [...merged.entries()]
    .sort(([a], [b]) => a - b)
    .map(([partition, offset]) => `${partition}:${offset}`)
    .join(",");
  return PREFIX + Buffer.from(text, "ascii").toString("base64url");
}

/**
 * A token covered exactly when both `older` and `newer` are; `newer` if either is not in the
 * format this client knows, and the other one if either is empty.
 */
export function mergeTokens(older: string, newer: string): string {
  if (older === "" || older === newer) {
    return newer;
  }
  if (newer === "") {
    return older;
  }
  const a = positions(older);
  const b = positions(newer);
  if (a === undefined || b === undefined) {
    return newer;
  }
  for (const [partition, offset] of b) {
    const known = a.get(partition);
    a.set(partition, known !== undefined && known > offset ? known : offset);
  }
  return encode(a);
}
