// The connection, sessions, pools, one-shots and executions.
import * as net from "node:net";
import { spawn as spawnProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";

import { SecurerError, ToolCancelledError, fromWire, type WireError } from "./errors.js";
import { decode, encode, type IntegerMode, type RValue } from "./values.js";
import type {
  Accounting,
  Display,
  ExecuteOptions,
  Limits,
  OutputEvent,
  PoolExecuteOptions,
  PoolInfo,
  PoolStatus,
  Result,
  SessionInfo,
  SessionOptions,
  Verdict,
} from "./types.js";

/** The socket a root daemon listens on by default (README, "Service"). */
export const DEFAULT_SOCKET = "/run/securer-runc/serve.sock";

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** The hello the server sends on connecting. */
export interface Hello {
  type: "hello";
  protocol: number;
  server: string;
  arg_types: string[];
  sandboxed: boolean;
  auth_required: boolean;
}

export interface ConnectOptions {
  /** The token of a server started with --token-file (default: SECURER_TOKEN). */
  token?: string;
  /** Accept a server that runs R without a sandbox (serve --stdio --unsafe-no-sandbox). Default false. */
  allowUnsandboxed?: boolean;
  /** Milliseconds to wait for the hello (default 10,000). */
  helloTimeout?: number;
  /**
   * Most requests sent and not yet ended at once (default 32, the server's
   * cap per connection); more wait in this client, in order, instead of
   * being refused with `limit`. Tool answers, cancels and pings never wait.
   */
  maxInFlight?: number;
}

export interface SpawnOptions extends ConnectOptions {
  /** The server's command line (default: SECURER_RUNC or "securer-runc", then "serve", "--stdio"). */
  command?: string[];
  /** Where the server's stderr (its log) goes (default "inherit"). */
  stderr?: "inherit" | "ignore";
}

/** A tool argument's declared type ("" is unchecked). */
export type ArgType = "numeric" | "character" | "logical" | "integer" | "list" | "data.frame" | "";

/** What a tool function gets besides its arguments. */
export interface ToolContext {
  /**
   * Aborted when the server stops waiting for this call (a `tool_cancelled`
   * event: the execution timed out, was cancelled or ended) or the
   * connection ends; its reason is a ToolCancelledError. The answer of an
   * aborted call is dropped.
   */
  signal: AbortSignal;
  /** The call's id. */
  call: string;
  tool: string;
  /** The arguments in the typed form. */
  typed: { [name: string]: RValue };
  /** The arguments as the server's plain JSON. */
  plain: { [name: string]: unknown };
}

export interface ToolSpec {
  /** How R calls it: ^[A-Za-z.][A-Za-z0-9_.]*$ */
  name: string;
  description?: string;
  /** Argument names and types, in R's positional order. */
  args?: { [name: string]: ArgType };
  /** Seconds one call may take (default: the execution's timeout). */
  timeout?: number;
  /** How the arguments' integers are decoded (see decode()). */
  integers?: IntegerMode;
  /**
   * Answers a call: gets the decoded arguments by name; returns (or
   * resolves to) the answer, encoded with encode(); a throw (or rejection)
   * becomes an R error with its message.
   */
  handler: (args: { [name: string]: any }, ctx: ToolContext) => unknown;
}

/** A tool R code can call, answered by a TypeScript function. */
export class Tool {
  readonly name: string;
  readonly description: string;
  readonly args: { [name: string]: ArgType };
  readonly timeout: number | undefined;
  readonly integers: IntegerMode;
  readonly handler: ToolSpec["handler"];

  constructor(spec: ToolSpec) {
    if (typeof spec.handler !== "function") throw new TypeError(`tool ${spec.name}: handler must be a function`);
    this.name = spec.name;
    this.description = spec.description ?? "";
    this.args = { ...(spec.args ?? {}) };
    this.timeout = spec.timeout;
    this.integers = spec.integers ?? "number";
    this.handler = spec.handler;
  }

  /** The declaration sent to the server. */
  decl(): { name: string; description: string; args: { name: string; type: string }[]; timeout?: number } {
    const d: { name: string; description: string; args: { name: string; type: string }[]; timeout?: number } = {
      name: this.name,
      description: this.description,
      args: Object.entries(this.args).map(([name, type]) => ({ name, type })),
    };
    if (this.timeout !== undefined) d.timeout = this.timeout;
    return d;
  }
}

/** Declare a tool: `tool({name: "add", args: {a: "numeric", b: "numeric"}, handler: ({a, b}) => a + b})`. */
export function tool(spec: ToolSpec): Tool {
  return new Tool(spec);
}

// ---- wire helpers -----------------------------------------------------------

type Ev = { type: string; id?: string; [k: string]: any };

interface Pending {
  onEvent(ev: Ev): void;
  onClose(err: SecurerError): void;
}

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

function camel(k: string): string {
  return k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function camelKeys<T>(o: unknown): T {
  if (!o || typeof o !== "object") return o as T;
  return Object.fromEntries(Object.entries(o as object).map(([k, v]) => [camel(k), v])) as T;
}

function wireOptions(o: SessionOptions | undefined): { [k: string]: unknown } {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => [snake(k), v]));
}

