'use strict';
// Raw websocket peer for the websocket transport tests: frames are built by hand so that the
// server can do what a library would not (fragments, huge length claims, no pongs).
//
//   node ws-fragment-server.js [--port N] [--tls 1 [--cert FILE --key FILE]]
//
// Prints "PORT <n>" on stdout once listening. With --tls 1 it serves wss:// (and https://) with
// common.TEST_CERT (self-signed, CA:TRUE, for IP 127.0.0.1 and DNS localhost, valid until 2126;
// the websocket test embeds the same PEM as its ca_file; a test key, never a secret), or with the
// PEM certificate (chain) and key in --cert and --key (the TLS tests make theirs at start).
//
// A plain HTTP request to /headers (any method) is answered 200 with the request's headers as a
// JSON object, like the upgrade to /headers below; to /cookie the same, setting BAYEUX_BROWSER
// as the upgrade to /cookie does; GET /stats with {"upgrades":{"<path>":N,...},
// "ended":N}: the upgrades accepted per path, and the connections the server ended itself
// (/close, /burst-end) so far. Any other request is refused with 404.
//
// Every upgrade is accepted; the request path picks what the server does right after the 101:
//   /fragment  one text message in three fragments (text FIN=0, ping, continuation FIN=0,
//              continuation FIN=1): [{"channel":"/frag","data":"<3000 x>","parts":3}]
//   /headers   one text message: the upgrade request's headers as a JSON object
//   /huge      a text frame header announcing 2^40 bytes, then 64 KiB of payload, then silence
//   /huge-header  the same header alone, then silence (a reader that waits for payload stalls)
//   /close     a close frame (code 4000, reason "bye"), then ends the connection
//   /silent    nothing at all, and never answers a ping
//   /ping      a ping with payload "are-you-there"; each frame the client sends is unmasked and
//              answered with a text message [{"channel":"/seen","op":N,"masked":B,"data":"<payload>"}]
//              (so a pong comes back as op 10 with the ping's payload, a text frame as op 1)
//   /masked    a masked text frame (servers must not mask)
//   /bad-accept  a 101 whose Sec-WebSocket-Accept does not match the key
//   /burst     five text messages [{"channel":"/b","n":1..5}] in one write
//   /burst-end the same, then ends the connection 100 ms later
//   /burst-close-end  the five messages and a close frame (4000 "bye") in one write, then ends
//              the connection 100 ms later
//   /stream    20,000 messages [{"channel":"/s","n":1..20000}], one per frame, in one write
//   /burst-ping  message n=1, a ping "p1", message n=2, in one write
//   /burst-masked  messages n=1 and n=2, then a masked frame, in one write
//   /flood-noread  never reads what the client sends; a 1 KB message every 2 ms
//   /cookie    like /headers, and the 101 sets BAYEUX_BROWSER (a new value for each upgrade
//              without it: 1x, 2x, ...), as CometD's server does on its handshake
// Anything else is refused with HTTP 404.

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const common = require('./common');

// --cert and --key take file names, which common.parseArgs (numbers only) does not.
const files = { cert: null, key: null };
const argv = [];
for (let i = 2; i < process.argv.length; ++i) {
  const m = /^--(cert|key)(?:=(.*))?$/.exec(process.argv[i]);
  if (!m) {
    argv.push(process.argv[i]);
  } else {
    files[m[1]] = m[2] !== undefined ? m[2] : process.argv[++i];
  }
}
const usageTail = ' [--tls 1 [--cert FILE --key FILE]]';
const opts = common.parseArgs(argv, { port: 0, tls: 0 }, 'ws-fragment-server.js', usageTail);
if (!files.cert !== !files.key || (files.cert && !opts.tls)) {
  process.stderr.write('--cert and --key go together, with --tls 1\n');
  process.exit(2);
}

const { TEST_CERT, TEST_KEY } = common;

function frame(opcode, fin, payload) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  let head;
  if (body.length < 126) {
    head = Buffer.from([(fin ? 0x80 : 0) | opcode, body.length]);
  } else if (body.length < 65536) {
    head = Buffer.from([(fin ? 0x80 : 0) | opcode, 126, body.length >> 8, body.length & 0xff]);
  } else {
    head = Buffer.alloc(10);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(body.length), 2);
  }
  return Buffer.concat([head, body]);
}

const stats = { upgrades: {}, ended: 0 };

// Ends the connection from the server's side (a FIN), counted in /stats.
function endSocket(socket) {
  ++stats.ended;
  socket.end();
}

