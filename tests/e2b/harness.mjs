// A real corrald for the E2B SDK tests: started on a free port with a temp
// state dir (like tests/e2e/corrald_harness.py), a tenant with an E2B-format
// key, and the environment the E2B SDKs read (E2B_API_KEY, E2B_API_URL,
// E2B_SANDBOX_URL) pointed at it.  Node's standard library only.
//
//   import { useDaemon } from './harness.mjs'
//   const daemon = useDaemon()        // before/after hooks of node:test
//
// CORRAL_BUILD selects the build directory (default build/, `make asan` uses
// build/asan).  E2B_TEST_TRACE=1 prints every HTTP exchange the SDKs make
// (method, URL, E2b-Sandbox-Port, response status) to stderr.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, openSync, closeSync, accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import diagnostics_channel from 'node:diagnostics_channel';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD = resolve(ROOT, process.env.CORRAL_BUILD || 'build');
export const CORRALD = join(BUILD, 'bin', 'corrald');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

// -- optional trace of what the SDKs send and get -------------------------------
// The SDKs use undici (their own copy and Node's built-in fetch); both publish
// on the same diagnostics channels, so subscribing here sees every exchange.
if (process.env.E2B_TEST_TRACE) {
  const header = (headers, name) => {
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    } else if (typeof headers === 'string') {
      const m = headers.match(new RegExp(`^${name}:\\s*(.*)$`, 'im'));
      if (m) return m[1].trim();
    }
    return undefined;
  };
  const what = (request) => {
    const port = header(request.headers, 'e2b-sandbox-port');
    return `${request.method} ${request.origin}${request.path}${port ? ` [port ${port}]` : ''}`;
  };
  diagnostics_channel.channel('undici:request:headers').subscribe(({ request, response }) => {
    process.stderr.write(`[e2b-trace] ${what(request)} -> ${response.statusCode}\n`);
  });
  diagnostics_channel.channel('undici:request:error').subscribe(({ request, error }) => {
    process.stderr.write(`[e2b-trace] ${what(request)} -> ${error}\n`);
  });
}

export class Daemon {
  constructor({ extraArgs = [] } = {}) {
    this.extraArgs = extraArgs;
    this.adminKey = 'ck_admin_' + randomBytes(16).toString('hex');
    this.dir = mkdtempSync(join(tmpdir(), 'corral-e2b-'));
    this.stateDir = join(this.dir, 'state');
    this.logPath = join(this.dir, 'corrald.log');
    this.proc = null;
    this.key = null; // the tenant's E2B-format key
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    accessSync(CORRALD, constants.X_OK); // "not built: run make" shows up as ENOENT here
    this.port = await freePort();
    const log = openSync(this.logPath, 'a');
    this.proc = spawn(
      CORRALD,
      ['--listen', `127.0.0.1:${this.port}`, '--state-dir', this.stateDir, '--foreground', ...this.extraArgs],
      { env: { ...process.env, CORRAL_ADMIN_KEY: this.adminKey }, stdio: ['ignore', log, log] },
    );
    closeSync(log);
    this.exited = new Promise((ok) => this.proc.once('exit', (code, signal) => ok({ code, signal })));
    let gone = null;
    this.exited.then((x) => (gone = x));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (gone) throw new Error(`corrald exited (${JSON.stringify(gone)}): ${this.readLog()}`);
      try {
        if ((await this.request('GET', '/health', { key: null })).status === 200) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error('corrald did not come up: ' + this.readLog());
      await sleep(20);
    }
    return this;
  }

  readLog() {
    try {
      return readFileSync(this.logPath, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  // One HTTP request to the daemon; key: 'admin' (default), null, or a key.
  async request(method, path, { body, key = 'admin', headers = {} } = {}) {
    const h = { ...headers };
    if (key === 'admin') key = this.adminKey;
    if (key) h.Authorization = `Bearer ${key}`;
    let data;
    if (body !== undefined) {
      data = JSON.stringify(body);
      h['Content-Type'] = 'application/json';
    }
    const res = await fetch(this.url + path, { method, headers: h, body: data, signal: AbortSignal.timeout(120_000) });
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      text,
      json() {
        return JSON.parse(text);
      },
    };
  }

  async expect(status, method, path, opts) {
    const r = await this.request(method, path, opts);
    if (r.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${r.status} ${r.text.slice(0, 500)}`);
    return r;
  }

  // A tenant and an E2B-format key for it ("e2b_" + 40 hex).
  async tenant(name = 'e2b-test') {
    await this.expect(201, 'POST', '/v1/tenants', { body: { name } });
    const r = await this.expect(201, 'POST', `/v1/tenants/${name}/keys`, { body: { format: 'e2b' } });
    const key = r.json().key;
    if (!/^e2b_[0-9a-f]{40}$/.test(key)) throw new Error(`tenant key is not in E2B format: ${key}`);
    return key;
  }

  // Point the E2B SDKs at this daemon (the same listener is API and sandbox URL).
  useForSdk(key) {
    this.key = key;
    process.env.E2B_API_KEY = key;
    process.env.E2B_API_URL = this.url;
    process.env.E2B_SANDBOX_URL = this.url;
  }

  async runningSandboxes() {
    const r = await this.expect(200, 'GET', '/v1/sandboxes');
    return r.json().sandboxes.filter((s) => s.state === undefined || s.state === 'running');
  }

  // Kill every sandbox that is still running (corrald keeps sandboxes alive
  // across SIGTERM by design), stop the daemon, and fail on a sanitizer report.
  async stop() {
    const problems = [];
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        for (const sb of (await this.expect(200, 'GET', '/v1/sandboxes')).json().sandboxes) {
          if (sb.state && sb.state !== 'running') continue;
          const r = await this.request('DELETE', `/v1/sandboxes/${sb.id}`);
          if (r.status >= 300 && r.status !== 404) problems.push(`DELETE ${sb.id}: ${r.status} ${r.text}`);
        }
      } catch (e) {
        problems.push(`cleaning up sandboxes: ${e}`);
      }
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(t);
    }
    const log = this.readLog();
    if (log.includes('Sanitizer') || log.includes('runtime error:')) problems.push('sanitizer report in corrald log:\n' + log);
    if (problems.length === 0) rmSync(this.dir, { recursive: true, force: true });
    else problems.push(`(state and log kept in ${this.dir})`);
    if (problems.length) throw new Error(problems.join('\n'));
  }
}

// Starts a daemon with a fresh E2B tenant before the file's tests and stops it
// after them; the returned object is filled in by the `before` hook.
export function useDaemon(opts) {
  const d = new Daemon(opts);
  before(async () => {
    await d.start();
    d.useForSdk(await d.tenant());
  });
  after(() => d.stop());
  return d;
}

// Run fn(sandbox) and kill the sandbox afterwards, whatever happened.
export async function withSandbox(createPromise, fn) {
  const sbx = await createPromise;
  try {
    return await fn(sbx);
  } finally {
    await sbx.kill().catch(() => {});
  }
}

// Poll until pred() is truthy (or throw after ms).
export async function until(pred, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export const randomE2bKey = () => 'e2b_' + randomBytes(20).toString('hex');
