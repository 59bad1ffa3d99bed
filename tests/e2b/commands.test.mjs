// Commands through the official `e2b` SDK against a real corrald: run with
// output callbacks, exit codes, envs/cwd/user, background commands with
// list/stdin/connect/kill, and the SDK errors for a failed and a timed-out
// command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, CommandExitError, TimeoutError, SandboxError } from 'e2b';
import { useDaemon, until } from './harness.mjs';

useDaemon();
const T = { timeout: 30_000 };

// Run fn(sbx) in a fresh sandbox that is killed afterwards.
async function inSandbox(fn, opts) {
  const sbx = await Sandbox.create(opts);
  try {
    return await fn(sbx);
  } finally {
    await sbx.kill().catch(() => {});
  }
}

test('run() returns stdout/stderr and streams them to onStdout/onStderr', T, () =>
  inSandbox(async (sbx) => {
    const out = [];
    const err = [];
    const r = await sbx.commands.run('echo out1; echo err1 >&2; sleep 0.1; echo out2; echo err2 >&2', {
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
    });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'out1\nout2\n');
    assert.equal(r.stderr, 'err1\nerr2\n');
    assert.equal(out.join(''), 'out1\nout2\n');
    assert.equal(err.join(''), 'err1\nerr2\n');
    assert.ok(out.length >= 2, `output arrived in ${out.length} chunk(s); expected it streamed, not at the end`);
  }));

test('a non-zero exit throws CommandExitError with exitCode, stdout and stderr', T, () =>
  inSandbox(async (sbx) => {
    await assert.rejects(sbx.commands.run('echo partial; echo oops >&2; exit 3'), (e) => {
      assert.ok(e instanceof CommandExitError, `${e?.constructor?.name}: ${e?.message}`);
      assert.ok(e instanceof SandboxError);
      assert.equal(e.exitCode, 3);
      assert.equal(e.stdout, 'partial\n');
      assert.equal(e.stderr, 'oops\n');
      return true;
    });
    // a missing program: bash's 127
    await assert.rejects(sbx.commands.run('no-such-program-xyz'), (e) => {
      assert.ok(e instanceof CommandExitError, `${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.exitCode, 127);
      assert.match(e.stderr, /no-such-program-xyz/);
      return true;
    });
  }));

test('envs and cwd options; the default cwd is /home/user', T, () =>
  inSandbox(async (sbx) => {
    const r = await sbx.commands.run('pwd; echo "$FOO|$BAR"', { cwd: '/tmp', envs: { FOO: 'foo value', BAR: 'b=1' } });
    assert.equal(r.stdout, '/tmp\nfoo value|b=1\n');
    const home = await sbx.commands.run('pwd; echo $HOME');
    assert.equal(home.stdout, '/home/user\n/home/user\n');
    // a command line is bash: pipes, expansions, quoting
    const sh = await sbx.commands.run(`printf '%s\\n' a b c | wc -l; echo $((6*7)); echo "it's"`);
    assert.equal(sh.stdout, '3\n42\nit\'s\n');
  }));

test("user: 'user' and user: 'root' both run", T, () =>
  inSandbox(async (sbx) => {
    for (const user of ['user', 'root']) {
      const r = await sbx.commands.run('whoami', { user });
      assert.equal(r.exitCode, 0, `as ${user}`);
      assert.match(r.stdout.trim(), /^\S+$/, `whoami as ${user}: ${JSON.stringify(r.stdout)}`);
    }
  }));

test('background run() returns a handle; commands.list() shows it; wait() collects it', T, () =>
  inSandbox(async (sbx) => {
    const seen = [];
    const cmd = 'for i in 1 2 3; do echo tick$i; sleep 0.3; done';
    const h = await sbx.commands.run(cmd, { background: true, onStdout: (d) => seen.push(d) });
    assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`);
    assert.equal(h.exitCode, undefined, 'still running');
    const procs = await sbx.commands.list();
    const mine = procs.find((p) => p.pid === h.pid);
    assert.ok(mine, `list() has pid ${h.pid}: ${JSON.stringify(procs)}`);
    assert.ok([mine.cmd, ...mine.args].join(' ').includes(cmd), `list() entry names the command: ${JSON.stringify(mine)}`);
    const r = await h.wait();
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'tick1\ntick2\ntick3\n');
    assert.equal(seen.join(''), 'tick1\ntick2\ntick3\n');
    assert.equal(h.exitCode, 0);
    assert.equal(h.stdout, 'tick1\ntick2\ntick3\n');
    await until(async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid), 3000, 'the finished command to leave list()');
  }));

