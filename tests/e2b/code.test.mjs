// Code execution through the official `@e2b/code-interpreter` SDK against a
// real corrald: state across runCode calls, rich results (matplotlib PNG,
// pandas HTML), errors, streamed output, and Python and JavaScript contexts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, TimeoutError, NotFoundError } from '@e2b/code-interpreter';
import { useDaemon } from './harness.mjs';

useDaemon();
const T = { timeout: 40_000 };

async function inSandbox(fn) {
  const sbx = await Sandbox.create();
  try {
    return await fn(sbx);
  } finally {
    await sbx.kill().catch(() => {});
  }
}

// Throws with the execution's error shown, when a run that should work did not.
function ok(execution) {
  assert.equal(execution.error, undefined, `unexpected error: ${JSON.stringify(execution.error)}`);
  return execution;
}

// A PNG: the 8-byte signature, then the IHDR chunk with width and height.
function assertPng(b64) {
  assert.equal(typeof b64, 'string');
  const png = Buffer.from(b64, 'base64');
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  assert.ok(width > 0 && height > 0, `${width}x${height}`);
  return { width, height, size: png.length };
}

test('state persists across runCode calls: x = 41, then x + 1 is 42', T, () =>
  inSandbox(async (sbx) => {
    const first = ok(await sbx.runCode('x = 41'));
    assert.equal(first.text, undefined, 'an assignment has no result');
    assert.deepEqual(first.results, []);
    const second = ok(await sbx.runCode('x + 1'));
    assert.equal(second.text, '42');
    assert.equal(second.results.length, 1);
    assert.equal(second.results[0].isMainResult, true);
    assert.equal(second.results[0].text, '42');
    // execution counts go up
    if (first.executionCount !== undefined) assert.ok(second.executionCount > first.executionCount);
    // per-run environment variables
    const env = ok(await sbx.runCode('import os; os.environ.get("E2B_TEST_VAR")', { envs: { E2B_TEST_VAR: 'from-run' } }));
    assert.equal(env.text, "'from-run'");
  }));

test('matplotlib figures come back as PNG results', T, () =>
  inSandbox(async (sbx) => {
    const shown = ok(await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()'));
    assert.ok(shown.results.length >= 1, 'a result for the figure');
    assertPng(shown.results[0].png);
    assert.ok(shown.results[0].formats().includes('png'));

    // without plt.show(): the figure is still displayed, next to the Line2D repr
    const bare = ok(await sbx.runCode('plt.figure(figsize=(4, 3))\nplt.plot([3, 1, 2])'));
    const withPng = bare.results.filter((r) => r.png);
    assert.equal(withPng.length, 1, `results: ${JSON.stringify(bare.results.map((r) => r.formats()))}`);
    const { width, height } = assertPng(withPng[0].png);
    assert.ok(width > height, `a 4x3 figure is wider than tall: ${width}x${height}`);
  }));

test('a pandas DataFrame as last expression gives an HTML result', T, () =>
  inSandbox(async (sbx) => {
    const e = ok(await sbx.runCode('import pandas as pd\npd.DataFrame({"alpha": [11, 22], "beta": [33, 44]})'));
    assert.equal(e.results.length, 1);
    const html = e.results[0].html;
    assert.equal(typeof html, 'string');
    assert.match(html, /<table/);
    for (const v of ['alpha', 'beta', '11', '22', '33', '44']) assert.ok(html.includes(v), `html has ${v}`);
    assert.match(e.results[0].text, /alpha\s+beta/);
  }));

test("runCode('1/0') reports ZeroDivisionError", T, () =>
  inSandbox(async (sbx) => {
    const errors = [];
    const e = await sbx.runCode('1/0', { onError: (err) => errors.push(err) });
    assert.ok(e.error, 'execution.error is set');
    assert.equal(e.error.name, 'ZeroDivisionError');
    assert.match(e.error.value, /division by zero/);
    assert.equal(typeof e.error.traceback, 'string');
    assert.match(e.error.traceback, /ZeroDivisionError/);
    assert.deepEqual(e.results, []);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].name, 'ZeroDivisionError');
    // the context survives the error
    assert.equal(ok(await sbx.runCode('2 + 2')).text, '4');
  }));

test('printed output reaches onStdout/onStderr and execution.logs', T, () =>
  inSandbox(async (sbx) => {
    const out = [];
    const err = [];
    const e = ok(await sbx.runCode('import sys, time\nprint("hello out")\ntime.sleep(0.2)\nprint("bye out")\nprint("to err", file=sys.stderr)', {
      onStdout: (m) => out.push(m),
      onStderr: (m) => err.push(m),
    }));
    assert.equal(out.map((m) => m.line).join(''), 'hello out\nbye out\n');
    assert.equal(err.map((m) => m.line).join(''), 'to err\n');
    assert.ok(out.every((m) => m.error === false));
    assert.ok(err.every((m) => m.error === true));
    assert.equal(e.logs.stdout.join(''), 'hello out\nbye out\n');
    assert.equal(e.logs.stderr.join(''), 'to err\n');
  }));

