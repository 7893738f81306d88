// Batches: up to 8,000 commands in one call. Every command without an id gets a fresh UUIDv7 before
// the first try, so a retried batch carries the same ids and the server answers the commands it
// already applied from their originals instead of applying them again.
import { status } from "@grpc/grpc-js";

import { isCommandId, newCommandId } from "./commandId";
import { Command, type ExecuteBatchRequest, type ExecuteBatchResponse } from "./gen/ledger/v1/commands";

/** The server's limit on commands per batch; more is refused with INVALID_ARGUMENT. */
export const MAX_BATCH_COMMANDS = 8_000;

type Kinds = Required<Command>;
/**
 * One command of a batch: exactly one of `openAccount`, `deposit`, `withdraw`, `transfer`,
 * `closeAccount`, holding that command's request. `commandId` may be left out: a fresh one is made.
 */
export type BatchCommand = {
  [K in keyof Kinds]: { [P in K]: Partial<NonNullable<Kinds[P]>> } & { [P in Exclude<keyof Kinds, K>]?: undefined };
}[keyof Kinds];

/** What became of one command of a batch. */
export interface BatchCommandResult {
  /** The id the command was sent with (on every try). */
  commandId: string;
  /** The status its unary call would have returned: status.OK when it was applied. */
  code: status;
  /** Empty for OK; otherwise why not, as the unary call would say it. */
  message: string;
  /** For OK: the (source) account's version after the command. */
  version: number;
  /** For OK: pass to a query to read a state that includes this command. */
  consistencyToken: string;
}

export interface BatchResult {
  /** One per command, in the order sent. */
  results: BatchCommandResult[];
  /** Covers every command of the batch that succeeded ("" when none did). */
  consistencyToken: string;
}

/** The request of a batch, every command with its id, made once for every try. */
export function batchRequest(commands: readonly BatchCommand[], atomic: boolean): ExecuteBatchRequest {
  const prepared = commands.map((command, index) => {
    const kinds = Object.entries(command).filter(([, request]) => request !== undefined);
    if (kinds.length !== 1) {
      throw new TypeError(`command ${index} of the batch must hold exactly one request, not ${kinds.length}`);
    }
    const [kind, request] = kinds[0] as [keyof Kinds, { commandId?: string }];
    if ("amount" in request && typeof request.amount !== "string") {
      // A JS number may already have lost cents; refuse it before sending.
      throw new TypeError(`command ${index} of the batch: an amount is a decimal string such as "12.34"`);
    }
    const commandId = request.commandId || newCommandId();
    if (!isCommandId(commandId)) {
      throw new TypeError(
        `command ${index} of the batch: a command id is a UUIDv7 in lowercase text, not ${JSON.stringify(commandId)}`,
      );
    }
    return Command.fromPartial({ [kind]: { ...request, commandId } });
  });
  return { commands: prepared, atomic };
}

export function batchResult(request: ExecuteBatchRequest, response: ExecuteBatchResponse): BatchResult {
  const results = response.results.map((result, index) => ({
    commandId: commandIdOf(request.commands[index]),
    code: result.code as status,
    message: result.message,
    version: result.version,
    consistencyToken: result.consistencyToken,
  }));
  return { results, consistencyToken: response.consistencyToken };
}

function commandIdOf(command: Command | undefined): string {
  const request = Object.values(command ?? {}).find((value) => value !== undefined) as
    { commandId: string } | undefined;
  return request?.commandId ?? "";
}
