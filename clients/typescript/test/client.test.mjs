// The client against a real daemon (serve --listen unix:, as root) and
// real containers: values, sessions, pools, tools, streaming,
// cancellation, errors, files, one-shots.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { startDaemon } from "./daemon.mjs";
import {
  Client,
  tool,
  R,
  decode,
  DataFrame,
  SecurerError,
  ToolCancelledError,
  SERVER_ERROR_CODES,
  printedOutput,
} from "../dist/src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
let daemon;
let client;

before(async () => {
  daemon = await startDaemon(["--timeout", "20s"]);
  client = await Client.connect(daemon.sock);
});

after(async () => {
  await client?.close();
  await daemon?.stop();
});

const sleep = (ms, signal) =>
  new Promise((res) => {
    const t = setTimeout(res, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      res();
    });
  });

async function rejectsWith(p, code) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof SecurerError, `want a SecurerError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("connects by SECURER_SOCKET and by address; checks the hello", async () => {
  const old = process.env.SECURER_SOCKET;
  process.env.SECURER_SOCKET = daemon.sock;
  try {
    const c = await Client.connect();
    assert.equal(c.hello.protocol, 1);
    assert.equal(c.hello.sandboxed, true);
    await c.ping();
    await c.close();
  } finally {
    if (old === undefined) delete process.env.SECURER_SOCKET;
    else process.env.SECURER_SOCKET = old;
  }
  const c2 = await Client.open(`unix:${daemon.sock}`);
  await c2.ping();
  await c2.close();
  await rejectsWith(Client.connect(daemon.sock + ".missing"), "disconnected");
});

test("values from R decode faithfully", async () => {
  const s = await client.createSession();
  try {
    const r = await s.execute(`list(
      null = NULL, na = NA, int = 1:3, dbl = c(1.5, NA, NaN, Inf), one = 2L,
      named = c(a = 1, b = 2), chr = c("x", NA),
      fac = factor(c("lo", "hi", NA), levels = c("lo", "hi")),
      date = as.Date(c("2024-01-02", NA)), time = as.POSIXct("2024-01-02 03:04:05", tz = "UTC"),
      df = data.frame(n = 1:2, s = c("u", NA), f = factor(c("p", "q")), stringsAsFactors = FALSE),
      m = matrix(1:6, 2), cx = 3+2i, raw = as.raw(c(0, 255)), nested = list(list(1)), fn = quote(f(x)))`);
    assert.equal(r.verdict, "ok", r.error?.message);
    const v = r.value;
    assert.equal(v.null, null);
    assert.equal(v.na, null);
    assert.deepEqual(v.int, [1, 2, 3]);
    assert.deepEqual(v.dbl, [1.5, null, NaN, Infinity]);
    assert.equal(v.one, 2);
    assert.deepEqual({ ...v.named }, { a: 1, b: 2 });
    assert.deepEqual(v.chr, ["x", null]);
    assert.deepEqual(v.fac, ["lo", "hi", null]);
    assert.deepEqual(v.date, [new Date("2024-01-02T00:00:00Z"), null]);
    assert.deepEqual(v.time, new Date("2024-01-02T03:04:05Z"));
    assert.ok(v.df instanceof DataFrame);
    assert.deepEqual(v.df.rows(), [
      { n: 1, s: "u", f: "p" },
      { n: 2, s: null, f: "q" },
    ]);
    assert.deepEqual(v.m, [
      [1, 3, 5],
      [2, 4, 6],
    ]);
    assert.deepEqual(v.cx, { re: 3, im: 2 });
    assert.deepEqual(v.raw, new Uint8Array([0, 255]));
    assert.deepEqual(v.nested, [[1]]);
    assert.equal(String(v.fn), "f(x)");
    // Integers vs doubles: the typed form says which; bigint decoding keeps it.
    const typed = r.typed.value;
    assert.equal(typed[2].type, "integer");
    assert.equal(typed[4].type, "integer");
    assert.deepEqual(decode(typed[2], { integers: "bigint" }), [1n, 2n, 3n]);
    assert.deepEqual(decode(typed[3], { integers: "bigint" }), [1.5, null, NaN, Infinity]);
    // NULL is {} in the server's plain JSON, null here.
    assert.deepEqual(r.valuePlain.null, {});
  } finally {
    await s.close();
  }
});

test("tools answered by TypeScript functions: sync, async, errors, exact values", async () => {
  const seen = [];
  const tools = [
    tool({ name: "add", description: "Add two numbers", args: { a: "numeric", b: "numeric" }, handler: ({ a, b }) => a + b }),
    tool({
      name: "later",
      args: { x: "character" },
      handler: async ({ x }, ctx) => {
        seen.push(ctx.tool, ctx.call, ctx.plain.x);
        await sleep(50);
        return x.toUpperCase();
      },
    }),
    tool({
      name: "fail",
      args: {},
      handler: () => {
        throw new Error("no such city");
      },
    }),
    tool({ name: "echo", args: { x: "" }, integers: "bigint", handler: ({ x }) => x }),
    tool({ name: "weather", args: {}, handler: () => R.json({ temp: 72, sky: ["clear"] }) }),
    tool({ name: "day", args: {}, handler: () => R.date(new Date("2024-01-02T00:00:00Z")) }),
    tool({ name: "frame", args: { d: "data.frame" }, handler: ({ d }) => d.nrow * 10 + d.names.length }),
    tool({ name: "bad", args: {}, handler: () => "a\u0000b" }),
  ];
  const s = await client.createSession({ tools });
  try {
    let r = await s.execute("add(2, 3)");
    assert.equal(r.value, 5);
    r = await s.execute('later("abc")');
    assert.equal(r.value, "ABC");
    assert.deepEqual(seen.slice(0, 1), ["later"]);
    assert.equal(seen[2], "abc");
    r = await s.execute('tryCatch(fail(), error = function(e) conditionMessage(e))');
    assert.equal(r.value, "no such city");
    r = await s.execute(`all(
      identical(echo(1:3), 1:3), identical(echo(c(1.5, NA, Inf)), c(1.5, NA, Inf)),
      identical(echo(c("a", NA)), c("a", NA)), identical(echo(c(TRUE, NA)), c(TRUE, NA)),
      identical(echo(list(a = 1, b = "x")), list(a = 1, b = "x")), is.null(echo(NULL)),
      identical(echo(as.raw(1:3)), as.raw(1:3)),
      identical(echo(data.frame(a = 1:2, b = c("x", NA))), data.frame(a = 1:2, b = c("x", NA))))`);
    assert.equal(r.verdict, "ok", r.error?.message);
    assert.equal(r.value, true);
    r = await s.execute("w <- weather(); c(is.integer(w$temp), w$temp == 72L, w$sky == 'clear')");
    assert.deepEqual(r.value, [true, true, true]);
    r = await s.execute('identical(day(), as.Date("2024-01-02"))');
    assert.equal(r.value, true);
    r = await s.execute("frame(data.frame(a = 1:3, b = 4:6))");
    assert.equal(r.value, 32);
    r = await s.execute('tryCatch(bad(), error = function(e) conditionMessage(e))');
    assert.match(r.value, /NUL/);
  } finally {
    await s.close();
  }
});

test("sessions keep state; restart loses it; many requests in flight", async () => {
  const a = await client.createSession();
  const b = await client.createSession();
  try {
    assert.equal((await a.execute("x <- 41; x + 1")).value, 42);
    assert.equal((await a.execute("x")).value, 41);
    const pid = a.info.pid;
    const newPid = await a.restart();
    assert.equal(typeof newPid, "number");
    assert.equal(a.info.pid, newPid);
    assert.equal(pid > 0, true);
    const r = await a.execute('exists("x")');
    assert.equal(r.value, false);
    // Sent first, ends last: the events are sorted by id.
    const order = [];
    const slow = a.execute("Sys.sleep(1); 'slow'").then((r) => order.push(r.value));
    const fast = b.execute("'fast'").then((r) => order.push(r.value));
    await Promise.all([slow, fast]);
    assert.deepEqual(order, ["fast", "slow"]);
    // Queued on one session: run in arrival order.
    const rs = await Promise.all([1, 2, 3].map((i) => a.execute(`y <- if (exists("y")) c(y, ${i}) else ${i}; y`)));
    assert.deepEqual(rs[2].value, [1, 2, 3]);
  } finally {
    await a.close();
    await b.close();
  }
  await rejectsWith(a.execute("1"), "not_found");
});

test("more requests than the server takes at once wait in the client, in order", async () => {
  const s = await client.createSession();
  try {
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => s.execute(`Sys.sleep(0.01); ${i}`)));
    assert.deepEqual(
      rs.map((r) => r.value),
      Array.from({ length: 40 }, (_, i) => i),
    );
  } finally {
    await s.close();
  }
  // Without the client's queue the server refuses the 33rd with limit.
  const c = await Client.connect(daemon.sock, { maxInFlight: 100 });
  try {
    const s2 = await c.createSession();
    const rs = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => s2.execute(`Sys.sleep(0.01); ${i}`)));
    const limited = rs.filter((r) => r.status === "rejected" && r.reason.code === "limit");
    assert.ok(limited.length > 0, "the server took 40 requests at once");
    assert.ok(limited[0].reason.retryAfter > 0);
  } finally {
    await c.close();
  }
});

test("pools: concurrent fresh executions, status, acquireTimeout", async () => {
  const p = await client.createPool(2, { options: { timeout: 10 } });
  try {
    assert.equal(p.info.status.total, 2);
    const rs = await Promise.all([1, 2, 3, 4].map((i) => p.execute(`stopifnot(!exists("z")); z <- ${i}; z * 2`)));
    assert.deepEqual(
      rs.map((r) => r.value),
      [2, 4, 6, 8],
    );
    const busy = [p.execute("Sys.sleep(3); 1"), p.execute("Sys.sleep(3); 2")];
    await sleep(500);
    await rejectsWith(p.execute("3", { acquireTimeout: 0 }), "pool_busy");
    const st = await p.status();
    assert.equal(st.total, 2);
    assert.equal(st.busy + st.starting, 2);
    await Promise.all(busy);
  } finally {
    await p.close();
  }
});

test("streaming: 10,000 lines in order, by callback and by iterator", async () => {
  const s = await client.createSession();
  try {
    const code = 'cat(paste0(1:10000, "\\n"), sep = "")';
    let out = "";
    const t0 = performance.now();
    const r = await s.execute(code, { onStdout: (t) => (out += t) });
    const ms = performance.now() - t0;
    assert.equal(r.verdict, "ok");
    const lines = out.split("\n");
    assert.equal(lines.pop(), "");
    assert.equal(lines.length, 10000);
    lines.forEach((l, i) => assert.equal(l, String(i + 1)));
    console.log(`# 10,000 lines through the TypeScript client: ${ms.toFixed(1)} ms`);
    const ex = s.stream(code + '; message("done")');
    let streamed = "";
    let err = "";
    for await (const ev of ex) {
      if (ev.stream === "stdout") streamed += ev.text;
      else err += ev.text;
    }
    assert.equal(streamed, out);
    assert.equal(err, "done\n");
    assert.equal((await ex.result).verdict, "ok");
  } finally {
    await s.close();
  }
});

