// corral's JavaScript code-interpreter runner: one persistent Node context
// inside a sandbox.  Same protocol as runners/python/runner.py: JSON requests
// on stdin, JSON events on stdout.  Code is evaluated by Node's own REPL
// evaluator, so top-level await, `let`/`const` and functions persist between
// requests and the value of the last expression is the result.  console.*
// and process.stdout/stderr writes come back as stdout/stderr events.
'use strict';
const fs = require('fs');
const repl = require('repl');
const util = require('util');
const { PassThrough } = require('stream');

const protoWrite = (s) => fs.writeSync(1, s);
function emit(ev) { protoWrite(JSON.stringify(ev) + '\n'); }

const state = { budget: 0, dropped: 0 };
function emitText(kind, text) {
  if (!text) return;
  if (text.length > state.budget) {
    state.dropped += text.length - Math.max(state.budget, 0);
    text = text.slice(0, Math.max(state.budget, 0));
  }
  state.budget -= text.length;
  if (text) emit({ type: kind, text });
}

// What user code writes must not reach the protocol stream directly.
process.stdout.write = (chunk) => { emitText('stdout', String(chunk)); return true; };
process.stderr.write = (chunk) => { emitText('stderr', String(chunk)); return true; };

const replOutput = new PassThrough();
const server = repl.start({ input: new PassThrough(), output: replOutput, terminal: false, prompt: '' });
server.context.console = new console.Console({ stdout: process.stdout, stderr: process.stderr });

// The REPL reports a thrown error on its output ("Uncaught Name: message"
// and the stack) instead of through the eval callback.
let pending = null;
replOutput.on('data', (chunk) => {
  const text = String(chunk);
  const m = /^Uncaught (?:([A-Za-z_$][\w$]*): )?([^\n]*)\n?([\s\S]*)$/.exec(text);
  if (!pending || !m) return;
  const done = pending;
  pending = null;
  const stack = m[3].split('\n').filter((l) => !/node:|REPLServer|ContextifyScript|runner\.js|new Promise/.test(l)).join('\n');
  done({ err: { name: m[1] || 'Error', message: m[2], stack: `${m[1] || 'Error'}: ${m[2]}\n${stack}`.trim() } });
});

let count = 0;
function run(code) {
  return new Promise((resolve) => {
    pending = resolve;
    server.eval(code, server.context, `<cell-${count}>`, (err, value) => {
      if (pending === resolve) {
        pending = null;
        resolve({ err, value });
      }
    });
  });
}

function formats(value) {
  const out = { text: util.inspect(value, { depth: 4 }) };
  if (value !== null && typeof value === 'object') {
    try { out.json = JSON.parse(JSON.stringify(value)); } catch (_) { /* not JSON */ }
  }
  return out;
}

async function handle(req) {
  count += 1;
  state.budget = Number(req.max_output) || (1 << 20);
  state.dropped = 0;
  const t0 = Date.now();
  emit({ type: 'execution_count', count });
  for (const [k, v] of Object.entries(req.env || {})) process.env[k] = String(v);
  const { err, value } = await run(String(req.code || ''));
  if (err) {
    emit({ type: 'error', name: err.name || 'Error', value: err.message || String(err), traceback: err.stack || '' });
  } else if (value !== undefined) {
    emit({ type: 'result', is_main_result: true, ...formats(value) });
  }
  if (state.dropped) {
    emit({ type: 'stderr', text: `\n[corral: output truncated, ${state.dropped} characters dropped]\n` });
  }
  emit({ type: 'end', duration_ms: Date.now() - t0 });
}

// A timeout sends SIGINT: the request ends (what it awaited is abandoned;
// a synchronous loop cannot be interrupted, and corrald restarts the
// context after a grace period).
process.on('SIGINT', () => {
  if (!pending) return;
  const done = pending;
  pending = null;
  done({ err: { name: 'KeyboardInterrupt', message: '', stack: '' } });
});

let buffered = '';
let queue = Promise.resolve();
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    let req;
    try { req = JSON.parse(line); } catch (_) { continue; }
    queue = queue.then(() => handle(req));
  }
});
process.stdin.on('end', () => queue.then(() => process.exit(0)));
emit({ type: 'ready', pid: process.pid });
