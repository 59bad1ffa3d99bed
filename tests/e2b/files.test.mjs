// The filesystem through the official `e2b` SDK against a real corrald:
// read/write as text, bytes, blob and streams, many files at once, list with
// depth, exists, getInfo, makeDir, rename, remove, watchDir, and the SDK error
// for a missing file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Sandbox, NotFoundError, FileNotFoundError } from 'e2b';
import { useDaemon, until } from './harness.mjs';

useDaemon();
const T = { timeout: 30_000 };

async function inSandbox(fn) {
  const sbx = await Sandbox.create();
  try {
    return await fn(sbx);
  } finally {
    await sbx.kill().catch(() => {});
  }
}

const allBytes = () => Uint8Array.from({ length: 256 }, (_, i) => i);
const sha = (buf) => createHash('sha256').update(buf).digest('hex');

// Deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
function noise(n, seed = 12345) {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

test('write(path, string) then read(path)', T, () =>
  inSandbox(async (sbx) => {
    const text = 'hello from the E2B SDK\nsecond line, ünïcødé ✓\n';
    const info = await sbx.files.write('/home/user/hello.txt', text);
    assert.equal(info.path, '/home/user/hello.txt');
    assert.equal(info.name, 'hello.txt');
    assert.equal(info.type, 'file');
    assert.equal(await sbx.files.read('/home/user/hello.txt'), text);
    // the sandbox sees the same bytes
    assert.equal((await sbx.commands.run('cat /home/user/hello.txt')).stdout, text);
    // overwrite
    await sbx.files.write('/home/user/hello.txt', 'short');
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'short');
    // relative paths are relative to the home directory; parents are created
    const rel = await sbx.files.write('nested/dir/relative.txt', 'rel');
    assert.equal(rel.path, '/home/user/nested/dir/relative.txt');
    assert.equal((await sbx.commands.run('cat /home/user/nested/dir/relative.txt')).stdout, 'rel');
    // an empty file
    await sbx.files.write('/home/user/empty', '');
    assert.equal(await sbx.files.read('/home/user/empty'), '');
  }));

test("bytes round trip: all 256 byte values, format 'bytes' and 'blob'", T, () =>
  inSandbox(async (sbx) => {
    const bytes = allBytes();
    await sbx.files.write('/home/user/all.bin', bytes.buffer);
    const back = await sbx.files.read('/home/user/all.bin', { format: 'bytes' });
    assert.ok(back instanceof Uint8Array);
    assert.deepEqual(Buffer.from(back), Buffer.from(bytes));
    const blob = await sbx.files.read('/home/user/all.bin', { format: 'blob' });
    assert.equal(blob.size, 256);
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), Buffer.from(bytes));
    // the sandbox agrees on the content
    const sum = (await sbx.commands.run('sha256sum /home/user/all.bin')).stdout.split(' ')[0];
    assert.equal(sum, sha(bytes));
  }));

test("format 'stream' reads a large file", T, () =>
  inSandbox(async (sbx) => {
    const big = noise(3 * 1024 * 1024 + 17);
    await sbx.files.write('/home/user/big.bin', big.buffer);
    const stream = await sbx.files.read('/home/user/big.bin', { format: 'stream' });
    assert.ok(stream instanceof ReadableStream);
    const back = await collect(stream);
    assert.equal(back.length, big.length);
    assert.equal(sha(back), sha(big));
  }));

test('write from a ReadableStream and from a Blob', T, () =>
  inSandbox(async (sbx) => {
    const parts = ['streamed ', 'in ', 'three parts\n'];
    const stream = new ReadableStream({
      start(c) {
        for (const p of parts) c.enqueue(new TextEncoder().encode(p));
        c.close();
      },
    });
    const info = await sbx.files.write('/home/user/from-stream.txt', stream);
    assert.equal(info.path, '/home/user/from-stream.txt');
    assert.equal(await sbx.files.read('/home/user/from-stream.txt'), parts.join(''));

    const blob = new Blob([allBytes(), 'tail']);
    await sbx.files.write('/home/user/from-blob.bin', blob);
    const back = await sbx.files.read('/home/user/from-blob.bin', { format: 'bytes' });
    assert.deepEqual(Buffer.from(back), Buffer.concat([Buffer.from(allBytes()), Buffer.from('tail')]));
  }));

