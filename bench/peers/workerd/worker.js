// The workerd peer of `dotdo bench`: a SQLite-backed Durable Object class with the routes of
// dotdo's bench class (crates/cli/src/bench/class.rs), so the same requests drive both.
//   GET  /health                     → ok (the worker alone: the HTTP floor)
//   GET  /counter/{name}             → { n }
//   POST /counter/{name}/incr        → { n }   UPDATE … RETURNING in ctx.storage.sql
//   PUT  /counter/{name}/kv/{key}    → 204     the body stored under key
//   POST /counter/{name}/call/{peer} → { n }   incr on another object over Workers RPC
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);" +
        "INSERT OR IGNORE INTO counter VALUES (1, 0)",
    );
  }

  incr() {
    return this.ctx.storage.sql.exec("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n").one().n;
  }

  async fetch(request) {
    const rest = new URL(request.url).pathname.split("/").slice(3).filter(Boolean);
    const method = request.method;
    if (method === "GET" && rest.length === 0) {
      return Response.json({ n: this.ctx.storage.sql.exec("SELECT n FROM counter").one().n });
    }
    if (method === "POST" && rest[0] === "incr") {
      return Response.json({ n: this.incr() });
    }
    if (method === "PUT" && rest[0] === "kv" && rest[1]) {
      await this.ctx.storage.put(decodeURIComponent(rest[1]), await request.arrayBuffer());
      return new Response(null, { status: 204 });
    }
    if (method === "POST" && rest[0] === "call" && rest[1]) {
      const ns = this.env.COUNTER;
      const n = await ns.get(ns.idFromName(decodeURIComponent(rest[1]))).incr();
      return Response.json({ n });
    }
    return new Response("not found", { status: 404 });
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/health") return new Response("ok");
    const m = path.match(/^\/counter\/([^/]+)/);
    if (!m) return new Response("not found", { status: 404 });
    return env.COUNTER.get(env.COUNTER.idFromName(decodeURIComponent(m[1]))).fetch(request);
  },
};
