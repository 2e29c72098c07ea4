// A real `securer-runc serve --listen unix:` for the tests, as root, with
// its own state dir and cgroup parent; stop() checks that nothing of it is
// left (sessions, containers), reaps and removes the state.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export const bin = process.env.SECURER_RUNC || resolve(here, "../../../bin/securer-runc");

let seq = 0;

export async function startDaemon(extraArgs = [], { listen } = {}) {
  if (process.getuid?.() !== 0) throw new Error("these tests start containers: run them as root (make ts-test)");
  if (!existsSync(bin)) throw new Error(`no securer-runc binary at ${bin} (make build, or set SECURER_RUNC)`);
  const dir = mkdtempSync(join(tmpdir(), "securer-ts-"));
  const state = join(dir, "state");
  const sock = join(dir, "sock");
  const cgroup = `/securer-tstest-${process.pid}-${seq++}`;
  const args = ["serve", "--listen", listen ?? `unix:${sock}`, "--state", state, "--cgroup-parent", cgroup, "--log-level", "warn", ...extraArgs];
  const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d) => (log += d));
  const exited = new Promise((res) => proc.once("exit", (code, sig) => res({ code, sig })));
  const ready = Date.now() + 30000;
  while (!log.includes("serving on")) {
    let why;
    if (proc.exitCode !== null) why = `serve exited ${proc.exitCode}: ${log}`;
    else if (Date.now() > ready) why = `serve did not start in 30 s: ${log}`;
    if (why) {
      proc.kill("SIGKILL");
      await exited;
      execFileSync(bin, ["reap", "--state", state, "--cgroup-parent", cgroup], { stdio: "ignore" });
      rmSync(dir, { recursive: true, force: true });
      throw new Error(why);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped = false;
  return {
    sock,
    dir,
    proc,
    log: () => log,
    exited,
    /** SIGTERM (drain), wait for exit 0, check nothing is left, reap, remove. */
    async stop() {
      if (stopped) return;
      stopped = true;
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 60000);
      const { code } = await exited;
      clearTimeout(t);
      const left = [];
      for (const d of ["sessions", "containers"]) {
        const p = join(state, d);
        if (existsSync(p)) left.push(...readdirSync(p).map((n) => `${d}/${n}`));
      }
      execFileSync(bin, ["reap", "--state", state, "--cgroup-parent", cgroup], { stdio: "ignore" });
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`serve exited ${code}: ${log}`);
      if (left.length) throw new Error(`serve left sessions behind: ${left.join(", ")}`);
    },
  };
}
