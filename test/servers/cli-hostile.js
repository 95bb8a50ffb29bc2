'use strict';
// A scripted Bayeux peer for the uvcometd-cli tests: it sends what a real server never would,
// so that the CLI's handling of hostile text (terminal escapes, NUL, invalid UTF-8, pretty-printed
// JSON) and of a server that never answers /meta/disconnect can be checked end to end.
//
//   node cli-hostile.js [--port N]
//
// Prints "PORT <n>" on stdout once listening. Long-polling only (supportedConnectionTypes
// ["long-polling"]); the first path segment of the request picks the behaviour:
//   /refuse        every handshake is refused: error "403::" + HOSTILE_TEXT, advice none
//   /http-error    every request gets HTTP 400 with HOSTILE_TEXT (raw bytes) as its body
//   /ws-close      websocket upgrades are accepted, then closed at once by a close frame (code
//                  4000) whose reason is "bye" + ESC/OSC sequences; plain requests get 404
//   /messages      a working session; once a /meta/subscribe arrived, the held /meta/connect is
//                  answered with the MESSAGES below on the subscribed channel's tree (/hostile/**)
//   /mute-disconnect  a working session whose /meta/disconnect is never answered
//   /bad-encoding  every request gets HTTP 200 "Content-Encoding: gzip" with a body that is not
//                  gzip (the client's decoder fails)
// A working session answers the first /meta/connect at once and holds the later ones for 10 s.
//   GET /control/seen -> {"channels":[...]}: the channels of every Bayeux message received, in
//                        order (all paths).
//
// HOSTILE_TEXT holds: an OSC title sequence, CSI colour and screen-clear sequences, BEL, a NUL
// followed by more text ("after-nul"), a C1 CSI (U+009B), invalid UTF-8 bytes (FF FE), and a
// right-to-left override (U+202E), then "end".

const crypto = require('crypto');
const http = require('http');
const common = require('./common');

const opts = common.parseArgs(process.argv.slice(2), { port: 0 }, 'cli-hostile.js');

// As raw bytes (an HTTP body) and as the content of a JSON string (a Bayeux error text).
const HOSTILE_BYTES = Buffer.concat([
  Buffer.from('denied \x1b]0;owned\x07 \x1b[31mred\x1b[0m \x1b[2J \x00after-nul ', 'latin1'),
  Buffer.from([0xc2, 0x9b]), Buffer.from('1m '), Buffer.from([0xff, 0xfe]),
  Buffer.from(' \u202e end', 'utf8'),
]);
// A JSON text must be valid UTF-8 (the library skips a message that is not), so the two
// replacement characters the raw bytes above turn into are sent here as escapes.
const HOSTILE_JSON_CONTENT = Buffer.concat([
  Buffer.from('denied \\u001b]0;owned\\u0007 \\u001b[31mred\\u001b[0m \\u001b[2J ' +
              '\\u0000after-nul '),
  Buffer.from([0xc2, 0x9b]), Buffer.from('1m \\ufffd\\ufffd'),
  Buffer.from(' \u202e end', 'utf8'),
]);

// Data messages for /messages, each a raw JSON text (invalid UTF-8 cannot come from
// JSON.stringify). `channel` relative to /hostile.
const MESSAGES = [
  // Invalid UTF-8 in a string: a lone Latin-1 byte, FF FE, a truncated 3-byte sequence, an
  // overlong encoding of '/', and an encoded surrogate (ED A0 80).
  Buffer.concat([Buffer.from('{"channel":"/hostile/a","data":{"text":"caf'), Buffer.from([0xe9]),
                 Buffer.from(' '), Buffer.from([0xff, 0xfe]),
                 Buffer.from(' '), Buffer.from([0xe2, 0x82]),
                 Buffer.from(' '), Buffer.from([0xc0, 0xaf]),
                 Buffer.from(' '), Buffer.from([0xed, 0xa0, 0x80]),
                 Buffer.from(' ok \u00e9', 'utf8'), Buffer.from('","n":1}}')]),
  // Pretty-printed data.
  Buffer.from('{"channel":"/hostile/b","data":{\n  "n": 2,\n  "list": [\n    1,\n    2\n  ],\r\n' +
              '\t"s": "keep  these  spaces \\n and \\u00e9"\n}\n}'),
  // Invalid UTF-8 in the channel name.
  Buffer.concat([Buffer.from('{"channel":"/hostile/c'), Buffer.from([0xff]),
                 Buffer.from('","data":3}')]),
  // Valid, after the others: what comes after a skipped message still arrives.
  Buffer.from('{"channel":"/hostile/d","data":4}'),
];

const seen = [];
// Connects held per client: clientId -> { res, timer }.
const held = new Map();
const subscribed = new Set();  // clientIds that subscribed (on /messages)
let nextClient = 1;

