// The npm `capnweb` client, unchanged, against a running dotdo: HTTP batch and WebSocket.
//   DOTDO_URL=http://127.0.0.1:4000 node --experimental-websocket test.mjs
// Exits 0 when every check passes, 1 on the first failure.
import { newHttpBatchRpcSession, newWebSocketRpcSession } from "capnweb";
import assert from "node:assert/strict";

const base = process.env.DOTDO_URL ?? "http://127.0.0.1:4000";
const wsBase = base.replace(/^http/, "ws");
const object = process.env.DOTDO_OBJECT ?? `interop-${Date.now()}`;
// `verify`: only check that what an earlier full run wrote is still there (after a restart).
const verifyOnly = process.env.DOTDO_PHASE === "verify";

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line.split(" ")[1]);
}

async function eventually(what, f, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const checks = [];
function check(name, f) {
  checks.push([name, f]);
}

const root = () => newHttpBatchRpcSession(`${base}/rpc`);

check("setup over one batch: things created through the object's own endpoint", async () => {
  const api = newHttpBatchRpcSession(`${base}/${object}/rpc`);
  const contacts = api.things("contacts");
  const made = await Promise.all([
    contacts.create({ id: "john", name: "John", company: "acme" }),
    contacts.create({ id: "jane", name: "Jane", company: "acme" }),
    api.things("refs").create({ id: "r1", contact: "jane" }),
  ]);
  assert.deepEqual(made.map((t) => t.id), ["john", "jane", "r1"]);
  assert.equal(made[0].$id, `${base}/${object}/contacts/john`);
  assert.equal(made[0].version, 1);
});

check("a chain of three dependent calls is ONE HTTP request", async () => {
  const before = await metric("dotdo_rpc_batches_total");
  const name = await root().object(object).things("contacts").get("john").name;
  assert.equal(name, "John");
  assert.equal(await metric("dotdo_rpc_batches_total"), before + 1);
});

check("a promise as an argument (pipelined, same request)", async () => {
  const before = await metric("dotdo_rpc_batches_total");
  const o = root().object(object);
  const who = o.things("contacts").get(o.things("refs").get("r1").contact);
  assert.equal(await who.name, "Jane");
  assert.equal(await metric("dotdo_rpc_batches_total"), before + 1);
});

const sample = {
  s: "x", n: 1.5, i: 42, big: -12345678901234567890n, d: new Date(1700000000000),
  b: new Uint8Array([0, 1, 254, 255]), a: [1, ["two", [3]], []], u: undefined,
  inf: Infinity, ninf: -Infinity, nan: NaN, nul: null, o: { deep: { er: true } },
  e: new RangeError("oops"), url: new URL("https://example.com/a?b=c"),
};

check("every special value round-trips (echo)", async () => {
  const got = await root().echo(sample);
  assert.equal(got.big, sample.big);
  assert.equal(got.d.getTime(), sample.d.getTime());
  assert.deepEqual([...got.b], [...sample.b]);
  assert.deepEqual(got.a, sample.a);
  assert.ok("u" in got && got.u === undefined);
  assert.equal(got.inf, Infinity);
  assert.equal(got.ninf, -Infinity);
  assert.ok(Number.isNaN(got.nan));
  assert.equal(got.nul, null);
  assert.deepEqual(got.o, sample.o);
  assert.ok(got.e instanceof RangeError);
  assert.equal(got.e.message, "oops");
  assert.equal(String(got.url), String(sample.url));
  assert.equal(got.i, 42);
  assert.equal(got.n, 1.5);
});

check("bytes are stored as bytes (storage.put / get)", async () => {
  const api = root();
  const storage = api.object(object).storage;
  await storage.put("blob", new Uint8Array([9, 8, 7]));
  const back = await root().object(object).storage.get("blob");
  assert.deepEqual([...back], [9, 8, 7]);
  const rows = await root().object(object).storage.sql("SELECT ? + ? AS n", 2, 3);
  assert.deepEqual(rows.rows, [[5]]);
});

check("map() over a remote list, with a captured stub", async () => {
  // A batch session ends with its request, so each awaited step takes a new one.
  const names = await root().object(object).things("contacts").list({ sort: "id" }).items
    .map((c) => c.name);
  assert.deepEqual(names, ["Jane", "John"]);
  const api = root();
  const echoed = await api.object(object).things("contacts").list({ sort: "id" }).items.map((c) => api.echo(c.id));
  assert.deepEqual(echoed, ["jane", "john"]);
});

check("errors are rejected promises with code and status", async () => {
  const missing = await root().object(object).things("contacts").get("nobody").then(
    () => null, (e) => e);
  assert.ok(missing instanceof Error);
  assert.equal(missing.code, "NOT_FOUND");
  assert.equal(missing.status, 404);
  const noMethod = await root().object(object).frobnicate().then(() => null, (e) => e);
  assert.ok(noMethod instanceof TypeError);
  assert.equal(noMethod.message, "'frobnicate' is not a function.");
  const badName = await root().object("_bad").things("x").get("y").then(() => null, (e) => e);
  assert.equal(badName.code, "BAD_REQUEST");
  const conflict = await root().object(object).things("contacts").create({ id: "john" }).then(
    () => null, (e) => e);
  assert.equal(conflict.code, "CONFLICT");
});

check("events emitted over RPC are in the log", async () => {
  const e = await root().object(object).emit("Interop.pinged", { n: 1 });
  assert.equal(e.type, "Interop.pinged");
  const page = await root().object(object).events({ type: "Interop.*" });
  assert.ok(page.items.some((x) => x.id === e.id));
});

check("WebSocket: stubs, callbacks, release, and one session for many batches", async () => {
  const ws = newWebSocketRpcSession(`${wsBase}/rpc`);
  // A stub returned by the server, awaited and used later.
  const o = await ws.object(object);
  const contacts = await o.things("contacts");
  assert.equal((await contacts.get("john")).name, "John");
  // Server → client calls: the subscription calls our callback for each new event.
  const seen = [];
  const sub = await o.subscribe((ev) => { seen.push(ev.data.n); }, { type: "Tick.*" });
  for (let n = 1; n <= 3; n++) await o.emit("Tick.happened", { n });
  await eventually("three callbacks", () => seen.length >= 3);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(await sub.cancel(), true);
  // Release: disposing stubs lets the server drop them.
  const live = await metric("dotdo_rpc_targets_live");
  const extra = await o.things("companies");
  assert.equal(await metric("dotdo_rpc_targets_live"), live + 1);
  extra[Symbol.dispose]();
  await eventually("the released stub to be dropped", async () =>
    (await metric("dotdo_rpc_targets_live")) === live);
  // Many rounds on one session.
  for (let round = 0; round < 50; round++) {
    const [a, b, c] = await Promise.all([
      ws.object(object).things("contacts").get("jane").name,
      contacts.get("john").version,
      ws.echo(round),
    ]);
    assert.deepEqual([a, b, c], ["Jane", 1, round]);
  }
  sub[Symbol.dispose]();
  contacts[Symbol.dispose]();
  o[Symbol.dispose]();
  ws[Symbol.dispose]();
  await eventually("the session's stubs to be dropped", async () =>
    (await metric("dotdo_rpc_websocket_sessions_open")) === 0);
});

check("the object's own endpoint over WebSocket", async () => {
  const ws = newWebSocketRpcSession(`${wsBase}/${object}/rpc`);
  const t = await ws.things("contacts").update("jane", { title: "CEO" });
  assert.equal(t.title, "CEO");
  assert.equal(t.version, 2);
  const hits = await ws.search("Jane");
  assert.ok(hits.items.length >= 1);
  ws[Symbol.dispose]();
});

if (verifyOnly) checks.length = 0;
check("what the run wrote is there, over both transports", async () => {
  const jane = await root().object(object).things("contacts").get("jane");
  assert.equal(jane.title, "CEO");
  assert.equal(jane.version, 2);
  const ws = newWebSocketRpcSession(`${wsBase}/${object}/rpc`);
  const page = await ws.things("contacts").list({ sort: "id" });
  assert.deepEqual(page.items.map((t) => t.id), ["jane", "john"]);
  assert.deepEqual([...(await ws.storage.get("blob"))], [9, 8, 7]);
  ws[Symbol.dispose]();
});

let failed = 0;
for (const [name, f] of checks) {
  try {
    await f();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${e?.stack ?? e}`);
  }
}
console.log(failed ? `${failed} of ${checks.length} failed` : `all ${checks.length} passed`);
process.exit(failed ? 1 : 0);
