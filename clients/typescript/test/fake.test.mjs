// Protocol edges a real daemon does not produce on demand, against a
// scripted server on a Unix socket: tool_cancelled, a refused tool answer,
// another protocol version, errors without an id, a line that is not JSON.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Client, tool, SecurerError, ToolCancelledError } from "../dist/src/index.js";

const HELLO = { type: "hello", protocol: 1, server: "fake", arg_types: [], sandboxed: true, auth_required: false };

// fake serves one connection with script(conn), where conn.send(obj) writes
// a line and conn.next() resolves to the client's next message.
async function fake(script) {
  const dir = mkdtempSync(join(tmpdir(), "securer-ts-fake-"));
  const path = join(dir, "sock");
  const got = [];
  let done;
  const finished = new Promise((res) => (done = res));
  const srv = createServer((sock) => {
    let buf = "";
    const queue = [];
    let waiting;
    sock.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        got.push(msg);
        if (waiting) {
          const w = waiting;
          waiting = undefined;
          w(msg);
        } else queue.push(msg);
      }
    });
    sock.on("error", () => {});
    const conn = {
      send: (o) => sock.write((typeof o === "string" ? o : JSON.stringify(o)) + "\n"),
      next: () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((res) => (waiting = res))),
      end: () => sock.end(),
    };
    Promise.resolve(script(conn)).then(done, done);
  });
  await new Promise((res) => srv.listen(path, res));
  return {
    path,
    got,
    finished,
    close: () => {
      srv.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("tool_cancelled aborts the tool's signal with its reason and drops its answer", async () => {
  const f = await fake(async (c) => {
    c.send(HELLO);
    const create = await c.next();
    c.send({ type: "session", id: create.id, session: "s1", sandboxed: true, pid: 2, sandbox: "container", limits: {} });
    const ex = await c.next();
    c.send({ type: "tool_call", id: ex.id, call: `${ex.id}.1`, tool: "slow", args: {}, args_plain: {} });
    await sleep(100);
    c.send({ type: "tool_cancelled", id: ex.id, call: `${ex.id}.1`, reason: "timeout" });
    c.send({ type: "result", id: ex.id, result: { verdict: "timeout", value: { type: "NULL" } }, value_plain: null });
    await sleep(600); // the tool finishes meanwhile: its answer must not come
    c.end();
  });
  let signal;
  let finished = false;
  const slow = tool({
    name: "slow",
    handler: async (_a, ctx) => {
      signal = ctx.signal;
      await sleep(300);
      finished = true;
      return 1;
    },
  });
  const c = await Client.connect(f.path);
  try {
    const s = await c.createSession({ tools: [slow] });
    const r = await s.execute("slow()");
    assert.equal(r.verdict, "timeout");
    assert.ok(signal.aborted);
    assert.ok(signal.reason instanceof ToolCancelledError);
    assert.equal(signal.reason.reason, "timeout");
    await f.finished;
    assert.equal(finished, true);
    assert.deepEqual(
      f.got.filter((m) => m.op === "tool_result"),
      [],
    );
  } finally {
    await c.close();
    f.close();
  }
});

test("a refused tool answer becomes an error answer; not_found is ignored", async () => {
  const f = await fake(async (c) => {
    c.send(HELLO);
    const ex = await c.next();
    c.send({ type: "tool_call", id: ex.id, call: "c1", tool: "t", args: { x: { type: "double", value: [2] } }, args_plain: { x: 2 } });
    const ans = await c.next();
    c.send({ type: "error", id: ans.id, error: { code: "bad_request", message: "answer too large" } });
    const again = await c.next();
    c.send({ type: "error", id: again.id, error: { code: "not_found", message: "no such call" } });
    c.send({ type: "result", id: ex.id, result: { verdict: "ok", value: { type: "double", value: [1] } }, value_plain: 1 });
  });
  const c = await Client.connect(f.path);
  try {
    const t = tool({ name: "t", args: { x: "numeric" }, handler: ({ x }) => x * 2 });
    const r = await c.run("t(2)", { tools: [t] });
    assert.equal(r.value, 1);
    const answers = f.got.filter((m) => m.op === "tool_result");
    assert.equal(answers.length, 2);
    assert.deepEqual(answers[0].typed, { type: "double", value: [4] });
    assert.equal(answers[0].call, "c1");
    assert.match(answers[1].error, /answer too large/);
  } finally {
    await c.close();
    f.close();
  }
});

test("another protocol version, a non-JSON line, errors without an id", async () => {
  let f = await fake((c) => c.send({ ...HELLO, protocol: 2 }));
  await assert.rejects(Client.connect(f.path), (e) => e instanceof SecurerError && e.code === "protocol");
  f.close();

  f = await fake((c) => {
    c.send({ type: "error", error: { code: "draining", message: "the server is shutting down" } });
    c.end();
  });
  await assert.rejects(Client.connect(f.path), (e) => e instanceof SecurerError && e.code === "draining" && e.draining);
  f.close();

  f = await fake(async (c) => {
    c.send(HELLO);
    await c.next();
    c.send({ type: "error", error: { code: "idle", message: "idle connection" } });
    c.end();
  });
  let c = await Client.connect(f.path);
  await assert.rejects(c.ping(), (e) => e instanceof SecurerError && e.code === "idle");
  assert.equal((await c.closed).code, "idle");
  f.close();

  f = await fake(async (c) => {
    c.send(HELLO);
    await c.next();
    c.send("this is not json");
  });
  c = await Client.connect(f.path);
  await assert.rejects(c.ping(), (e) => e instanceof SecurerError && e.code === "protocol");
  f.close();
});

test("an unsandboxed hello is refused unless allowed; a token is sent before the hello", async () => {
  let f = await fake((c) => c.send({ ...HELLO, sandboxed: false }));
  await assert.rejects(Client.connect(f.path), (e) => e instanceof SecurerError && e.code === "unsandboxed");
  f.close();

  f = await fake(async (c) => {
    const auth = await c.next(); // before the hello
    assert.equal(auth.op, "auth");
    assert.equal(auth.token, "t0k");
    c.send({ ...HELLO, auth_required: true });
    c.send({ type: "ok", id: auth.id });
    const ping = await c.next();
    c.send({ type: "pong", id: ping.id });
  });
  const c = await Client.connect(f.path, { token: "t0k" });
  await c.ping();
  await c.close();
  f.close();
});
