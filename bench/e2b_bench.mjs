// E2B SDK vs corral's native API: the latency of "new sandbox, run `echo hi`"
// through the official `e2b` npm SDK against corrald's E2B front end, and
// through corral's own HTTP API with plain fetch, on one corrald.
//
//   node bench/e2b_bench.mjs [--iterations N] [--warmup N] [--no-readme]
//
// Starts corrald like the E2B tests do (tests/e2b/harness.mjs; CORRAL_BUILD
// selects the build, default build/), makes a tenant with an E2B-format key,
// then runs N rounds (default 30) of, alternately:
//   (a) E2B SDK: Sandbox.create() + sandbox.commands.run('echo hi')
//   (b) native:  POST /v1/sandboxes, then POST /v1/sandboxes/{id}/commands
//                {"cmd": ["echo", "hi"]}, with the same key as a Bearer token
// Each sample is timed from before the create to the command's result; the
// sandbox is killed afterwards, outside the timing.  Prints p50/p99 of both
// and their ratio, and replaces the "E2B SDK vs native API" section of
// bench/README.md (unless --no-readme).  Needs root, like corrald.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Daemon } from '../tests/e2b/harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const START = '<!-- e2b-bench:start -->';
const END = '<!-- e2b-bench:end -->';

// The SDK is installed for the tests (scripts/setup.sh runs npm ci there).
const require = createRequire(join(HERE, '..', 'tests', 'e2b', 'package.json'));
let Sandbox;
try {
  ({ Sandbox } = require('e2b'));
} catch (e) {
  console.error(`e2b_bench: the e2b SDK is not installed (cd tests/e2b && npm ci): ${e.message}`);
  process.exit(2);
}

function pct(values, q) {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.round((q / 100) * (v.length - 1)))];
}

async function sdkSample() {
  const t0 = performance.now();
  const sbx = await Sandbox.create();
  const r = await sbx.commands.run('echo hi');
  const ms = performance.now() - t0;
  await sbx.kill();
  if (r.stdout !== 'hi\n') throw new Error(`SDK: unexpected output ${JSON.stringify(r.stdout)}`);
  return ms;
}

async function nativeSample(daemon) {
  const post = async (path, body) => {
    const res = await fetch(daemon.url + path, {
      method: 'POST',
      headers: { Authorization: `Bearer ${daemon.key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`native: POST ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  };
  const t0 = performance.now();
  const { id } = await post('/v1/sandboxes', {});
  const r = await post(`/v1/sandboxes/${id}/commands`, { cmd: ['echo', 'hi'] });
  const ms = performance.now() - t0;
  const del = await fetch(`${daemon.url}/v1/sandboxes/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${daemon.key}` } });
  await del.arrayBuffer();
  if (r.stdout !== 'hi\n') throw new Error(`native: unexpected output ${JSON.stringify(r)}`);
  return ms;
}

function report(rows, what) {
  const table = ['| measure | result | target |', '|---|---|---|', ...rows.map(([a, b, c]) => `| ${a} | ${b} | ${c} |`)];
  const day = new Date().toISOString().slice(0, 10);
  const head = `${day}, ${hostname()}, kernel ${release()}, ${cpus().length} CPUs; ${what}`;
  return `${head}\n\n${table.join('\n')}\n`;
}

// Replace the section between the markers of bench/README.md (or add it),
// as bench/daemon_bench.py's write_readme does.
function writeReadme(title, script, text) {
  const path = join(HERE, 'README.md');
  let doc = readFileSync(path, 'utf8');
  if (doc.includes(START)) {
    const [pre, rest] = [doc.slice(0, doc.indexOf(START)), doc.slice(doc.indexOf(START) + START.length)];
    const tail = rest.includes(END) ? rest.slice(rest.indexOf(END) + END.length) : rest;
    doc = pre + START + '\n' + text + END + tail;
  } else {
    doc += `\n## ${title}\n\n\`make bench\` also runs \`bench/${script}\`.\n\n${START}\n${text}${END}\n`;
  }
  writeFileSync(path, doc);
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      iterations: { type: 'string', default: '30' },
      warmup: { type: 'string', default: '3' },
      'no-readme': { type: 'boolean', default: false },
    },
  });
  const n = Number(args.iterations);
  const warmup = Number(args.warmup);
  if (process.geteuid() !== 0) {
    console.error('e2b_bench: run as root (corrald creates namespaces and cgroups)');
    return 2;
  }
  const daemon = new Daemon();
  await daemon.start();
  const sdk = [];
  const native = [];
  try {
    daemon.useForSdk(await daemon.tenant('e2b-bench'));
    for (let i = 0; i < warmup; i++) {
      await sdkSample();
      await nativeSample(daemon);
    }
    // alternate, and swap who goes first every round, so drift hits both
    for (let i = 0; i < n; i++) {
      if (i % 2 === 0) {
        sdk.push(await sdkSample());
        native.push(await nativeSample(daemon));
      } else {
        native.push(await nativeSample(daemon));
        sdk.push(await sdkSample());
      }
    }
  } finally {
    await daemon.stop(); // kills what a failed run left, then stops corrald
  }
  const f = (v) => v.toFixed(2);
  const rows = [
    ["E2B SDK: `Sandbox.create()` + `commands.run('echo hi')` (p50 / p99)", `${f(pct(sdk, 50))} / ${f(pct(sdk, 99))} ms`, ''],
    ['native API: `POST /v1/sandboxes` + `POST /v1/sandboxes/{id}/commands` (p50 / p99)', `${f(pct(native, 50))} / ${f(pct(native, 99))} ms`, ''],
    ['E2B SDK / native (p50 / p99)', `${(pct(sdk, 50) / pct(native, 50)).toFixed(2)}x / ${(pct(sdk, 99) / pct(native, 99)).toFixed(2)}x`, ''],
  ];
  const text = report(rows, `${n} sequential samples of each, alternating, after ${warmup} warm-up rounds; ` +
    `e2b ${require('e2b/package.json').version}, node ${process.version}, corrald defaults.`);
  console.log(text);
  if (!args['no-readme']) writeReadme('E2B SDK vs native API', 'e2b_bench.mjs', text);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error('e2b_bench:', e);
    process.exit(1);
  },
);
