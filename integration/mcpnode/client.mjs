// Drives `securer-runc mcp` with the official TypeScript MCP SDK: the same
// scenario as the Go tests (integration/mcp_test.go), over stdio or
// streamable HTTP, at the SDK's newest protocol version or an older one.
//
//   node client.mjs --version V stdio BINARY ARGS...
//   node client.mjs --version V http URL TOKEN
//
// Prints one JSON line {"protocolVersion": ..., "passed": [...]} and exits
// 0, or prints why and exits 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const argv = process.argv.slice(2);
if (argv[0] !== '--version' || argv.length < 4) {
  console.error('usage: client.mjs --version V stdio BINARY ARGS... | http URL TOKEN');
  process.exit(2);
}
const version = argv[1];
const kind = argv[2];

let transport;
if (kind === 'stdio') {
  transport = new StdioClientTransport({ command: argv[3], args: argv.slice(4), stderr: 'inherit' });
} else if (kind === 'http') {
  transport = new StreamableHTTPClientTransport(new URL(argv[3]), {
    requestInit: { headers: { Authorization: `Bearer ${argv[4]}` } },
  });
} else {
  console.error(`unknown transport ${kind}`);
  process.exit(2);
}

// The SDK always offers its newest version in initialize; to speak an
// older one, the initialize request is rewritten on its way out.
const send = transport.send.bind(transport);
transport.send = (msg, opts) => {
  if (msg.method === 'initialize') {
    msg = { ...msg, params: { ...msg.params, protocolVersion: version } };
  }
  return send(msg, opts);
};

// The version the server agreed to, read from its initialize result.
let negotiated = '';
let onmessage;
Object.defineProperty(transport, 'onmessage', {
  get: () => onmessage,
  set: (f) => {
    onmessage = (msg, extra) => {
      if (msg.result && typeof msg.result.protocolVersion === 'string') negotiated = msg.result.protocolVersion;
      return f(msg, extra);
    };
  },
});

const passed = [];
function check(name, ok, detail) {
  if (!ok) {
    throw new Error(`${name}: ${JSON.stringify(detail)}`);
  }
  passed.push(name);
}
const texts = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

const client = new Client({ name: 'node-test', version: '1' });
const timeout = { timeout: 120000 };
const call = (name, args) => client.callTool({ name, arguments: args }, undefined, timeout);

try {
  await client.connect(transport);

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).join(',');
  check('tools/list', names === 'close_session,new_session,reset_session,run_r', names);
  const runR = tools.find((t) => t.name === 'run_r');
  check('host tool described', runR.description.includes('add(a: numeric, b: numeric): Add two numbers'), runR.description);
  check('annotations', runR.annotations.readOnlyHint === false && runR.annotations.openWorldHint === false, runR.annotations);

  let r = await call('run_r', { code: '1+1' });
  check('1+1', !r.isError && texts(r).includes('[1] 2') && r.structuredContent.value === 2, r);

  r = await call('run_r', { code: 'plot(1:10); invisible(NULL)' });
  const imgs = r.content.filter((c) => c.type === 'image' && c.mimeType === 'image/png');
  const sig = imgs.length === 1 && Buffer.from(imgs[0].data, 'base64').subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  check('plot as PNG image', !r.isError && sig, { isError: r.isError, images: imgs.length });

  r = await call('run_r', { code: 'add(2, 3) * 10' });
  check('host tool from R', !r.isError && r.structuredContent.value === 50, r);

  r = await call('run_r', { code: 'f <- function() stop("boom"); f()' });
  check('R error as isError', r.isError === true && texts(r).includes('Error in f() : boom') && r.structuredContent.verdict === 'error', r);

  r = await call('new_session', {});
  const h = r.structuredContent.session;
  check('new_session', typeof h === 'string' && h.startsWith('rs_'), r);
  await call('run_r', { code: 'x <- 41', session: h });
  r = await call('run_r', { code: 'x + 1', session: h });
  check('session keeps state', !r.isError && r.structuredContent.value === 42, r);
  r = await call('reset_session', { session: h });
  check('reset_session', !r.isError, r);
  r = await call('run_r', { code: 'exists("x")', session: h });
  check('reset drops state', !r.isError && r.structuredContent.value === false, r);
  r = await call('close_session', { session: h });
  check('close_session', !r.isError, r);

  r = await call('run_r', { code: 'cat(sprintf("line %05d\\n", 1:3000), sep = "")' });
  const link = r.content.find((c) => c.type === 'resource_link');
  check('large output as resource link', !r.isError && link && texts(r).length < 4096 + 200, { isError: r.isError, link, bytes: texts(r).length });
  const rr = await client.readResource({ uri: link.uri });
  let want = '';
  for (let i = 1; i <= 3000; i++) want += `line ${String(i).padStart(5, '0')}\n`;
  check('resources/read gives the whole', rr.contents.length === 1 && rr.contents[0].text === want, { bytes: rr.contents[0]?.text?.length });

  console.log(JSON.stringify({ protocolVersion: negotiated, passed }));
  await client.close();
  process.exit(0);
} catch (e) {
  console.error(`FAIL after ${JSON.stringify(passed)}: ${e.stack ?? e}`);
  try {
    await client.close();
  } catch {}
  process.exit(1);
}
