'use strict';
// A minimal HTTP CONNECT proxy for the websocket tests (the transport tunnels ws:// and wss://
// through http_proxy): every CONNECT to host:port is piped both ways, except one to port 1,
// which is refused with 403. GET /control/stats answers {"connects": N} (the tunnels opened).
// Prints "PORT <n>" once listening.
//
//   node connect-proxy.js [--port N]
const http = require('http');
const net = require('net');
const common = require('./common');
const opts = common.parseArgs(process.argv.slice(2), { port: 0 }, 'connect-proxy.js', '');
let connects = 0;
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/control/stats') {
    common.sendJson(res, 200, { connects });
    return;
  }
  res.writeHead(405);
  res.end();
});
server.on('connect', (req, client, head) => {
  const [host, port] = req.url.split(':');
  client.on('error', () => {});
  if (Number(port) === 1) {
    client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  ++connects;
  const up = net.connect(Number(port), host, () => {
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    if (head && head.length) up.write(head);
    up.pipe(client);
    client.pipe(up);
  });
  up.on('error', () => client.destroy());
  client.on('error', () => up.destroy());
});
common.listen(server, opts.port);