const behaviours = {
  '/fragment': socket => {
    const parts = ['[{"channel":"/frag",', '"data":"' + 'x'.repeat(3000) + '",', '"parts":3}]'];
    socket.write(frame(0x1, false, parts[0]));
    socket.write(frame(0x9, true, 'between'));   // a control frame inside the message is legal
    socket.write(frame(0x0, false, parts[1]));
    setTimeout(() => socket.write(frame(0x0, true, parts[2])), 50);  // the rest arrives later
  },
  '/headers': (socket, req) => socket.write(frame(0x1, true, JSON.stringify(req.headers))),
  '/cookie': (socket, req) => socket.write(frame(0x1, true, JSON.stringify(req.headers))),
  '/huge': socket => {
    const head = Buffer.alloc(10);
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(1n << 40n, 2);
    socket.write(Buffer.concat([head, Buffer.alloc(65536, 0x78)]));
  },
  '/huge-header': socket => {
    const head = Buffer.alloc(10);
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(1n << 40n, 2);
    socket.write(head);
  },
  '/close': socket => {
    const payload = Buffer.concat([Buffer.from([4000 >> 8, 4000 & 0xff]), Buffer.from('bye')]);
    socket.write(frame(0x8, true, payload));
    setTimeout(() => endSocket(socket), 50);
  },
  '/silent': () => {},
  '/ping': socket => {
    socket.write(frame(0x9, true, 'are-you-there'));
    let buf = Buffer.alloc(0);
    socket.on('data', chunk => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const f = readClientFrame(buf);
        if (!f) break;
        buf = buf.subarray(f.size);
        socket.write(frame(0x1, true, JSON.stringify(
          [{ channel: '/seen', op: f.opcode, masked: f.masked, data: f.payload.toString('utf8') }])));
      }
    });
  },
  '/burst': socket => socket.write(burst()),
  '/stream': socket => {
    const fs = [];
    for (let i = 1; i <= 20000; i++) fs.push(frame(0x1, true, JSON.stringify([{ channel: '/s', n: i }])));
    socket.write(Buffer.concat(fs));
  },
  '/burst-close-end': socket => {
    const close = Buffer.concat([Buffer.from([4000 >> 8, 4000 & 0xff]), Buffer.from('bye')]);
    socket.write(Buffer.concat([burst(), frame(0x8, true, close)]));
    setTimeout(() => endSocket(socket), 100);
  },
  '/burst-end': socket => {
    socket.write(burst());
    setTimeout(() => endSocket(socket), 100);
  },
  '/burst-ping': socket => {
    socket.write(Buffer.concat([frame(0x1, true, '[{"channel":"/b","n":1}]'), frame(0x9, true, 'p1'),
                                frame(0x1, true, '[{"channel":"/b","n":2}]')]));
  },
  '/burst-masked': socket => {
    const payload = Buffer.from('[{"channel":"/masked"}]');
    const key = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
    socket.write(Buffer.concat([frame(0x1, true, '[{"channel":"/b","n":1}]'),
                                frame(0x1, true, '[{"channel":"/b","n":2}]'),
                                Buffer.from([0x81, 0x80 | masked.length]), key, masked]));
  },
  '/flood-noread': socket => {
    socket.pause();
    const f = frame(0x1, true, JSON.stringify([{ channel: '/f', data: 'y'.repeat(1000) }]));
    const t = setInterval(() => { if (!socket.destroyed) socket.write(f); else clearInterval(t); }, 2);
    socket.on('close', () => clearInterval(t));
  },
  '/masked': socket => {
    const payload = Buffer.from('[{"channel":"/masked"}]');
    const key = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
    socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | masked.length]), key, masked]));
  },
};

function burst() {
  const fs = [];
  for (let i = 1; i <= 5; i++) fs.push(frame(0x1, true, JSON.stringify([{ channel: '/b', n: i }])));
  return Buffer.concat(fs);
}

// One client frame from the front of `buf` (null until it is complete).
function readClientFrame(buf) {
  if (buf.length < 2) return null;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f, at = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const key = masked ? buf.subarray(at, at + 4) : null;
  if (masked) at += 4;
  if (buf.length < at + len) return null;
  const payload = Buffer.from(buf.subarray(at, at + len));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i % 4];
  return { opcode: buf[0] & 0x0f, masked, payload, size: at + len };
}

// The Set-Cookie value for a request to /cookie that carries no BAYEUX_BROWSER, else ''.
let browsers = 0;
function browserCookie(req) {
  if (/(^|;\s*)BAYEUX_BROWSER=/.test(req.headers.cookie || '')) return '';
  return 'BAYEUX_BROWSER=' + (++browsers) + 'x; Path=/';
}

const onRequest = (req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    if (path === '/cookie') {
      const cookie = browserCookie(req);
      if (cookie) res.setHeader('Set-Cookie', cookie);
      common.sendJson(res, 200, req.headers);
    } else if (path === '/headers') {
      common.sendJson(res, 200, req.headers);
    } else if (path === '/stats' && req.method === 'GET') {
      common.sendJson(res, 200, stats);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
};
const tlsFiles = files.cert ? { cert: fs.readFileSync(files.cert), key: fs.readFileSync(files.key) }
                            : { cert: TEST_CERT, key: TEST_KEY };
const server = opts.tls ? https.createServer(tlsFiles, onRequest) : http.createServer(onRequest);

server.on('upgrade', (req, socket) => {
  socket.on('error', () => {});
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  const behaviour = behaviours[path] || (path === '/bad-accept' ? () => {} : null);
  const key = req.headers['sec-websocket-key'];
  if (!behaviour || !key) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = path === '/bad-accept' ? 'dGhlIHNhbXBsZSBub25jZQ=='
    : crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  const cookie = path === '/cookie' ? browserCookie(req) : '';
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
               'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n' +
               (cookie ? 'Set-Cookie: ' + cookie + '\r\n' : '') + '\r\n');
  common.debug('upgrade', path);
  stats.upgrades[path] = (stats.upgrades[path] || 0) + 1;
  // Read and drop what the client sends, except where the route reads (or never reads) itself.
  if (path !== '/ping' && path !== '/flood-noread') socket.on('data', () => {});
  if (behaviours[path]) behaviours[path](socket, req);
});

common.listen(server, opts.port);