test('a python context created with createCodeContext has its own state', T, () =>
  inSandbox(async (sbx) => {
    const ctx = await sbx.createCodeContext({ language: 'python' });
    assert.match(ctx.id, /\S/);
    assert.equal(ctx.language, 'python');
    ok(await sbx.runCode('who = "default"'));
    ok(await sbx.runCode('who = "mine"', { context: ctx }));
    assert.equal(ok(await sbx.runCode('who')).text, "'default'");
    assert.equal(ok(await sbx.runCode('who', { context: ctx })).text, "'mine'");
    // cwd of a context
    const inTmp = await sbx.createCodeContext({ language: 'python', cwd: '/tmp' });
    assert.equal(inTmp.cwd, '/tmp');
    assert.equal(ok(await sbx.runCode('import os; os.getcwd()', { context: inTmp })).text, "'/tmp'");
    assert.equal(ok(await sbx.runCode('import os; os.getcwd()')).text, "'/home/user'");
  }));

test("a JavaScript context: createCodeContext({language: 'js'})", T, () =>
  inSandbox(async (sbx) => {
    const js = await sbx.createCodeContext({ language: 'js' });
    assert.match(js.id, /\S/);
    assert.equal(ok(await sbx.runCode('const a = 2; a * 21', { context: js })).text, '42');
    // state persists in the context
    assert.equal(ok(await sbx.runCode('a + 1', { context: js })).text, '3');
    // top-level await
    assert.equal(ok(await sbx.runCode('await new Promise((r) => setTimeout(() => r(7), 20)) * 6', { context: js })).text, '42');
    // console output
    const out = [];
    ok(await sbx.runCode('console.log("from js")', { context: js, onStdout: (m) => out.push(m.line) }));
    assert.equal(out.join(''), 'from js\n');
    // a thrown error
    const bad = await sbx.runCode('throw new TypeError("bad js")', { context: js });
    assert.ok(bad.error, 'execution.error is set');
    assert.equal(bad.error.name, 'TypeError');
    assert.match(bad.error.value, /bad js/);
  }));

test("runCode(code, {language: 'js'}) and {language: 'javascript'}", T, () =>
  inSandbox(async (sbx) => {
    assert.equal(ok(await sbx.runCode('[1, 2, 3].map((v) => v * 2).reduce((s, v) => s + v)', { language: 'js' })).text, '12');
    assert.equal(ok(await sbx.runCode('40 + 2', { language: 'javascript' })).text, '42');
    // python is still the default language
    assert.equal(ok(await sbx.runCode('"py" * 2')).text, "'pypy'");
  }));

test('listCodeContexts, removeCodeContext and restartCodeContext', T, () =>
  inSandbox(async (sbx) => {
    const a = await sbx.createCodeContext({ language: 'python' });
    const b = await sbx.createCodeContext({ language: 'python' });
    let ids = (await sbx.listCodeContexts()).map((c) => c.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id), `listed: ${JSON.stringify(ids)}`);
    const listedA = (await sbx.listCodeContexts()).find((c) => c.id === a.id);
    assert.equal(listedA.language, 'python');

    await sbx.removeCodeContext(b);
    ids = (await sbx.listCodeContexts()).map((c) => c.id);
    assert.ok(ids.includes(a.id));
    assert.ok(!ids.includes(b.id), 'removed context is not listed');
    // (a short requestTimeoutMs: the SDK leaves its request timer running when a request fails)
    await assert.rejects(sbx.runCode('1', { context: b, requestTimeoutMs: 3000 }), NotFoundError);

    ok(await sbx.runCode('kept = 5', { context: a }));
    assert.equal(ok(await sbx.runCode('kept', { context: a })).text, '5');
    await sbx.restartCodeContext(a);
    const after = await sbx.runCode('kept', { context: a });
    assert.ok(after.error, 'state is gone after a restart');
    assert.equal(after.error.name, 'NameError');
    assert.equal(ok(await sbx.runCode('1 + 1', { context: a })).text, '2');
    // by id as well
    await sbx.removeCodeContext(a.id);
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === a.id));
  }));

test('runCode that outlives its timeoutMs fails with TimeoutError', T, () =>
  inSandbox(async (sbx) => {
    const t0 = Date.now();
    await assert.rejects(sbx.runCode('import time\ntime.sleep(20)', { timeoutMs: 1500 }), (e) => {
      assert.ok(e instanceof TimeoutError, `${e?.constructor?.name}: ${e?.message}`);
      return true;
    });
    assert.ok(Date.now() - t0 < 8000);
  }));
