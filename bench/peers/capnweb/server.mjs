// The capnweb peer of `dotdo bench`: the npm `capnweb` reference server with the API the
// rpc-* scenarios call, so the same load generator measures it and dotdo in the same run:
//   echo(x) → x;  object(name) → { things(c) → { get(id), create(data) } }
// POST /rpc is one HTTP batch; an upgrade on /rpc is a WebSocket session. Things live in
// memory here (dotdo reads them from the object's SQLite database).
// GET /health answers "ok" (the HTTP floor of Node).
//   node --experimental-websocket server.mjs [port]   (prints "listening http://…")
import http from "node:http";
import { WebSocketServer } from "ws";
import { RpcTarget, newWebSocketRpcSession, nodeHttpBatchRpcResponse } from "capnweb";

const objects = new Map();

class Collection extends RpcTarget {
  constructor(store) { super(); this.store = store; }
  get(id) {
    const t = this.store.get(id);
    if (!t) throw new Error(`no thing \`${id}\``);
    return t;
  }
  create(data) {
    const t = { ...data, version: 1 };
    this.store.set(data.id, t);
    return t;
  }
}

class ObjectApi extends RpcTarget {
  constructor(name) { super(); this.name = name; }
  things(collection) {
    let byCollection = objects.get(this.name);
    if (!byCollection) objects.set(this.name, (byCollection = new Map()));
    let store = byCollection.get(collection);
    if (!store) byCollection.set(collection, (store = new Map()));
    return new Collection(store);
  }
}

class Api extends RpcTarget {
  echo(x) { return x; }
  object(name) { return new ObjectApi(name); }
}

const server = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  } else if (req.url === "/rpc") {
    nodeHttpBatchRpcResponse(req, res, new Api()).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
  } else {
    res.writeHead(404);
    res.end();
  }
});
const wss = new WebSocketServer({ server, path: "/rpc" });
wss.on("connection", (ws) => newWebSocketRpcSession(ws, new Api()));
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