test('gzip-encoded writes and reads', T, () =>
  inSandbox(async (sbx) => {
    const data = noise(200_000, 99);
    await sbx.files.write('/home/user/gz.bin', data.buffer, { gzip: true });
    const back = await sbx.files.read('/home/user/gz.bin', { format: 'bytes', gzip: true });
    assert.equal(sha(back), sha(data));
    const text = 'abc'.repeat(10_000);
    await sbx.files.write('/home/user/gz.txt', text);
    assert.equal(await sbx.files.read('/home/user/gz.txt', { gzip: true }), text);
    assert.equal((await sbx.commands.run('wc -c < /home/user/gz.txt')).stdout.trim(), String(text.length));
  }));

test('write([{path, data}, ...]) writes many files at once', T, () =>
  inSandbox(async (sbx) => {
    const entries = [
      { path: '/home/user/many/one.txt', data: 'one' },
      { path: '/home/user/many/two.bin', data: allBytes().buffer },
      { path: '/home/user/many/sub/three.txt', data: new Blob(['three']) },
    ];
    const infos = await sbx.files.write(entries);
    assert.equal(infos.length, 3);
    assert.deepEqual(infos.map((i) => i.path), entries.map((e) => e.path));
    assert.equal(await sbx.files.read('/home/user/many/one.txt'), 'one');
    assert.deepEqual(Buffer.from(await sbx.files.read('/home/user/many/two.bin', { format: 'bytes' })), Buffer.from(allBytes()));
    assert.equal(await sbx.files.read('/home/user/many/sub/three.txt'), 'three');
  }));

test('list(dir) and list(dir, {depth: 2}) give name, path and type', T, () =>
  inSandbox(async (sbx) => {
    await sbx.commands.run('mkdir -p /home/user/tree/sub/deeper && echo a > /home/user/tree/a.txt && ' +
      'echo bb > /home/user/tree/sub/b.txt && echo c > /home/user/tree/sub/deeper/c.txt');
    const top = await sbx.files.list('/home/user/tree');
    const byPath = (list) => Object.fromEntries(list.map((e) => [e.path, e]));
    const t = byPath(top);
    assert.deepEqual(Object.keys(t).sort(), ['/home/user/tree/a.txt', '/home/user/tree/sub']);
    assert.equal(t['/home/user/tree/a.txt'].name, 'a.txt');
    assert.equal(t['/home/user/tree/a.txt'].type, 'file');
    assert.equal(t['/home/user/tree/a.txt'].size, 2);
    assert.equal(t['/home/user/tree/sub'].name, 'sub');
    assert.equal(t['/home/user/tree/sub'].type, 'dir');

    const two = byPath(await sbx.files.list('/home/user/tree', { depth: 2 }));
    assert.deepEqual(Object.keys(two).sort(), [
      '/home/user/tree/a.txt',
      '/home/user/tree/sub',
      '/home/user/tree/sub/b.txt',
      '/home/user/tree/sub/deeper',
    ]);
    assert.equal(two['/home/user/tree/sub/b.txt'].type, 'file');
    assert.equal(two['/home/user/tree/sub/b.txt'].size, 3);
    assert.equal(two['/home/user/tree/sub/deeper'].type, 'dir');

    await assert.rejects(sbx.files.list('/home/user/no-such-dir'), NotFoundError);
  }));

test('exists and getInfo', T, () =>
  inSandbox(async (sbx) => {
    await sbx.files.write('/home/user/info/file.txt', '12345');
    assert.equal(await sbx.files.exists('/home/user/info/file.txt'), true);
    assert.equal(await sbx.files.exists('/home/user/info'), true);
    assert.equal(await sbx.files.exists('/home/user/info/missing.txt'), false);

    const f = await sbx.files.getInfo('/home/user/info/file.txt');
    assert.equal(f.type, 'file');
    assert.equal(f.name, 'file.txt');
    assert.equal(f.path, '/home/user/info/file.txt');
    assert.equal(f.size, 5);
    assert.equal(f.mode & 0o777, 0o644, `mode ${f.mode?.toString(8)}`);
    assert.ok(f.modifiedTime instanceof Date && Math.abs(f.modifiedTime - Date.now()) < 60_000, `modifiedTime ${f.modifiedTime}`);

    const d = await sbx.files.getInfo('/home/user/info');
    assert.equal(d.type, 'dir');
    assert.equal(d.name, 'info');
    assert.equal(d.mode & 0o777, 0o755, `mode ${d.mode?.toString(8)}`);

    await assert.rejects(sbx.files.getInfo('/home/user/info/missing.txt'), NotFoundError);
  }));

