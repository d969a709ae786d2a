// Preload for test peers: every TCP listen() binds to the loopback interface.
//
//   node --require /path/to/loopback.cjs server.js ...
//
// Some peers (server-everything among them) call `listen(port)` without a
// host, which binds every interface. Tests must never expose a server beyond
// this machine, so this file wraps `net.Server.prototype.listen` (inherited by
// http, https and express servers) and replaces whatever host was asked for
// with 127.0.0.1 (or VMCP_PEER_LISTEN_HOST when set to another loopback
// address). Unix-socket and handle listens are left alone.
"use strict";

const net = require("node:net");

const HOST = process.env.VMCP_PEER_LISTEN_HOST || "127.0.0.1";
if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(HOST)) {
  throw new Error(`loopback.cjs: VMCP_PEER_LISTEN_HOST must be a loopback address, got ${HOST}`);
}

const originalListen = net.Server.prototype.listen;

function isPort(value) {
  return (
    typeof value === "number" ||
    (typeof value === "string" && /^\s*\d+\s*$/.test(value))
  );
}

function forceLoopback(args) {
  if (args.length === 0 || typeof args[0] === "function") {
    // listen() / listen(callback): random port on all interfaces by default.
    return [{ port: 0, host: HOST }, ...args];
  }
  const [first, ...rest] = args;
  if (isPort(first) || first === null || first === undefined) {
    // listen(port[, host][, backlog][, callback])
    if (rest.length > 0 && (typeof rest[0] === "string" || rest[0] === null || rest[0] === undefined)) {
      rest.shift();
    }
    return [Number(first ?? 0), HOST, ...rest];
  }
  if (typeof first === "object" && !("path" in first) && !("fd" in first) && !("_handle" in first) && !("handle" in first)) {
    // listen(options[, callback])
    return [{ ...first, host: HOST, ipv6Only: false }, ...rest];
  }
  return args; // pipe path, handle or fd: not a TCP interface choice
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  return originalListen.apply(this, forceLoopback(args));
};