function b64(data: Uint8Array | string): string {
  return (typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).toString("base64");
}

function unb64(s: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(s ?? "", "base64"));
}

function toResult(ev: Ev): Result {
  const r = (ev["result"] ?? {}) as { [k: string]: any };
  const typed: RValue = r["value"] ?? { type: "NULL" };
  let value: unknown;
  try {
    value = decode(typed);
  } catch {
    value = typed; // deeper than this client decodes: the typed form itself
  }
  const displays: Display[] = [];
  for (const d of (r["displays"] ?? []) as { data: { [mime: string]: string }; metadata: { width: number; height: number; dpi: number } }[]) {
    for (const [mime, data] of Object.entries(d.data)) {
      displays.push({ mime, data: unb64(data), width: d.metadata?.width, height: d.metadata?.height, dpi: d.metadata?.dpi });
    }
  }
  const files = new Map<string, Uint8Array>();
  for (const f of (r["files"] ?? []) as { name: string; data: string }[]) files.set(f.name, unb64(f.data));
  const err = r["error"];
  const res: Result = {
    verdict: r["verdict"] as Verdict,
    value,
    typed,
    valuePlain: ev["value_plain"],
    visible: !!r["visible"],
    printed: r["printed"] ?? "",
    stdout: r["stdout"] ?? "",
    stderr: r["stderr"] ?? "",
    stdoutElided: r["stdout_elided"] ?? 0,
    stderrElided: r["stderr_elided"] ?? 0,
    warnings: r["warnings"] ?? [],
    warningsDropped: r["warnings_dropped"] ?? 0,
    messages: r["messages"] ?? [],
    error: err ? { message: err.message ?? "", call: err.call ?? "", class: err.class ?? [], traceback: err.traceback ?? [] } : null,
    exit: r["exit"] ?? "",
    detail: r["detail"] ?? "",
    stateLost: !!r["state_lost"],
    stateLostReason: r["state_lost_reason"] ?? "",
    accounting: camelKeys<Accounting>(r["accounting"] ?? {}),
    printedBytes: r["printed_bytes"] ?? 0,
    displays,
    displaysDropped: r["displays_dropped"] ?? 0,
    files,
    filesDropped: r["files_dropped"] ?? 0,
  };
  if (typeof ev["warm"] === "boolean") res.warm = ev["warm"];
  else if (typeof r["warm"] === "boolean") res.warm = r["warm"];
  return res;
}

/** stdout without the auto-print of the value at its end (all of stdout when the server elided some). */
export function printedOutput(result: Result): string {
  const out = Buffer.from(result.stdout, "utf8");
  const n = result.printedBytes;
  if (n <= 0 || result.stdoutElided || n > out.length) return result.stdout;
  return out.subarray(0, out.length - n).toString("utf8");
}

// ---- the connection ---------------------------------------------------------

/**
 * One connection to `securer-runc serve`. Requests may overlap: each has
 * its own id and the events are sorted by it. Closing the connection (or
 * the process ending) closes everything it made on the server.
 */
