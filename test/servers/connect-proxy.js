'use strict';
// A minimal HTTP CONNECT proxy for the websocket tests (lws tunnels ws:// through http_proxy):
// every CONNECT to host:port is piped both ways. Prints "PORT <n>" once listening.
//
//   node connect-proxy.js [--port N]
const http = require('http');
const net = require('net');
const common = require('./common');
const opts = common.parseArgs(process.argv.slice(2), { port: 0 }, 'connect-proxy.js', '');
const server = http.createServer((req, res) => { res.writeHead(405); res.end(); });
server.on('connect', (req, client, head) => {
  const [host, port] = req.url.split(':');
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