test('makeDir is true when it creates, false when the directory exists', T, () =>
  inSandbox(async (sbx) => {
    assert.equal(await sbx.files.makeDir('/home/user/made/a/b'), true);
    assert.equal((await sbx.files.getInfo('/home/user/made/a/b')).type, 'dir');
    assert.equal(await sbx.files.makeDir('/home/user/made/a/b'), false);
    assert.equal(await sbx.files.makeDir('/home/user/made'), false);
    assert.equal((await sbx.commands.run('test -d /home/user/made/a/b && echo yes')).stdout, 'yes\n');
  }));

test('rename moves a file and returns its new info', T, () =>
  inSandbox(async (sbx) => {
    await sbx.files.write('/home/user/old-name.txt', 'moving');
    await sbx.files.makeDir('/home/user/moved');
    const info = await sbx.files.rename('/home/user/old-name.txt', '/home/user/moved/new-name.txt');
    assert.equal(info.path, '/home/user/moved/new-name.txt');
    assert.equal(info.name, 'new-name.txt');
    assert.equal(info.type, 'file');
    assert.equal(await sbx.files.exists('/home/user/old-name.txt'), false);
    assert.equal(await sbx.files.read('/home/user/moved/new-name.txt'), 'moving');
    // a directory too
    await sbx.files.rename('/home/user/moved', '/home/user/moved2');
    assert.equal(await sbx.files.read('/home/user/moved2/new-name.txt'), 'moving');
    await assert.rejects(sbx.files.rename('/home/user/nope', '/home/user/nope2'), NotFoundError);
  }));

test('remove deletes files and directories', T, () =>
  inSandbox(async (sbx) => {
    await sbx.files.write('/home/user/rm/inner/file.txt', 'x');
    await sbx.files.write('/home/user/rm-file.txt', 'x');
    await sbx.files.remove('/home/user/rm-file.txt');
    assert.equal(await sbx.files.exists('/home/user/rm-file.txt'), false);
    await sbx.files.remove('/home/user/rm');
    assert.equal(await sbx.files.exists('/home/user/rm'), false);
    assert.equal((await sbx.commands.run('ls -A /home/user | grep -c "^rm" || true')).stdout.trim(), '0');
  }));

test('reading a missing file throws NotFoundError (FileNotFoundError)', T, () =>
  inSandbox(async (sbx) => {
    await assert.rejects(sbx.files.read('/home/user/does-not-exist.txt'), (e) => {
      assert.ok(e instanceof NotFoundError, `${e?.constructor?.name}: ${e?.message}`);
      assert.ok(e instanceof FileNotFoundError, `${e?.constructor?.name}`);
      return true;
    });
    await assert.rejects(sbx.files.read('/home/user/does-not-exist.bin', { format: 'bytes' }), NotFoundError);
  }));

test('write with metadata stores it on the file', T, () =>
  inSandbox(async (sbx) => {
    const info = await sbx.files.write('/home/user/meta.txt', 'm', { metadata: { owner: 'tests', kind: 'note' } });
    assert.deepEqual(info.metadata, { owner: 'tests', kind: 'note' });
    const back = await sbx.files.getInfo('/home/user/meta.txt');
    assert.deepEqual(back.metadata, { owner: 'tests', kind: 'note' });
  }));

test('watchDir delivers an event for a file written in the directory', T, () =>
  inSandbox(async (sbx) => {
    await sbx.files.makeDir('/home/user/watched');
    const events = [];
    const handle = await sbx.files.watchDir('/home/user/watched', (e) => events.push(e));
    try {
      await sbx.files.write('/home/user/watched/new-file.txt', 'watch me');
      await until(() => events.some((e) => e.name === 'new-file.txt'), 5000,
        `an event for new-file.txt (got ${JSON.stringify(events)})`);
      const types = new Set(events.filter((e) => e.name === 'new-file.txt').map((e) => e.type));
      assert.ok(types.has('create') || types.has('write'), `event types ${[...types]}`);
      // a change made inside the sandbox is seen too
      await sbx.commands.run('rm /home/user/watched/new-file.txt');
      await until(() => events.some((e) => e.name === 'new-file.txt' && e.type === 'remove'), 5000,
        `a remove event (got ${JSON.stringify(events)})`);
    } finally {
      await handle.stop();
    }
  }));
