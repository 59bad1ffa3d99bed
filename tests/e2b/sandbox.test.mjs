// Sandbox lifecycle through the official `e2b` SDK against a real corrald:
// create (default and named template, timeout, metadata, envs), list with
// metadata filters and pages, connect, setTimeout, isRunning, kill, getInfo,
// and the SDK errors for a missing sandbox and an unknown API key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Sandbox, SandboxNotFoundError, NotFoundError, AuthenticationError, TimeoutError } from 'e2b';
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter';
import { useDaemon, randomE2bKey } from './harness.mjs';

const daemon = useDaemon();
const T = { timeout: 30_000 };
const tag = () => randomBytes(6).toString('hex');

async function listAll(opts) {
  const paginator = Sandbox.list(opts);
  const items = [];
  while (paginator.hasNext) items.push(...(await paginator.nextItems()));
  return items;
}

// The template a SandboxInfo names: E2B gives an id and the alias as `name`.
const templateOf = (info) => [info.templateId, info.name];

test('Sandbox.create() uses the default template "base" and runs a command', T, async () => {
  const sbx = await Sandbox.create();
  try {
    assert.match(sbx.sandboxId, /\S/);
    const info = await sbx.getInfo();
    assert.equal(info.sandboxId, sbx.sandboxId);
    assert.ok(templateOf(info).includes('base'), `template of ${JSON.stringify(info)}`);
    assert.equal(info.state, 'running');
    assert.ok(info.startedAt instanceof Date && !isNaN(info.startedAt), 'startedAt is a date');
    assert.ok(info.endAt > info.startedAt, 'endAt after startedAt');
    const r = await sbx.commands.run('echo hi');
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'hi\n');
    assert.equal(r.stderr, '');
  } finally {
    await sbx.kill();
  }
});

test("Sandbox.create('base', {timeoutMs, metadata, envs})", T, async () => {
  const run = tag();
  const before = Date.now();
  const sbx = await Sandbox.create('base', {
    timeoutMs: 120_000,
    metadata: { suite: 'e2b-sandbox', run },
    envs: { X: 'from-create', OTHER: 'two words' },
  });
  try {
    const info = await sbx.getInfo();
    assert.deepEqual(info.metadata, { suite: 'e2b-sandbox', run });
    assert.ok(templateOf(info).includes('base'), `template of ${JSON.stringify(info)}`);
    // endAt is about create time + 120 s
    const left = info.endAt.getTime() - before;
    assert.ok(left > 110_000 && left < 135_000, `endAt - create = ${left} ms, expected ~120000`);

    const x = await sbx.commands.run('echo $X');
    assert.equal(x.stdout, 'from-create\n');
    const other = await sbx.commands.run('printf %s "$OTHER"');
    assert.equal(other.stdout, 'two words');
    // a command's own envs override the sandbox's
    const over = await sbx.commands.run('echo $X', { envs: { X: 'from-run' } });
    assert.equal(over.stdout, 'from-run\n');
  } finally {
    await sbx.kill();
  }
});

test('Sandbox.list() finds sandboxes with their metadata and filters by metadata', T, async () => {
  const run = tag();
  const a = await Sandbox.create({ metadata: { suite: 'e2b-list', run, which: 'a' } });
  const b = await Sandbox.create({ metadata: { suite: 'e2b-list', run, which: 'b' } });
  try {
    const all = await listAll();
    const foundA = all.find((s) => s.sandboxId === a.sandboxId);
    assert.ok(foundA, `list() has ${a.sandboxId}: ${JSON.stringify(all.map((s) => s.sandboxId))}`);
    assert.deepEqual(foundA.metadata, { suite: 'e2b-list', run, which: 'a' });
    assert.equal(foundA.state, 'running');
    assert.ok(templateOf(foundA).includes('base'));
    assert.ok(all.some((s) => s.sandboxId === b.sandboxId));

    const onlyB = await listAll({ query: { metadata: { run, which: 'b' } } });
    assert.deepEqual(onlyB.map((s) => s.sandboxId), [b.sandboxId]);
    const both = await listAll({ query: { metadata: { run } } });
    assert.deepEqual(both.map((s) => s.sandboxId).sort(), [a.sandboxId, b.sandboxId].sort());
    const none = await listAll({ query: { metadata: { run: 'no-such-run' } } });
    assert.deepEqual(none, []);

    // pages of one: two pages, each with one of the two, then no more
    const pager = Sandbox.list({ query: { metadata: { run } }, limit: 1 });
    const page1 = await pager.nextItems();
    assert.equal(page1.length, 1);
    assert.equal(pager.hasNext, true, 'a second page after the first of two');
    const page2 = await pager.nextItems();
    assert.equal(page2.length, 1);
    assert.notEqual(page2[0].sandboxId, page1[0].sandboxId);
    if (pager.hasNext) assert.deepEqual(await pager.nextItems(), []);
    assert.equal(pager.hasNext, false);
  } finally {
    await a.kill();
    await b.kill();
  }
  // killed sandboxes are no longer listed as running
  const after = await listAll({ query: { metadata: { run } } });
  assert.deepEqual(after.filter((s) => s.state === 'running'), []);
});

test('Sandbox.connect(id) reaches the same sandbox', T, async () => {
  const sbx = await Sandbox.create();
  try {
    await sbx.commands.run('echo connected-marker > /tmp/marker');
    const again = await Sandbox.connect(sbx.sandboxId);
    assert.equal(again.sandboxId, sbx.sandboxId);
    const r = await again.commands.run('cat /tmp/marker');
    assert.equal(r.stdout, 'connected-marker\n');
    // the instance method too
    const third = await again.connect();
    assert.equal((await third.files.read('/tmp/marker')), 'connected-marker\n');
  } finally {
    await sbx.kill();
  }
});

