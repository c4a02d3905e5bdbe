// The official MCP TypeScript SDK client against a running dotdo, over streamable HTTP and
// over stdio (`dotdo mcp`).
//   DOTDO_URL=http://127.0.0.1:4000 DOTDO_BIN=target/debug/dotdo node test.mjs
// Exits 0 when every check passes, 1 otherwise.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ResourceListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import assert from "node:assert/strict";

const base = process.env.DOTDO_URL ?? "http://127.0.0.1:4000";
const bin = process.env.DOTDO_BIN ?? "dotdo";
const object = `mcp-${Date.now()}`;

async function connect(url) {
  const client = new Client({ name: "dotdo-interop", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

/// A tool's JSON result, failing the check if the tool reported an error.
async function ok(client, name, args) {
  const r = await client.callTool({ name, arguments: args });
  assert.ok(!r.isError, `${name} failed: ${JSON.stringify(r.content)}`);
  return r.structuredContent ?? JSON.parse(r.content[0].text);
}

/// A tool's error, failing the check if it succeeded.
async function fails(client, name, args) {
  const r = await client.callTool({ name, arguments: args });
  assert.equal(r.isError, true, `${name} should fail: ${JSON.stringify(r.content)}`);
  return JSON.parse(r.content[0].text).error;
}

async function eventually(what, f, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const checks = [];
const check = (name, f) => checks.push([name, f]);
let john;

check("streamable HTTP: tools are listed with schemas that ask for the object", async () => {
  const client = await connect(`${base}/mcp`);
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const n of ["things_list", "things_get", "things_create", "things_update", "things_delete",
    "things_history", "relationships_link", "relationships_unlink", "relationships_related",
    "search", "events_emit", "events_list", "actions_run", "actions_status", "schedules_create",
    "schedules_list", "schedules_delete", "dlq_list", "dlq_replay", "sql_query"]) {
    assert.ok(names.includes(n), `missing tool ${n}`);
  }
  for (const t of tools) {
    assert.equal(t.inputSchema.type, "object");
    assert.ok(t.inputSchema.required.includes("object"), t.name);
    assert.ok(t.description.length > 30, t.name);
  }
  await client.close();
});

check("create, link, search, emit, and list changes are notified", async () => {
  const client = await connect(`${base}/mcp`);
  let changed = 0;
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => { changed++; });
  john = await ok(client, "things_create", {
    object, collection: "contacts", data: { id: "john", name: "John Smith", title: "buyer" },
  });
  assert.equal(john.$id, `${base}/${object}/contacts/john`);
  assert.equal(john.version, 1);
  await ok(client, "things_create", { object, collection: "companies", data: { id: "acme", name: "Acme Corp" } });
  await eventually("a resources/list_changed notification", () => changed > 0);
  const link = await ok(client, "relationships_link", {
    object, from: "contacts/john", verb: "worksAt", to: "companies/acme",
  });
  assert.equal(link.verb, "worksAt");
  const related = await ok(client, "relationships_related", { object, thing: "contacts/john", verb: "worksAt" });
  assert.equal(related.items.length, 1);
  const hits = await ok(client, "search", { object, q: "Smith" });
  assert.equal(hits.items[0].thing.id, "john");
  assert.equal(hits.items[0].thing.$id, john.$id);
  const ev = await ok(client, "events_emit", { object, type: "Deal.won", data: { amount: 100 } });
  const log = await ok(client, "events_list", { object, type: "Deal.*" });
  assert.ok(log.items.some((e) => e.id === ev.id));
  const updated = await ok(client, "things_update", {
    object, collection: "contacts", id: "john", patch: { title: "CEO" }, version: 1,
  });
  assert.equal(updated.title, "CEO");
  const stale = await fails(client, "things_update", {
    object, collection: "contacts", id: "john", patch: { title: "x" }, version: 1,
  });
  assert.equal(stale.code, "CONFLICT");
  const page = await ok(client, "things_list", { object, collection: "contacts", where: { title: "CEO" } });
  assert.equal(page.items.length, 1);
  await client.close();
});

check("a thing is a resource at its $id URL; collections and templates are listed", async () => {
  const client = await connect(`${base}/mcp`);
  const read = await client.readResource({ uri: john.$id });
  const body = JSON.parse(read.contents[0].text);
  assert.equal(body.name, "John Smith");
  assert.equal(body.title, "CEO");
  assert.equal(read.contents[0].mimeType, "application/json");
  const { resources } = await client.listResources();
  assert.ok(resources.some((r) => r.uri === `${base}/${object}/contacts`));
  const { resourceTemplates } = await client.listResourceTemplates();
  assert.ok(resourceTemplates.some((t) => t.uriTemplate.endsWith("/{object}/{collection}/{id}")));
  assert.ok(resourceTemplates.some((t) => t.uriTemplate === `${base}/${object}/contacts/{id}`));
  await assert.rejects(client.readResource({ uri: `${base}/${object}/contacts/nobody` }));
  await assert.rejects(client.readResource({ uri: "https://elsewhere.example/x" }));
  await client.close();
});

check("bad arguments and writes through SQL are tool errors with the API's codes", async () => {
  const client = await connect(`${base}/mcp`);
  const missing = await fails(client, "things_get", { object, collection: "contacts" });
  assert.equal(missing.code, "BAD_REQUEST");
  assert.match(missing.message, /id/);
  const wrongType = await fails(client, "things_create", { object, collection: "contacts", data: "nope" });
  assert.equal(wrongType.code, "BAD_REQUEST");
  const extra = await fails(client, "search", { object, q: "x", bogus: 1 });
  assert.equal(extra.code, "BAD_REQUEST");
  const notFound = await fails(client, "things_get", { object, collection: "contacts", id: "nobody" });
  assert.equal(notFound.code, "NOT_FOUND");
  const write = await fails(client, "sql_query", { object, sql: "CREATE TABLE t (x)" });
  assert.equal(write.code, "BAD_REQUEST");
  assert.match(write.message, /writes/);
  const read = await ok(client, "sql_query", { object, sql: "SELECT ? + 1 AS n", params: [41] });
  assert.deepEqual(read.rows, [[42]]);
  await assert.rejects(client.callTool({ name: "no_such_tool", arguments: {} }), /no tool/);
  await client.close();
});

check("scoped to one object at /{object}/mcp", async () => {
  const client = await connect(`${base}/${object}/mcp`);
  const { tools } = await client.listTools();
  assert.ok(tools.every((t) => !("object" in t.inputSchema.properties)));
  const t = await ok(client, "things_get", { collection: "contacts", id: "john" });
  assert.equal(t.title, "CEO");
  await assert.rejects(client.readResource({ uri: `${base}/other/contacts/john` }));
  await client.close();
});

check("stdio: `dotdo mcp` spawned by the client, proxying to the server", async () => {
  const client = new Client({ name: "dotdo-interop-stdio", version: "1.0.0" });
  await client.connect(new StdioClientTransport({
    command: bin, args: ["mcp", "--url", base, "--object", object], stderr: "inherit",
  }));
  const { tools } = await client.listTools();
  assert.ok(tools.length >= 20);
  const acme = await ok(client, "things_get", { collection: "companies", id: "acme" });
  assert.equal(acme.name, "Acme Corp");
  const read = await client.readResource({ uri: john.$id });
  assert.equal(JSON.parse(read.contents[0].text).id, "john");
  const bad = await fails(client, "things_get", { collection: "companies" });
  assert.equal(bad.code, "BAD_REQUEST");
  // The server's list-changed notification comes through the proxy.
  let changed = 0;
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => { changed++; });
  await ok(client, "things_create", { collection: "companies", data: { id: "globex", name: "Globex" } });
  await eventually("a list_changed notification through stdio", () => changed > 0);
  await client.close();
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
