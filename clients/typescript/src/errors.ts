// Errors: every code of PROTOCOL.md "Errors", plus the few this client
// raises itself.

/** The error codes the server sends (PROTOCOL.md, "Errors"). */
export const SERVER_ERROR_CODES = [
  "bad_request",
  "not_found",
  "invalid_config",
  "pool_busy",
  "busy",
  "closed",
  "rejected",
  "limit",
  "idle",
  "start_timeout",
  "start_failed",
  "sandbox_unavailable",
  "file_refused",
  "needs_sandbox",
  "unauthorized",
  "draining",
  "canceled",
  "internal",
] as const;

/** A code the server sends. */
export type ServerErrorCode = (typeof SERVER_ERROR_CODES)[number];

/**
 * Codes this client raises itself:
 * - `disconnected`: the connection ended (or could not be made) before the answer came;
 * - `protocol`: the server spoke something this client does not understand
 *   (another protocol version, a line that is not JSON);
 * - `unsandboxed`: the server runs R without a sandbox and the client was
 *   not told to allow that (`allowUnsandboxed`).
 */
export const CLIENT_ERROR_CODES = ["disconnected", "protocol", "unsandboxed"] as const;

export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** Everything the server refuses, and the client's own failures, as one error type with a `code`. */
export class SecurerError extends Error {
  override readonly name = "SecurerError";
  /** The reason, as PROTOCOL.md names it (or a client code). */
  readonly code: ErrorCode | string;
  /** Seconds after which asking again may succeed (`busy`, `limit`). */
  readonly retryAfter: number | undefined;
  /** The id of the request this answers, when it answers one. */
  readonly requestId: string | undefined;

  constructor(code: ErrorCode | string, message: string, opts: { retryAfter?: number; requestId?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryAfter = opts.retryAfter;
    this.requestId = opts.requestId;
  }

  /** True when the server is shutting down (SIGTERM): try another server, or later. */
  get draining(): boolean {
    return this.code === "draining";
  }

  /** True for refusals about load, which may succeed when asked again after `retryAfter`. */
  get retryable(): boolean {
    return this.code === "busy" || this.code === "limit" || this.code === "pool_busy";
  }
}

/** A server error event's body. */
export interface WireError {
  code: string;
  message: string;
  retry_after?: number;
}

export function fromWire(e: WireError, requestId?: string): SecurerError {
  const opts: { retryAfter?: number; requestId?: string } = {};
  if (typeof e.retry_after === "number") opts.retryAfter = e.retry_after;
  if (requestId !== undefined) opts.requestId = requestId;
  return new SecurerError(e.code, `${e.code}: ${e.message}`, opts);
}

/** Why a tool call was cancelled: the `reason` of the server's `tool_cancelled` event, or `ended`. */
export type ToolCancelReason = "timeout" | "canceled" | "ended";

/** The reason a tool's AbortSignal carries when the server no longer waits for its answer. */
export class ToolCancelledError extends Error {
  override readonly name = "ToolCancelledError";
  constructor(
    readonly reason: ToolCancelReason | string,
    readonly call: string,
  ) {
    super(`tool call ${call} cancelled (${reason}): its answer is no longer awaited`);
  }
}