test('sendStdin reaches a command started with stdin: true', T, () =>
  inSandbox(async (sbx) => {
    const h = await sbx.commands.run('head -n1', { background: true, stdin: true });
    await sbx.commands.sendStdin(h.pid, 'hello stdin\n');
    const r = await h.wait();
    assert.equal(r.stdout, 'hello stdin\n');

    // through the handle, in pieces, bytes too
    const h2 = await sbx.commands.run('head -n2', { background: true, stdin: true });
    await h2.sendStdin('first ');
    await h2.sendStdin(new TextEncoder().encode('line\nsecond line\n'));
    assert.equal((await h2.wait()).stdout, 'first line\nsecond line\n');
  }));

test('closeStdin ends the input of a command started with stdin: true', T, () =>
  inSandbox(async (sbx) => {
    const h = await sbx.commands.run('wc -c', { background: true, stdin: true });
    await sbx.commands.sendStdin(h.pid, 'abcde');
    await sbx.commands.closeStdin(h.pid);
    const r = await h.wait();
    assert.equal(r.stdout.trim(), '5');
  }));

test('commands.connect(pid) receives the later output of a running command', T, () =>
  inSandbox(async (sbx) => {
    const h = await sbx.commands.run('echo early; sleep 1; echo after-connect; sleep 0.2', { background: true });
    await h.disconnect();
    const later = [];
    const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => later.push(d) });
    assert.equal(h2.pid, h.pid);
    const r = await h2.wait();
    assert.equal(r.exitCode, 0);
    assert.match(r.stdout, /after-connect\n/);
    assert.match(later.join(''), /after-connect\n/);
    // connecting to a command that is gone fails
    await assert.rejects(sbx.commands.connect(h.pid));
  }));

test('handle.kill() and commands.kill(pid) end a command; false for a missing pid', T, () =>
  inSandbox(async (sbx) => {
    const h = await sbx.commands.run('sleep 30', { background: true });
    assert.equal(await h.kill(), true);
    await assert.rejects(h.wait(), (e) => {
      assert.ok(e instanceof CommandExitError, `${e?.constructor?.name}: ${e?.message}`);
      assert.notEqual(e.exitCode, 0);
      return true;
    });

    const h2 = await sbx.commands.run('sleep 30', { background: true });
    const t0 = Date.now();
    assert.equal(await sbx.commands.kill(h2.pid), true);
    await assert.rejects(h2.wait(), CommandExitError);
    assert.ok(Date.now() - t0 < 5000, 'killed, not run to the end');
    await until(async () => !(await sbx.commands.list()).some((p) => p.pid === h2.pid), 3000, 'the killed command to leave list()');
    assert.equal(await sbx.commands.kill(h2.pid), false);
    assert.equal(await sbx.commands.kill(999_999), false);
  }));

test('a command that outlives its timeoutMs fails with TimeoutError', T, () =>
  inSandbox(async (sbx) => {
    const t0 = Date.now();
    await assert.rejects(sbx.commands.run('sleep 10; echo finished', { timeoutMs: 1000 }), (e) => {
      assert.ok(e instanceof TimeoutError, `${e?.constructor?.name}: ${e?.message}`);
      return true;
    });
    const took = Date.now() - t0;
    assert.ok(took < 6000, `the timeout fired after ${took} ms`);
    // the sandbox is still usable
    assert.equal((await sbx.commands.run('echo still-here')).stdout, 'still-here\n');
  }));

test('a background command of a sandbox that is killed ends with an error', T, async () => {
  const sbx = await Sandbox.create();
  const h = await sbx.commands.run('sleep 30', { background: true });
  const t0 = Date.now();
  assert.equal(await Sandbox.kill(sbx.sandboxId), true);
  // the SDK maps the server's "sandbox is gone" ([unavailable]) to TimeoutError
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof TimeoutError, `${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  assert.ok(Date.now() - t0 < 10_000, 'the command ended with the sandbox');
});
