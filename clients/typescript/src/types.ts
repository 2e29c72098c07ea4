// The shapes this client hands out: results, session information, options.
import type { RValue } from "./values.js";

/** How an execution ended (PROTOCOL.md, "Events of an execution"). */
export type Verdict =
  | "ok"
  | "error"
  | "timeout"
  | "canceled"
  | "oom"
  | "killed"
  | "protocol_error"
  | "tool_call_limit"
  | "output_limit";

/** The R error of an execution whose verdict is `error`. */
export interface RError {
  message: string;
  call: string;
  class: string[];
  /** The code's calls when the error was signalled, outermost first. */
  traceback: string[];
}

export interface Accounting {
  wallNs: number;
  cpuUserNs: number;
  cpuSystemNs: number;
  peakMemoryBytes: number;
  peakPids: number;
  oomKills: number;
  toolCalls: number;
  stdoutBytes: number;
  stderrBytes: number;
}

/** A page the code drew. */
export interface Display {
  /** "image/png" or "image/svg+xml". */
  mime: string;
  /** The image (untrusted bytes written in the box: show SVGs as images, never inline). */
  data: Uint8Array;
  width: number;
  height: number;
  dpi: number;
}

/** The end of an execution. */
export interface Result {
  verdict: Verdict;
  /** The value, decoded (see decode()): NULL is null, names kept, NA null. */
  value: unknown;
  /** The value in the protocol's typed form. */
  typed: RValue;
  /** The server's plain-JSON rendering of the value (NULL is {} there). */
  valuePlain: unknown;
  visible: boolean;
  /** print() of the value, when visible (clipped to 65,536 characters). */
  printed: string;
  stdout: string;
  stderr: string;
  /** Bytes of stdout/stderr the server elided from the middle (0: none). */
  stdoutElided: number;
  stderrElided: number;
  warnings: string[];
  warningsDropped: number;
  messages: string[];
  error: RError | null;
  exit: string;
  detail: string;
  /** True when this ran in a new R because the session's R had died: earlier variables are gone. */
  stateLost: boolean;
  stateLostReason: string;
  accounting: Accounting;
  /** Bytes the auto-print of the value wrote at the end of stdout (see printedOutput()). */
  printedBytes: number;
  displays: Display[];
  displaysDropped: number;
  /** With `outputs: true`: the files the code made or changed in its work dir. */
  files: Map<string, Uint8Array>;
  filesDropped: number;
  /** One-shots only: true when it ran in a box the daemon had ready. */
  warm?: boolean;
}

/** What the server applied to a session or pool (PROTOCOL.md, `limits`). */
export interface Limits {
  memoryBytes: number;
  pids: number;
  cpus: number;
  tmpBytes: number;
  fsizeBytes: number;
  timeout: number;
  maxToolCalls: number;
  outputLimit: number;
  maxExecutions: number;
  maxCodeBytes: number;
  [other: string]: number;
}

export interface SessionInfo {
  sandboxed: boolean;
  /** R's pid as R sees it in the box (changes on restart). */
  pid: number;
  /** "container", "container-no-userns" or "none". */
  sandbox: string;
  limits: Limits;
  /** Options lowered to the operator's ceilings (with `clamp`). */
  clamped: string[];
}

export interface PoolStatus {
  total: number;
  idle: number;
  busy: number;
  starting: number;
  dead: number;
}

export interface PoolInfo {
  sandbox: string;
  limits: Limits;
  clamped: string[];
  status: PoolStatus;
}

/** Options of a session or pool (each at most the operator's ceiling). */
export interface SessionOptions {
  memoryBytes?: number;
  pids?: number;
  cpus?: number;
  tmpBytes?: number;
  fsizeBytes?: number;
  /** Seconds per execution. */
  timeout?: number;
  maxToolCalls?: number;
  /** Bytes of output per execution. */
  outputLimit?: number;
  maxExecutions?: number;
  maxCodeBytes?: number;
  /** R packages attached in the warm R. */
  preload?: string[];
}

/** How plots come back (PROTOCOL.md, "plots"). */
export interface PlotOptions {
  format?: "png" | "svg" | "none";
  width?: number;
  height?: number;
  dpi?: number;
}

/** An output chunk of a running execution. */
export interface OutputEvent {
  stream: "stdout" | "stderr";
  text: string;
}

export interface ExecuteOptions {
  /** Seconds (default: the session's). */
  timeout?: number;
  /** A fresh R state (a session only; a fresh pool always is). */
  fresh?: boolean;
  plots?: PlotOptions;
  /** Files written to the work dir before the code runs. */
  inputs?: { [name: string]: Uint8Array | string };
  /** Collect the files the code made or changed (Result.files). */
  outputs?: boolean;
  /** Aborting it cancels the execution (a `cancel` request): it ends with verdict `canceled`. */
  signal?: AbortSignal;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
}

export interface PoolExecuteOptions extends ExecuteOptions {
  /** Seconds to wait for a free session (0: fail at once); absent, as long as it takes. Past it: `pool_busy`. */
  acquireTimeout?: number;
}