export class Client {
  /** The server's hello. */
  hello!: Hello;
  /** Resolves when the connection ends, with why (undefined after close()). */
  readonly closed: Promise<SecurerError | undefined>;

  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private ended: SecurerError | undefined;
  private closing = false;
  private lineError: SecurerError | undefined; // an error event without an id
  private partial: Buffer[] = [];
  private helloWaiter: ((ev: Ev | SecurerError) => void) | undefined;
  private resolveClosed!: (e: SecurerError | undefined) => void;
  private exited: Promise<void> | undefined; // a spawned server's exit
  private maxInFlight = 32;
  private inFlight = 0;
  private backlog: (() => void)[] = []; // requests waiting for a slot, in order

  private constructor(
    input: Readable,
    private readonly output: Writable,
    private readonly shut: () => void,
  ) {
    this.closed = new Promise((res) => (this.resolveClosed = res));
    input.on("data", (chunk: Buffer) => this.onData(chunk));
    input.on("end", () => this.end());
    input.on("close", () => this.end());
    input.on("error", (e: Error) => this.end(new SecurerError("disconnected", `connection error: ${e.message}`, { cause: e })));
    output.on("error", (e: Error) => this.end(new SecurerError("disconnected", `connection error: ${e.message}`, { cause: e })));
  }

  /**
   * Connect to a daemon's Unix socket: `path`, else SECURER_SOCKET, else
   * the default socket (/run/securer-runc/serve.sock).
   */
  static async connect(path?: string, opts: ConnectOptions = {}): Promise<Client> {
    const p = path || process.env["SECURER_SOCKET"] || DEFAULT_SOCKET;
    const sock = await dial(() => net.createConnection({ path: p }), `unix:${p}`);
    return Client.handshake(new Client(sock, sock, () => sock.destroy()), opts);
  }

  /** Connect to a daemon on TCP (serve --listen tcp:HOST:PORT --token-file F); the token defaults to SECURER_TOKEN. */
  static async connectTcp(host: string, port: number, opts: ConnectOptions = {}): Promise<Client> {
    const sock = await dial(() => net.createConnection({ host, port }), `tcp:${host}:${port}`);
    sock.setNoDelay(true);
    return Client.handshake(new Client(sock, sock, () => sock.destroy()), opts);
  }

  /** Connect to "unix:PATH", "tcp:HOST:PORT" or a socket path. */
  static async open(address: string, opts: ConnectOptions = {}): Promise<Client> {
    if (address.startsWith("tcp:")) {
      const rest = address.slice(4);
      const i = rest.lastIndexOf(":");
      const port = Number(rest.slice(i + 1));
      if (i < 0 || !Number.isInteger(port)) throw new SecurerError("bad_request", `bad address ${JSON.stringify(address)}: want tcp:HOST:PORT`);
      return Client.connectTcp(rest.slice(0, i).replace(/^\[(.*)\]$/, "$1"), port, opts);
    }
    return Client.connect(address.startsWith("unix:") ? address.slice(5) : address, opts);
  }

  /** Start `securer-runc serve --stdio` (needs root) and talk to it; close() ends it. */
  static async spawn(opts: SpawnOptions = {}): Promise<Client> {
    const cmd = opts.command ?? [process.env["SECURER_RUNC"] || "securer-runc", "serve", "--stdio"];
    const child = spawnProcess(cmd[0]!, cmd.slice(1), { stdio: ["pipe", "pipe", opts.stderr ?? "inherit"] });
    await new Promise<void>((res, rej) => {
      child.once("spawn", res);
      child.once("error", (e) => rej(new SecurerError("disconnected", `cannot start ${cmd[0]}: ${e.message}`, { cause: e })));
    });
    // Later errors (a failed kill) end the connection, never the process.
    child.on("error", () => {});
    const exited = new Promise<void>((res) => child.once("exit", () => res()));
    const c = new Client(child.stdout!, child.stdin!, () => {
      // The server ends, closing everything, when its stdin closes; a
      // server that does not is stopped after 30 s.
      child.stdin!.end();
      const t = setTimeout(() => child.kill("SIGTERM"), 30000);
      t.unref();
      void exited.then(() => clearTimeout(t));
    });
    c.exited = exited;
    void exited.then(() => c.end());
    return Client.handshake(c, opts);
  }

