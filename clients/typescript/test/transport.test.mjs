// The other transports and the connection's end: TCP with a token, a
// spawned `serve --stdio` (and the sandbox check of the hello), a
// draining server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";

import { startDaemon, bin } from "./daemon.mjs";
import { Client, SecurerError } from "../dist/src/index.js";

async function rejectsWith(p, code) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof SecurerError, `want a SecurerError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

test("TCP with a token; a draining server is reported as such", async () => {
  const port = await freePort();
  const token = randomBytes(32).toString("hex");
  // The token file lives next to the daemon's state, made before it starts.
  const tokenDir = mkdtempSync(join(tmpdir(), "securer-ts-token-"));
  const tokenFile = join(tokenDir, "token");
  writeFileSync(tokenFile, token + "\n");
  chmodSync(tokenFile, 0o600);
  const d = await startDaemon(["--token-file", tokenFile, "--term-grace", "1s"], { listen: `tcp:127.0.0.1:${port}` });
  try {
    await rejectsWith(Client.connectTcp("127.0.0.1", port, { token: "" }), "unauthorized");
    await rejectsWith(Client.connectTcp("127.0.0.1", port, { token: "x".repeat(64) }), "unauthorized");
    const c = await Client.open(`tcp:127.0.0.1:${port}`, { token });
    assert.equal(c.hello.auth_required, true);
    const s = await c.createSession();
    assert.equal((await s.execute("6 * 7")).value, 42);

    const running = s.execute("Sys.sleep(30); 1");
    await new Promise((r) => setTimeout(r, 300));
    d.proc.kill("SIGTERM");
    for (let i = 0; i < 200 && !d.log().includes("shutting down"); i++) await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(c.createSession(), (e) => {
      assert.ok(e instanceof SecurerError);
      assert.equal(e.code, "draining", e.message);
      assert.equal(e.draining, true);
      return true;
    });
    // The running execution is cancelled after the grace, then the connection closes.
    const r = await running.catch((e) => e);
    if (r instanceof SecurerError) assert.equal(r.code, "draining");
    else assert.equal(r.verdict, "canceled");
    const why = await c.closed;
    assert.ok(why instanceof SecurerError);
    assert.equal((await d.exited).code, 0);
  } finally {
    await d.stop();
    rmSync(tokenDir, { recursive: true, force: true });
  }
});

test("spawned serve --stdio; an unsandboxed server is refused unless allowed", async () => {
  if (process.getuid?.() !== 0) throw new Error("run as root");
  const dir = mkdtempSync(join(tmpdir(), "securer-ts-stdio-"));
  const state = join(dir, "state");
  const cgroup = `/securer-tstest-stdio-${process.pid}`;
  try {
    const c = await Client.spawn({ command: [bin, "serve", "--stdio", "--state", state, "--cgroup-parent", cgroup] });
    try {
      assert.equal(c.hello.sandboxed, true);
      const s = await c.createSession();
      assert.equal((await s.execute("R.version$major")).value, "4");
    } finally {
      await c.close(); // waits for the server's exit
    }
    assert.deepEqual(readdirSync(join(state, "sessions")), []);
    assert.deepEqual(readdirSync(join(state, "containers")), []);
  } finally {
    execFileSync(bin, ["reap", "--state", state, "--cgroup-parent", cgroup], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  }

  const unsafe = [bin, "serve", "--stdio", "--unsafe-no-sandbox", "--state", join(dir, "unsafe")];
  await rejectsWith(Client.spawn({ command: unsafe, stderr: "ignore" }), "unsandboxed");
  const u = await Client.spawn({ command: unsafe, stderr: "ignore", allowUnsandboxed: true });
  try {
    assert.equal(u.hello.sandboxed, false);
    await rejectsWith(u.createPool(1), "needs_sandbox");
  } finally {
    await u.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
