// securer-runc-client: a client for `securer-runc serve` (PROTOCOL.md).
export {
  Client,
  Execution,
  Pool,
  Session,
  Tool,
  tool,
  printedOutput,
  DEFAULT_SOCKET,
  PROTOCOL_VERSION,
} from "./client.js";
export type { ArgType, ConnectOptions, Hello, RunOptions, SpawnOptions, ToolContext, ToolSpec } from "./client.js";
export {
  SecurerError,
  ToolCancelledError,
  SERVER_ERROR_CODES,
  CLIENT_ERROR_CODES,
} from "./errors.js";
export type { ErrorCode, ServerErrorCode, ClientErrorCode, ToolCancelReason } from "./errors.js";
export { decode, encode, rNames, R, R_NAMES, DataFrame, Factor, RCode, RUnsupported } from "./values.js";
export type { RValue, RAttributes, WireDouble, DecodeOptions, IntegerMode, Typed } from "./values.js";
export type {
  Accounting,
  Display,
  ExecuteOptions,
  Limits,
  OutputEvent,
  PlotOptions,
  PoolExecuteOptions,
  PoolInfo,
  PoolStatus,
  RError,
  Result,
  SessionInfo,
  SessionOptions,
  Verdict,
} from "./types.js";