test("cancellation: a 5 s async tool under a 2 s timeout ends at ~2 s, its signal aborted", async () => {
  let signal;
  let finished = false;
  const slow = tool({
    name: "slow",
    args: {},
    handler: async (_args, ctx) => {
      signal = ctx.signal;
      await new Promise((res) => setTimeout(res, 5000)); // ignores the signal on purpose
      finished = true;
      return 1;
    },
  });
  const s = await client.createSession({ tools: [slow] });
  try {
    const t0 = performance.now();
    const r = await s.execute("slow()", { timeout: 2 });
    const secs = (performance.now() - t0) / 1000;
    console.log(`# 5 s tool under a 2 s timeout: result after ${secs.toFixed(2)} s`);
    assert.equal(r.verdict, "timeout");
    assert.ok(secs < 4, `took ${secs} s`);
    assert.ok(signal?.aborted, "the tool's AbortSignal was not aborted");
    assert.ok(signal.reason instanceof ToolCancelledError);
    // The server said why (tool_cancelled): the execution timed out.
    assert.equal(signal.reason.reason, "timeout");
    assert.equal(finished, false);
    // The late answer is dropped; the session goes on.
    await sleep(3500);
    assert.equal(finished, true);
    assert.equal((await s.execute("1 + 1")).value, 2);
  } finally {
    await s.close();
  }
});

