// Terminal sessions through the official `e2b` SDK (sandbox.pty): a shell on
// a terminal of the sandbox, its size and resize, input, ^C to the
// foreground job, and the end of the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from 'e2b';
import { useDaemon, until } from './harness.mjs';

useDaemon();
const T = { timeout: 30_000 };
const enc = (s) => new TextEncoder().encode(s);

async function withTerminal(fn) {
  const sbx = await Sandbox.create();
  let out = '';
  const dec = new TextDecoder();
  try {
    const term = await sbx.pty.create({ cols: 80, rows: 24, timeoutMs: 0, onData: (d) => { out += dec.decode(d, { stream: true }); } });
    return await fn(sbx, term, () => out);
  } finally {
    await sbx.kill().catch(() => {});
  }
}

test('a PTY runs an interactive shell on a terminal of the given size', T, () =>
  withTerminal(async (sbx, term, out) => {
    assert.ok(term.pid > 0);
    await sbx.pty.sendInput(term.pid, enc('tty; stty size; echo "T=$TERM"\n'));
    await until(() => /T=xterm-256color/.test(out()), 5000, 'the shell answered');
    assert.match(out(), /\/dev\/pts\/\d+/, 'stdin is a terminal');
    assert.match(out(), /24 80/, 'the size given at create');
  }));

test('resize changes the window size the shell sees', T, () =>
  withTerminal(async (sbx, term, out) => {
    await sbx.pty.resize(term.pid, { cols: 132, rows: 43 });
    await sbx.pty.sendInput(term.pid, enc('stty size\n'));
    await until(() => /43 132/.test(out()), 5000, 'the new size');
  }));

test('^C interrupts the foreground job, not the shell', T, () =>
  withTerminal(async (sbx, term, out) => {
    await sbx.pty.sendInput(term.pid, enc('sleep 30; echo slept\n'));
    await new Promise((r) => setTimeout(r, 300));
    await sbx.pty.sendInput(term.pid, enc('\x03'));
    await sbx.pty.sendInput(term.pid, enc('echo alive-$((6*7))\n'));
    await until(() => /alive-42/.test(out()), 5000, 'the shell survived ^C');
    assert.doesNotMatch(out(), /\nslept\r/, 'the sleep was interrupted before its echo');
  }));

test('exit ends the session with its exit code; kill ends another', T, async () => {
  await withTerminal(async (sbx, term) => {
    await sbx.pty.sendInput(term.pid, enc('exit 3\n'));
    const r = await term.wait().catch((e) => e);
    assert.equal(r.exitCode, 3);
  });
  await withTerminal(async (sbx, term) => {
    assert.equal(await sbx.pty.kill(term.pid), true);
    const r = await term.wait().catch((e) => e);
    assert.notEqual(r.exitCode, 0);
  });
});