test('sbx.setTimeout(ms) moves endAt', T, async () => {
  const sbx = await Sandbox.create({ timeoutMs: 60_000 });
  try {
    const before = await sbx.getInfo();
    const t0 = Date.now();
    await sbx.setTimeout(600_000);
    const after = await sbx.getInfo();
    const left = after.endAt.getTime() - t0;
    assert.ok(after.endAt > before.endAt, `endAt moved: ${before.endAt.toISOString()} -> ${after.endAt.toISOString()}`);
    assert.ok(left > 590_000 && left < 615_000, `endAt - now = ${left} ms, expected ~600000`);
    // and back down (setTimeout may shorten as well)
    await Sandbox.setTimeout(sbx.sandboxId, 30_000);
    const shorter = await Sandbox.getInfo(sbx.sandboxId);
    const left2 = shorter.endAt.getTime() - Date.now();
    assert.ok(left2 > 20_000 && left2 < 35_000, `endAt - now = ${left2} ms, expected ~30000`);
    assert.equal(await sbx.isRunning(), true);
  } finally {
    await sbx.kill();
  }
});

test('isRunning() is true, then false after kill()', T, async () => {
  const sbx = await Sandbox.create();
  assert.equal(await sbx.isRunning(), true);
  assert.equal(await sbx.kill(), true);
  assert.equal(await sbx.isRunning(), false);
  // a killed sandbox is gone for the control plane too
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError);
});

test('a sandbox ends when its timeout runs out', T, async () => {
  const t0 = Date.now();
  const sbx = await Sandbox.create({ timeoutMs: 2000 });
  const h = await sbx.commands.run('sleep 30', { background: true });
  // its in-flight command ends with the sandbox
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof TimeoutError, `${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  const took = Date.now() - t0;
  assert.ok(took >= 1500 && took < 8000, `ended ${took} ms after create, expected ~2000`);
  assert.equal(await sbx.isRunning(), false);
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError);
  assert.equal(await Sandbox.kill(sbx.sandboxId), false);
  // what the SDK reports for requests to a sandbox that is gone
  await assert.rejects(sbx.commands.run('echo hi'), (e) => {
    assert.ok(e instanceof SandboxNotFoundError, `${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  await assert.rejects(sbx.files.read('/etc/hostname'), (e) => {
    assert.ok(e instanceof TimeoutError, `${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
});

test('Sandbox.kill(id) returns true, then false once it is gone', T, async () => {
  const sbx = await Sandbox.create();
  assert.equal(await Sandbox.kill(sbx.sandboxId), true);
  assert.equal(await Sandbox.kill(sbx.sandboxId), false);
  assert.equal(await Sandbox.kill('sb_doesnotexist0000000'), false);
  assert.equal(await sbx.isRunning(), false);
});

test('Sandbox.getInfo on a missing sandbox throws SandboxNotFoundError', T, async () => {
  await assert.rejects(Sandbox.getInfo('sb_doesnotexist0000000'), (e) => {
    assert.ok(e instanceof SandboxNotFoundError, `${e?.constructor?.name}: ${e?.message}`);
    assert.ok(e instanceof NotFoundError);
    return true;
  });
  await assert.rejects(Sandbox.connect('sb_doesnotexist0000000'), (e) => {
    assert.ok(e instanceof NotFoundError, `${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
});

test('an unknown API key (valid format) makes the SDK throw AuthenticationError', T, async () => {
  const apiKey = randomE2bKey();
  assert.notEqual(apiKey, daemon.key);
  const count = (await daemon.runningSandboxes()).length;
  await assert.rejects(Sandbox.create({ apiKey }), (e) => {
    assert.ok(e instanceof AuthenticationError, `${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  await assert.rejects(Sandbox.list({ apiKey }).nextItems(), AuthenticationError);
  await assert.rejects(Sandbox.kill('sb_doesnotexist0000000', { apiKey }), AuthenticationError);
  assert.equal((await daemon.runningSandboxes()).length, count, 'nothing was created for the bad key');
});

test('a tenant sees only its own sandboxes', T, async () => {
  const otherKey = await daemon.tenant('e2b-other');
  const mine = await Sandbox.create({ metadata: { owner: 'e2b-test' } });
  const theirs = await Sandbox.create({ apiKey: otherKey, metadata: { owner: 'e2b-other' } });
  try {
    const listed = (await listAll()).map((s) => s.sandboxId);
    assert.ok(listed.includes(mine.sandboxId));
    assert.ok(!listed.includes(theirs.sandboxId), 'another tenant\'s sandbox is not listed');
    await assert.rejects(Sandbox.getInfo(theirs.sandboxId), NotFoundError);
    assert.equal(await Sandbox.kill(theirs.sandboxId), false);
    assert.equal(await theirs.isRunning(), true);
  } finally {
    await mine.kill();
    await theirs.kill();
  }
});

test("the code interpreter's default template code-interpreter-v1", T, async () => {
  const sbx = await CodeSandbox.create();
  try {
    const info = await sbx.getInfo();
    assert.ok(templateOf(info).includes('code-interpreter-v1'), `template of ${JSON.stringify(info)}`);
    const r = await sbx.commands.run('python3 -c "print(6*7)"');
    assert.equal(r.stdout, '42\n');
    const exec = await sbx.runCode('6 * 7');
    assert.equal(exec.text, '42');
  } finally {
    await sbx.kill();
  }
});