test("cancel by AbortSignal: running code and a running tool", async () => {
  let toolSignal;
  const wait = tool({
    name: "wait",
    args: {},
    handler: async (_a, ctx) => {
      toolSignal = ctx.signal;
      await sleep(10000, ctx.signal);
      return 0;
    },
  });
  const s = await client.createSession({ tools: [wait] });
  try {
    let ac = new AbortController();
    setTimeout(() => ac.abort(), 500);
    let t0 = performance.now();
    let r = await s.execute("Sys.sleep(10)", { signal: ac.signal });
    assert.equal(r.verdict, "canceled");
    assert.ok(performance.now() - t0 < 5000);
    ac = new AbortController();
    setTimeout(() => ac.abort(), 500);
    t0 = performance.now();
    r = await s.execute("wait()", { signal: ac.signal });
    assert.equal(r.verdict, "canceled");
    assert.ok(toolSignal.aborted);
    assert.equal(toolSignal.reason.reason, "canceled");
    assert.ok(performance.now() - t0 < 5000);
    // Aborted before it was sent: canceled, nothing ran.
    r = await s.execute("Sys.sleep(10)", { signal: AbortSignal.abort() });
    assert.equal(r.verdict, "canceled");
    assert.equal((await s.execute("2")).value, 2);
  } finally {
    await s.close();
  }
  // Aborted while waiting in the client for a slot.
  const c = await Client.connect(daemon.sock, { maxInFlight: 1 });
  try {
    const s1 = await c.createSession();
    const ac = new AbortController();
    const first = s1.execute("Sys.sleep(1); 1");
    const second = s1.execute("'ran'", { signal: ac.signal });
    ac.abort();
    assert.equal((await first).value, 1);
    assert.equal((await second).verdict, "canceled");
  } finally {
    await c.close();
  }
});