  private static async handshake(c: Client, opts: ConnectOptions): Promise<Client> {
    if (opts.maxInFlight !== undefined) {
      if (!(opts.maxInFlight >= 1)) throw new RangeError("maxInFlight must be at least 1");
      c.maxInFlight = opts.maxInFlight;
    }
    try {
      const token = opts.token ?? process.env["SECURER_TOKEN"];
      // auth may go before the hello (PROTOCOL.md): it also keeps a
      // flood of strangers from pushing this connection out.
      const auth = token ? c.request({ op: "auth", token }, ["ok"], true) : undefined;
      auth?.catch(() => {});
      const hello = await c.waitHello(opts.helloTimeout ?? 10000);
      if (hello.protocol !== PROTOCOL_VERSION) {
        throw new SecurerError("protocol", `the server speaks protocol ${hello.protocol}; this client speaks ${PROTOCOL_VERSION}`);
      }
      c.hello = hello;
      if (hello.sandboxed === false && !opts.allowUnsandboxed) {
        throw new SecurerError(
          "unsandboxed",
          "the server runs R without a sandbox (--unsafe-no-sandbox); pass allowUnsandboxed: true to accept that",
        );
      }
      if (hello.auth_required && !auth) throw new SecurerError("unauthorized", "the server wants a token (SECURER_TOKEN or the token option)");
      if (auth) await auth;
      return c;
    } catch (e) {
      c.shutdown();
      await c.exited;
      throw e;
    }
  }

