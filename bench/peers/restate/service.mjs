// The Restate peer of `dotdo bench`: a virtual object `counter` (keyed like a durable object)
// whose `do` handler runs one durable no-op step, so `POST /counter/{key}/do` at Restate's
// ingress is the same request as dotdo's do-action.
//   node service.mjs [port]   (an HTTP/2 endpoint; prints "listening http://…")
import http2 from "node:http2";

// The SDK needs Promise.withResolvers, which Node 20 lacks.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((a, b) => {
      resolve = a;
      reject = b;
    });
    return { promise, resolve, reject };
  };
}
const restate = await import("@restatedev/restate-sdk");

const counter = restate.object({
  name: "counter",
  handlers: {
    do: async (ctx) => {
      await ctx.run("noop", () => null);
      return { ok: true };
    },
  },
});

const server = http2.createServer(restate.createEndpointHandler({ services: [counter] }));
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