test("errors: every code of PROTOCOL.md is known; server refusals are typed", async () => {
  const doc = readFileSync(resolve(here, "../../../PROTOCOL.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Errors"), doc.indexOf("## Limits that protect"));
  const codes = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
  assert.ok(codes.length >= 17);
  assert.deepEqual([...codes].sort(), [...SERVER_ERROR_CODES].sort());

  await rejectsWith(client.createSession({ tools: [tool({ name: "1bad", handler: () => 0 })] }), "invalid_config");
  await rejectsWith(client.createSession({ options: { memoryBytes: 0 } }), "invalid_config");
  // A pool over the per-client quota is limit, over the server's sessions bad_request.
  await rejectsWith(client.createPool(17), "limit");
  await rejectsWith(client.createPool(65), "bad_request");
  const s = await client.createSession({ options: { maxCodeBytes: 16 } });
  try {
    await rejectsWith(s.execute("x <- 'this is longer than sixteen bytes'"), "rejected");
    await rejectsWith(s.execute("1", { plots: { format: "gif" } }), "bad_request");
    // Iterating a refused execution throws its error too.
    await rejectsWith(
      (async () => {
        for await (const _ of s.stream("1", { plots: { format: "gif" } }));
      })(),
      "bad_request",
    );
    await rejectsWith(s.getFile("../etc/passwd"), "file_refused");
    const r = await s.execute('stop("bad")');
    assert.equal(r.verdict, "error");
    assert.equal(r.error.message, "bad");
  } finally {
    await s.close();
  }
  await rejectsWith(s.close(), "not_found");
});

test("files: put, get, list, inputs and outputs", async () => {
  const s = await client.createSession();
  try {
    await s.putFile("d/a.csv", "x,y\n1,2\n");
    await s.putFile("b.bin", new Uint8Array([0, 1, 255]));
    assert.deepEqual(await s.listFiles(), [
      { name: "b.bin", size: 3 },
      { name: "d/a.csv", size: 8 },
    ]);
    assert.deepEqual(await s.getFile("b.bin"), new Uint8Array([0, 1, 255]));
    const r = await s.execute('d <- read.csv("in.csv"); writeLines(as.character(sum(d$x)), "out.txt"); nrow(read.csv("d/a.csv"))', {
      inputs: { "in.csv": "x\n1\n2\n" },
      outputs: true,
    });
    assert.equal(r.value, 1);
    assert.equal(Buffer.from(r.files.get("out.txt")).toString(), "3\n");
  } finally {
    await s.close();
  }
});

test("plots come back as images", async () => {
  const s = await client.createSession();
  try {
    const r = await s.execute("plot(1:10); invisible(NULL)", { plots: { format: "png", width: 400, height: 300 } });
    assert.equal(r.verdict, "ok");
    assert.equal(r.displays.length, 1);
    assert.equal(r.displays[0].mime, "image/png");
    assert.deepEqual([...r.displays[0].data.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    assert.equal(r.displays[0].width, 400);
    const p = await s.execute("print(1:3); 42");
    assert.equal(printedOutput(p), "[1] 1 2 3\n");
  } finally {
    await s.close();
  }
});

test("the example runs against the daemon", async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [resolve(here, "../dist/examples/weather.js")], {
    env: { ...process.env, SECURER_SOCKET: daemon.sock },
  });
  assert.equal(stdout, 'Boston: 12.0 to 21.5\nok {"mean_rain":0.25,"bad":"no forecast for Atlantis","biggest":"Boston"}\n');
});
