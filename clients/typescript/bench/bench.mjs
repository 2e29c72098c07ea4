// The TypeScript client's speed, side by side with bare `Rscript -e 1+1`
// in the same run (medians): a new node process running 1+1 as a one-shot
// through a daemon with a warm box (the process's own start-up included),
// the one-shot op and a session execute in a live connection, and 10,000
// lines streamed. As root: make ts-bench (BENCH_RUNS=N).
import { execFileSync } from "node:child_process";
import { writeFileSync, rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { startDaemon } from "../test/daemon.mjs";
import { Client } from "../dist/src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const runs = Number(process.env.BENCH_RUNS || 21);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(1)} ms`;

async function timeAsync(n, f) {
  const xs = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f();
    xs.push(performance.now() - t);
  }
  return median(xs);
}

const dir = mkdtempSync(join(tmpdir(), "securer-ts-bench-"));
const script = join(dir, "oneshot.mjs");
writeFileSync(
  script,
  `import { Client } from ${JSON.stringify(resolve(here, "../dist/src/index.js"))};
const c = await Client.connect(process.argv[2]);
const r = await c.run("1 + 1");
if (r.value !== 2) process.exit(1);
await c.close();
`,
);

const daemon = await startDaemon(["--warm", "1"]);
try {
  const client = await Client.connect(daemon.sock);
  // Until the warm box is ready, one-shots start boxes of their own.
  for (let i = 0; i < 100 && !(await client.run("1")).warm; i++) await new Promise((r) => setTimeout(r, 100));

  const rscript = [];
  const nodeBare = [];
  const proc = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    execFileSync("Rscript", ["-e", "1+1"], { stdio: "ignore" });
    rscript.push(performance.now() - t);
    t = performance.now();
    execFileSync(process.execPath, ["-e", "0"], { stdio: "ignore" });
    nodeBare.push(performance.now() - t);
    t = performance.now();
    execFileSync(process.execPath, [script, daemon.sock], { stdio: "inherit" });
    proc.push(performance.now() - t);
  }
  const base = median(rscript);
  let warm = 0;
  const oneShot = await timeAsync(runs, async () => {
    if ((await client.run("1 + 1")).warm) warm++;
  });
  const s = await client.createSession();
  const exec = await timeAsync(runs, () => s.execute("1 + 1"));
  const lines = await timeAsync(5, () => s.execute('cat(paste0(1:10000, "\\n"), sep = "")', { onStdout: () => {} }));
  const ping = await timeAsync(runs, () => client.ping());
  await client.close();

  console.log(`bare Rscript -e 1+1 (baseline)                     ${ms(base)}`);
  console.log(`node -e 0 (node's own start)                        ${ms(median(nodeBare))}  ${(median(nodeBare) / base).toFixed(2)}x`);
  console.log(`new node process: connect, run("1 + 1"), close     ${ms(median(proc))}  ${(median(proc) / base).toFixed(2)}x`);
  console.log(`client.run("1 + 1") in a live connection           ${ms(oneShot)}  (${warm}/${runs} warm)`);
  console.log(`session.execute("1 + 1")                           ${ms(exec)}`);
  console.log(`10,000 cat() lines to the client                   ${ms(lines)}`);
  console.log(`ping                                               ${ms(ping)}`);
} finally {
  await daemon.stop();
  rmSync(dir, { recursive: true, force: true });
}