function sendFrame(res, parts) {
  const body = Buffer.concat([Buffer.from('['), ...parts.flatMap((p, i) =>
    i === 0 ? [p] : [Buffer.from(','), p]), Buffer.from(']')]);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
}

function json(obj) { return Buffer.from(JSON.stringify(obj)); }

function release(clientId, extra) {
  const h = held.get(clientId);
  if (!h) return false;
  held.delete(clientId);
  clearTimeout(h.timer);
  sendFrame(h.res, [json(h.reply), ...(extra || [])]);
  return true;
}

function handleMessage(route, m, res, replies, later) {
  const reply = { channel: m.channel, id: m.id, successful: true };
  switch (m.channel) {
    case '/meta/handshake':
      if (route === 'refuse') {
        replies.push(Buffer.concat([
          Buffer.from('{"channel":"/meta/handshake","id":' + JSON.stringify(m.id || '1') +
                      ',"successful":false,"advice":{"reconnect":"none"},"error":"403::'),
          HOSTILE_JSON_CONTENT, Buffer.from('"}')]));
        return;
      }
      Object.assign(reply, { version: '1.0', clientId: 'c' + nextClient++,
                             supportedConnectionTypes: ['long-polling'],
                             advice: { reconnect: 'retry', interval: 0, timeout: 10000 } });
      break;
    case '/meta/connect': {
      const first = m.advice && m.advice.timeout === 0;
      if (first) {
        reply.advice = { reconnect: 'retry', interval: 0, timeout: 10000 };
        break;
      }
      later.connect = { reply, clientId: m.clientId };
      return;
    }
    case '/meta/subscribe':
      reply.subscription = m.subscription;
      if (route === 'messages') later.subscribed = m.clientId;
      break;
    case '/meta/unsubscribe':
      reply.subscription = m.subscription;
      break;
    case '/meta/disconnect':
      if (route === 'mute-disconnect') {
        later.mute = true;
        return;
      }
      release(m.clientId);
      break;
    default:
      break;  // a publish: acknowledged
  }
  replies.push(json(reply));
}

const server = http.createServer((req, res) => {
  if (common.handleControl(req, res, { 'GET /control/seen': async () => ({ channels: seen }) })) {
    return;
  }
  const route = new URL(req.url, 'http://127.0.0.1').pathname.split('/')[1] || '';
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    if (route === 'bad-encoding') {
      const body = Buffer.from('this is not gzip');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip',
                           'Content-Length': body.length });
      res.end(body);
      return;
    }
    if (route === 'http-error') {
      res.writeHead(400, { 'Content-Type': 'text/plain', 'Content-Length': HOSTILE_BYTES.length });
      res.end(HOSTILE_BYTES);
      return;
    }
    if (!['refuse', 'messages', 'mute-disconnect'].includes(route) || req.method !== 'POST') {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
      return;
    }
    let messages;
    try {
      messages = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (!Array.isArray(messages)) messages = [messages];
    } catch (e) {
      res.writeHead(400, { 'Content-Length': 0 });
      res.end();
      return;
    }
    const replies = [];
    const later = {};
    for (const m of messages) {
      seen.push(m.channel);
      handleMessage(route, m, res, replies, later);
    }
    if (later.subscribed !== undefined) subscribed.add(later.subscribed);
    if (later.mute) return;  // never answered
    if (later.connect) {
      const { reply, clientId } = later.connect;
      if (route === 'messages' && subscribed.has(clientId)) {
        subscribed.delete(clientId);
        sendFrame(res, [json(reply), ...MESSAGES]);
        return;
      }
      const timer = setTimeout(() => release(clientId), 10000);
      held.set(clientId, { res, reply, timer });
      res.on('close', () => {
        const h = held.get(clientId);
        if (h && h.res === res) {
          clearTimeout(h.timer);
          held.delete(clientId);
        }
      });
    }
    if (replies.length > 0) sendFrame(res, replies);
    // A subscribe answered: deliver the messages in the held connect's reply.
    if (later.subscribed !== undefined && held.has(later.subscribed)) {
      subscribed.delete(later.subscribed);
      release(later.subscribed, MESSAGES);
    }
  });
});

server.on('upgrade', (req, socket) => {
  socket.on('error', () => {});
  const route = new URL(req.url, 'http://127.0.0.1').pathname.split('/')[1] || '';
  const key = req.headers['sec-websocket-key'];
  if (route !== 'ws-close' || !key) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
               'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  socket.on('data', () => {});
  const reason = Buffer.from('bye \x1b]0;owned\x07 \x1b[2J end', 'latin1');
  const payload = Buffer.concat([Buffer.from([4000 >> 8, 4000 & 0xff]), reason]);
  socket.write(Buffer.concat([Buffer.from([0x88, payload.length]), payload]));
  setTimeout(() => socket.end(), 50);
});

common.listen(server, opts.port);
