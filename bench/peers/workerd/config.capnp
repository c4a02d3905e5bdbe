# The workerd peer of `dotdo bench`. Started by scripts/bench as
#   workerd serve config.capnp -s http=127.0.0.1:PORT -d do-storage=DIR
# so the socket's address and the objects' directory are chosen at start.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "do-storage", disk = (writable = true)),
  ],
  sockets = [(name = "http", address = "127.0.0.1:8080", http = (), service = "main")],
);

const worker :Workerd.Worker = (
  modules = [(name = "worker.js", esModule = embed "worker.js")],
  compatibilityDate = "2025-09-01",
  durableObjectNamespaces = [
    (className = "Counter", uniqueKey = "dotdo-bench-counter", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [(name = "COUNTER", durableObjectNamespace = "Counter")],
);
