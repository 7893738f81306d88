import { Metadata, status, type ServiceError } from "@grpc/grpc-js";

/** A call that failed for good: the server's status, after `attempts` tries. */
export class LedgerError extends Error {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
  /** How many times the call was sent (retries included). */
  readonly attempts: number;
  /** The command's id, for commands: sending a command again with it is safe. */
  readonly commandId: string | undefined;

  constructor(cause: ServiceError, attempts: number, commandId?: string) {
    super(`${status[cause.code] ?? cause.code}: ${cause.details}`, { cause });
    this.name = "LedgerError";
    this.code = cause.code;
    this.details = cause.details;
    this.metadata = cause.metadata ?? new Metadata();
    this.attempts = attempts;
    this.commandId = commandId;
  }

  /**
   * The server no longer remembers this command id, so it cannot tell whether the command was
   * applied: read the account before deciding to send a new command (with a new id).
   */
  get tooOldToDeduplicate(): boolean {
    return this.code === status.FAILED_PRECONDITION && /too old to deduplicate/i.test(this.details);
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    typeof (error as Partial<ServiceError>).details === "string"
  );
}