  private waitHello(ms: number): Promise<Hello> {
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new SecurerError("protocol", `no hello from the server within ${ms} ms`)), ms);
      this.helloWaiter = (ev) => {
        clearTimeout(t);
        this.helloWaiter = undefined;
        if (ev instanceof SecurerError) rej(ev);
        else if (ev.type !== "hello") rej(new SecurerError("protocol", `expected the hello, got ${JSON.stringify(ev).slice(0, 200)}`));
        else res(ev as unknown as Hello);
      };
      if (this.ended) this.helloWaiter(this.ended);
    });
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      let line: Buffer;
      if (this.partial.length) {
        this.partial.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.partial);
        this.partial = [];
      } else {
        line = chunk.subarray(start, nl);
      }
      start = nl + 1;
      if (line.length) this.onLine(line.toString("utf8"));
      if (this.ended) return;
    }
    if (start < chunk.length) this.partial.push(chunk.subarray(start));
  }

  private onLine(line: string): void {
    let ev: Ev;
    try {
      ev = JSON.parse(line);
    } catch {
      this.end(new SecurerError("protocol", `the server sent a line that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if (this.helloWaiter && (ev.type === "hello" || ev.id === undefined)) {
      if (ev.type === "error") this.lineError = fromWire(ev["error"] as WireError);
      this.helloWaiter(ev.type === "error" ? this.lineError! : ev);
      return;
    }
    if (typeof ev.id === "string") {
      this.pending.get(ev.id)?.onEvent(ev);
      return; // a late answer to something given up on
    }
    if (ev.type === "error") {
      // Not about one request: the connection is about to close (draining,
      // idle, full); the pending requests get this as their reason.
      this.lineError = fromWire(ev["error"] as WireError);
    }
  }

  private end(reason?: SecurerError): void {
    if (this.ended) return;
    this.ended =
      this.lineError ??
      reason ??
      new SecurerError("disconnected", this.closing ? "the client closed the connection" : "the server closed the connection");
    this.helloWaiter?.(this.ended);
    this.backlog = [];
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.onClose(this.ended);
    }
    this.shut();
    this.resolveClosed(this.closing ? undefined : this.ended);
  }

  private shutdown(): void {
    this.closing = true;
    this.end();
  }

  /**
   * Close the connection: the server closes every session and pool it
   * made. A spawned server has exited when this resolves.
   */
  async close(): Promise<void> {
    this.shutdown();
    await this.closed;
    await this.exited;
  }

  /** @internal */
  newId(prefix = ""): string {
    return prefix + String(this.nextId++);
  }

  /** @internal Send one message; throws when the connection has ended. */
  send(msg: { [k: string]: unknown }): void {
    if (this.ended) throw this.ended;
    this.output.write(JSON.stringify(msg) + "\n");
  }

  /** @internal */
  register(id: string, p: Pending): void {
    if (this.ended) {
      p.onClose(this.ended);
      return;
    }
    this.pending.set(id, p);
  }

  /** @internal */
  unregister(id: string): void {
    this.pending.delete(id);
  }

  /** @internal Run send now, or once fewer than maxInFlight requests are out; call release() after its final event. */
  admit(send: () => void): void {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      send();
    } else {
      this.backlog.push(send);
    }
  }

  /** @internal */
  release(): void {
    this.inFlight--;
    while (this.inFlight < this.maxInFlight && this.backlog.length) {
      this.inFlight++;
      this.backlog.shift()!();
    }
  }

  /**
   * @internal A request answered by one event of a type in want (or an
   * error); inline ones (answered at once by the server) skip the queue.
   */
  request(msg: { [k: string]: unknown }, want: string[], inline = false): Promise<Ev> {
    const id = this.newId();
    return new Promise((res, rej) => {
      let sent = false;
      const settle = (f: () => void) => {
        this.unregister(id);
        if (sent && !inline) this.release();
        f();
      };
      this.register(id, {
        onEvent: (ev) => {
          if (ev.type === "error") settle(() => rej(fromWire(ev["error"] as WireError, id)));
          else if (want.includes(ev.type)) settle(() => res(ev));
        },
        onClose: rej,
      });
      if (!this.pending.has(id)) return;
      const send = () => {
        sent = true;
        try {
          this.send({ ...msg, id });
        } catch (e) {
          settle(() => rej(e));
        }
      };
      if (inline) send();
      else this.admit(send);
    });
  }

  /** Ask the server for a pong (also keeps an idle connection open). */
  async ping(): Promise<void> {
    await this.request({ op: "ping" }, ["pong"], true);
  }

  /** Create a session: one R, its state kept between executions, until closed. */
  async createSession(opts: { tools?: Tool[]; options?: SessionOptions; clamp?: boolean } = {}): Promise<Session> {
    const tools = opts.tools ?? [];
    const msg: { [k: string]: unknown } = { op: "create_session", tools: tools.map((t) => t.decl()), options: wireOptions(opts.options) };
    if (opts.clamp) msg["clamp"] = true;
    const ev = await this.request(msg, ["session"]);
    const info: SessionInfo = {
      sandboxed: ev["sandboxed"],
      pid: ev["pid"],
      sandbox: ev["sandbox"],
      limits: camelKeys<Limits>(ev["limits"] ?? {}),
      clamped: ev["clamped"] ?? [],
    };
    return new Session(this, ev["session"], info, toolMap(tools));
  }

  /**
   * Create a pool of `size` sessions; executions on it run concurrently up
   * to its size. reset: "fresh" (default: a fresh R state each time),
   * "none" or "restart".
   */
  async createPool(
    size: number,
    opts: { tools?: Tool[]; options?: SessionOptions; clamp?: boolean; reset?: "fresh" | "none" | "restart" } = {},
  ): Promise<Pool> {
    const tools = opts.tools ?? [];
    const msg: { [k: string]: unknown } = {
      op: "create_pool",
      size,
      reset: opts.reset ?? "fresh",
      tools: tools.map((t) => t.decl()),
      options: wireOptions(opts.options),
    };
    if (opts.clamp) msg["clamp"] = true;
    const ev = await this.request(msg, ["pool"]);
    const info: PoolInfo = {
      sandbox: ev["sandbox"],
      limits: camelKeys<Limits>(ev["limits"] ?? {}),
      clamped: ev["clamped"] ?? [],
      status: ev["status"],
    };
    return new Pool(this, ev["pool"], info, toolMap(tools));
  }

  /**
   * A one-shot: code in, result out, in a fresh R that nothing is kept of
   * (a box the daemon had ready when it has one: Result.warm).
   */
  run(code: string, opts: RunOptions = {}): Promise<Result> {
    return this.oneShot(code, opts, false).result;
  }

  /** run(), streaming: iterate the returned Execution for its output. */
  runStream(code: string, opts: RunOptions = {}): Execution {
    return this.oneShot(code, opts, true);
  }

  private oneShot(code: string, opts: RunOptions, buffer: boolean): Execution {
    const tools = opts.tools ?? [];
    const extra: { [k: string]: unknown } = {};
    if (opts.tools) extra["tools"] = tools.map((t) => t.decl());
    if (opts.options) extra["options"] = wireOptions(opts.options);
    if (opts.clamp) extra["clamp"] = true;
    return new Execution(this, extra, code, opts, toolMap(tools), buffer);
  }
}

/** Options of a one-shot. */
export interface RunOptions extends Omit<ExecuteOptions, "fresh"> {
  tools?: Tool[];
  options?: SessionOptions;
  clamp?: boolean;
}

function toolMap(tools: Tool[]): Map<string, Tool> {
  return new Map(tools.map((t) => [t.name, t]));
}

function dial(make: () => net.Socket, what: string): Promise<net.Socket> {
  return new Promise((res, rej) => {
    const s = make();
    const fail = (e: Error) => {
      s.destroy();
      rej(new SecurerError("disconnected", `cannot connect to ${what}: ${e.message}`, { cause: e }));
    };
    s.once("error", fail);
    s.once("connect", () => {
      s.off("error", fail);
      res(s);
    });
  });
}

// ---- executions -------------------------------------------------------------

/**
 * A running execution: `await execution.result`, or iterate it
 * (`for await (const {stream, text} of execution)`) for its output in
 * order, then read the result. cancel() (or the signal) cancels it.
 */
export class Execution implements AsyncIterable<OutputEvent> {
  readonly id: string;
  /** The result; rejects with a SecurerError when the execution was refused. */
  readonly result: Promise<Result>;

  private done = false;
  private readonly running = new Map<string, AbortController>();
  private readonly answerIds: string[] = [];
  private readonly queue: OutputEvent[] = [];
  private waiter: (() => void) | undefined;
  private failure: unknown;
  private cancelSent = false;
  private sent = false; // the execute went out (it holds a slot of the client's)
  private cancelWanted = false; // cancel() before it went out
  private readonly onAbort: () => void;

  /** @internal */
  constructor(
    private readonly client: Client,
    target: { [k: string]: unknown },
    code: string,
    private readonly opts: PoolExecuteOptions,
    private readonly tools: Map<string, Tool>,
    private readonly buffer: boolean,
  ) {
    this.id = client.newId();
    const msg: { [k: string]: unknown } = { op: "execute", id: this.id, ...target, code };
    if (opts.timeout !== undefined) msg["timeout"] = opts.timeout;
    if (opts.fresh) msg["fresh"] = true;
    if (opts.plots) msg["plots"] = opts.plots;
    if (opts.inputs) msg["inputs"] = Object.entries(opts.inputs).map(([name, data]) => ({ name, data: b64(data) }));
    if (opts.outputs) msg["outputs"] = { collect: true };
    if (opts.acquireTimeout !== undefined) msg["acquire_timeout"] = opts.acquireTimeout;
    this.onAbort = () => this.cancel();
    this.result = new Promise<Result>((resolve, reject) => {
      client.register(this.id, {
        onEvent: (ev) => this.onEvent(ev, resolve, reject),
        onClose: (err) => this.finish(() => reject(err), err),
      });
      if (this.done) return;
      client.admit(() => {
        if (this.done) {
          client.release();
          return;
        }
        this.sent = true;
        try {
          client.send(msg);
        } catch (e) {
          this.finish(() => reject(e), e);
          return;
        }
        if (this.cancelWanted) this.cancel();
      });
      if (opts.signal) {
        if (opts.signal.aborted) this.cancel();
        else opts.signal.addEventListener("abort", this.onAbort, { once: true });
      }
    });
    // The result is also reached through iteration: an unawaited rejection
    // must not end the process.
    this.result.catch(() => {});
  }

  /** Cancel the execution (a `cancel` request): it ends with verdict `canceled`. Harmless once it ended. */
  cancel(): void {
    if (this.done || this.cancelSent) return;
    if (!this.sent) {
      // Still waiting for a slot: cancelled as soon as it goes out (the
      // server ends it at once, verdict canceled, nothing run).
      this.cancelWanted = true;
      return;
    }
    this.cancelSent = true;
    const id = this.client.newId();
    this.client.register(id, { onEvent: () => this.client.unregister(id), onClose: () => {} });
    try {
      this.client.send({ op: "cancel", id, target: this.id });
    } catch {
      this.client.unregister(id);
    }
  }

  private onEvent(ev: Ev, resolve: (r: Result) => void, reject: (e: unknown) => void): void {
    switch (ev.type) {
      case "stdout":
      case "stderr": {
        const text = String(ev["text"] ?? "");
        const cb = ev.type === "stdout" ? this.opts.onStdout : this.opts.onStderr;
        if (cb) {
          try {
            cb(text);
          } catch {
            // a throwing callback must not stop the execution's events
          }
        }
        if (this.buffer) this.push({ stream: ev.type, text });
        return;
      }
      case "tool_call":
        this.onToolCall(ev);
        return;
      case "tool_cancelled":
        this.abortCall(String(ev["call"]), String(ev["reason"] ?? "ended"));
        return;
      case "result": {
        let res: Result;
        try {
          res = toResult(ev);
        } catch (e) {
          this.finish(() => reject(new SecurerError("protocol", `a result this client cannot read: ${String(e)}`)), e);
          return;
        }
        this.finish(() => resolve(res));
        return;
      }
      case "error": {
        const err = fromWire(ev["error"] as WireError, this.id);
        this.finish(() => reject(err), err);
        return;
      }
    }
  }

  private finish(settle: () => void, failure?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.client.unregister(this.id);
    if (this.sent) this.client.release();
    for (const id of this.answerIds) this.client.unregister(id);
    for (const call of [...this.running.keys()]) this.abortCall(call, "ended");
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    this.failure = failure;
    settle();
    this.wake();
  }

  private abortCall(call: string, reason: string): void {
    const ac = this.running.get(call);
    if (!ac) return;
    this.running.delete(call);
    ac.abort(new ToolCancelledError(reason, call));
  }

  private onToolCall(ev: Ev): void {
    const call = String(ev["call"]);
    const t = this.tools.get(String(ev["tool"]));
    if (!t) {
      this.answer(call, { error: `no tool ${ev["tool"]} in this client` });
      return;
    }
    const ac = new AbortController();
    this.running.set(call, ac);
    const typed = (ev["args"] ?? {}) as { [k: string]: RValue };
    const ctx: ToolContext = { signal: ac.signal, call, tool: t.name, typed, plain: ev["args_plain"] ?? {} };
    Promise.resolve()
      .then(() => {
        const args: { [k: string]: unknown } = {};
        for (const [k, v] of Object.entries(typed)) args[k] = decode(v, { integers: t.integers });
        return t.handler(args, ctx);
      })
      .then(
        (value) => {
          if (ac.signal.aborted) return;
          let typedValue: RValue;
          try {
            typedValue = encode(value);
          } catch (e) {
            this.answer(call, { error: `tool ${t.name}: its answer cannot be sent to R: ${(e as Error).message}` }, ac);
            return;
          }
          this.answer(call, { typed: typedValue }, ac);
        },
        (e: unknown) => {
          if (ac.signal.aborted) return;
          const m = e instanceof Error ? e.message || e.name : String(e);
          this.answer(call, { error: m || "the tool failed" }, ac);
        },
      );
  }

  private answer(call: string, body: { [k: string]: unknown }, ac?: AbortController): void {
    if (ac && this.running.get(call) !== ac) return; // cancelled meanwhile
    this.running.delete(call);
    if (this.done) return;
    const id = this.client.newId("t");
    this.answerIds.push(id);
    this.client.register(id, {
      onEvent: (ev) => {
        this.client.unregister(id);
        // not_found: the call is no longer waiting (cancelled, ended); ignore.
        if (ev.type === "error" && ev["error"]?.code !== "not_found" && !("error" in body)) {
          // The server refused the answer itself (too large, a NUL, ...):
          // tell R, rather than leave it waiting for its timeout.
          this.answer(call, { error: `the tool's answer was refused: ${ev["error"]?.message ?? "?"}` });
        }
      },
      onClose: () => {},
    });
    try {
      this.client.send({ op: "tool_result", id, call, ...body });
    } catch {
      this.client.unregister(id);
    }
  }

  private push(e: OutputEvent): void {
    this.queue.push(e);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The output, in order, until the execution ends; a refused execution throws its error. */
  async *[Symbol.asyncIterator](): AsyncIterator<OutputEvent> {
    for (;;) {
      while (this.queue.length) yield this.queue.shift()!;
      if (this.done) {
        while (this.queue.length) yield this.queue.shift()!;
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      await new Promise<void>((res) => (this.waiter = res));
    }
  }
}

// ---- sessions and pools -------------------------------------------------------

/** A session: one R (in its box), state kept between executions. */
export class Session {
  /** @internal */
  constructor(
    private readonly client: Client,
    /** The server's name for it ("s1"). */
    readonly name: string,
    /** What the server applied (pid, sandbox, limits, clamped). */
    public info: SessionInfo,
    private readonly tools: Map<string, Tool>,
  ) {}

  /** Run code; executions on one session run one after the other. */
  execute(code: string, opts: ExecuteOptions = {}): Promise<Result> {
    return new Execution(this.client, { session: this.name }, code, opts, this.tools, false).result;
  }

  /** execute(), streaming: iterate the returned Execution for its output. */
  stream(code: string, opts: ExecuteOptions = {}): Execution {
    return new Execution(this.client, { session: this.name }, code, opts, this.tools, true);
  }

  /** A new R, all state gone; resolves to R's new pid. */
  async restart(): Promise<number> {
    const ev = await this.client.request({ op: "restart_session", session: this.name }, ["restarted"]);
    this.info = { ...this.info, pid: ev["pid"] };
    return ev["pid"];
  }

  /** Close it at once (a running execution ends; queued ones get `closed`). */
  async close(): Promise<void> {
    await this.client.request({ op: "close_session", session: this.name }, ["closed"]);
  }

  /** Write a file into the work dir (a relative name of at most 4 components of [A-Za-z0-9._-]; at most 4 MiB). */
  async putFile(name: string, data: Uint8Array | string): Promise<void> {
    await this.client.request({ op: "put_file", session: this.name, name, data: b64(data) }, ["file_put"]);
  }

  /** Read a regular file of the work dir. */
  async getFile(name: string): Promise<Uint8Array> {
    const ev = await this.client.request({ op: "get_file", session: this.name, name }, ["file"]);
    return unb64(ev["data"]);
  }

  /** The regular files of the work dir, by name. */
  async listFiles(): Promise<{ name: string; size: number }[]> {
    const ev = await this.client.request({ op: "list_files", session: this.name }, ["files"]);
    return ev["files"] ?? [];
  }
}

/** A pool of sessions: executions run concurrently up to its size. */
export class Pool {
  /** @internal */
  constructor(
    private readonly client: Client,
    readonly name: string,
    readonly info: PoolInfo,
    private readonly tools: Map<string, Tool>,
  ) {}

  /** Run code on a free member (acquireTimeout bounds the wait: `pool_busy` past it). */
  execute(code: string, opts: PoolExecuteOptions = {}): Promise<Result> {
    return new Execution(this.client, { pool: this.name }, code, opts, this.tools, false).result;
  }

  /** execute(), streaming. */
  stream(code: string, opts: PoolExecuteOptions = {}): Execution {
    return new Execution(this.client, { pool: this.name }, code, opts, this.tools, true);
  }

  async status(): Promise<PoolStatus> {
    const ev = await this.client.request({ op: "pool_status", pool: this.name }, ["pool"]);
    return ev["status"];
  }

  async close(): Promise<void> {
    await this.client.request({ op: "close_pool", pool: this.name }, ["closed"]);
  }
}
