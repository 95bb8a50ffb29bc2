'use strict';
// A Bayeux peer that misbehaves on purpose, for test/integration/test_hostile.cpp: it speaks just
// enough Bayeux over HTTP long-polling (POST) and websocket (hand-written RFC 6455 frames, ws://)
// to get a client handshaken, connected and subscribed, then does what a real server never does.
//
//   node hostile-server.js [--port N] [--hold MS] [--max-size BYTES]
//
// Prints "PORT <n>" on stdout once listening. DEBUG=1 logs to stderr. Binds 127.0.0.1 only.
//
// The Bayeux endpoint is /bayeux/<case> for both transports (POST and websocket upgrade); the
// case is the path's last segment. The port serves plain HTTP and TLS alike (told apart by the
// first byte), so every case also runs over https:// and wss:// (a self-signed test certificate:
// clients turn verification off); /control/ is reachable either way. --hold is how long a /meta/connect is held when there is
// nothing to deliver (also the advice timeout the handshake announces; default 1000 ms).
// --max-size is the client's max_message_size the test configured: oversized payloads are built
// from it (default 262144).
//
// What the server does besides the case: handshake (advice retry, interval 0, timeout = hold),
// connect (held, or answered with what waits for delivery), subscribe, unsubscribe, disconnect,
// and publish (acknowledged, then delivered to every subscriber of the channel, sender included).
//
// Delivery cases: when a client subscribes to "/h", the case's payload is queued for delivery
// (once per server), followed by the marker message {"channel":"/h","data":{"marker":"after"}}.
// Over long-polling each held /meta/connect answer carries the next queued item; over websocket
// queued items are written as soon as a connected client with a subscription is there, but after
// a payload the marker waits for the client's next /meta/connect (on whatever connection).
//   normal       the marker only
//   malformed    a body / text frame that is not JSON
//   truncated    the reply to the held /meta/connect, then a message cut short (the frame ends
//                inside it); over websocket it waits for a held connect to answer
//   mixed        one frame: {/h n:1}, a message without a channel, {/h n:2}, a message on /h whose
//                data nests 10000 deep, a message with channel 42, {/h n:3}
//   oversized    a valid frame of 4 x max-size bytes
//   many-tiny    a valid frame just under max-size made of {"channel":"/h","data":N} messages
//                (N = 0..count-1; count in /control/stats as tinyCount)
//   drip         a valid frame sent one byte every 10 ms (10 KB: it never ends within a test)
//   gzip-bomb    (long-polling) Content-Encoding: gzip, 64 MiB of JSON whitespace once inflated
//   bad-chunked  (long-polling) Transfer-Encoding: chunked with a chunk size "zz"
//   short-length (long-polling) Content-Length 10 bytes shorter than the body
//   header-flood (long-polling) a 200 whose header lines never end (64 MiB of X-Flood: lines,
//                as fast as the client reads, then the connection is destroyed)
//   long-length  (long-polling) Content-Length 100 bytes longer than the body, then the
//                connection ends
//   data-advice  a data message on /h carrying advice {"interval":86400000} (what Faye and
//                CometD relay from a co-publisher); over long-polling it comes before the connect
//                reply in the answer, as CometD orders them (connect replies carry no advice)
//   data-advice-none  the same with advice {"reconnect":"none"}
//   huge-header  (websocket) a text frame header claiming 2^40 bytes, then 1 KiB of payload and
//                silence
//   masked       (websocket) a masked text frame [{"channel":"/h","data":"masked"}] (servers
//                must not mask)
//   ws-rsv       (websocket) a text frame with RSV1 set (no extension was negotiated)
//   ws-opcode    (websocket) a frame with the reserved opcode 0x3
//   ws-long-ping (websocket) a ping with a 200-byte payload (control frames are <= 125)
//   bad-utf8     a body / text frame with a message whose data string is not UTF-8 ("utf8:"
//                followed by C3 28 FF)
//   ping-flood   (websocket) 20000 pings of 125 bytes in one go while the server stops reading,
//                then the marker (in the same write)
//   pong-flood   (websocket) 20000 unsolicited pongs of 125 bytes, then the marker
// Never-answer cases:
//   silent-subscribe  a /meta/subscribe is never answered (its POST is held forever)
//   silent-publish    a publish is never answered
//   silent-connect    the first /meta/connect of a session is answered at once, later ones never
// Storm cases:
//   connect-storm  every /meta/connect is answered at once, successful, advice interval 0
//   402-storm / 401-storm  a session's first /meta/connect succeeds at once; every later one is
//                held 100 ms and fails with "402::session_unknown" (or 401) + advice handshake
//   500-storm      (long-polling) the same, but later connects get HTTP 500 after 100 ms;
//                  (websocket) later connects end the connection after 100 ms and every later
//                  upgrade is refused with HTTP 500
// Upgrade cases (websocket; the POST endpoint works normally):
//   upgrade-status   HTTP/1.1 200 OK with a body instead of 101
//   upgrade-accept   101 with a Sec-WebSocket-Accept that does not match the key
//   upgrade-garbage  bytes that are not HTTP
//   upgrade-close    half a 101 response, then the connection is destroyed
//   upgrade-silent   the upgrade request is never answered
//
// Also: POST /echo answers every POST with [{"channel":"/meta/connect","successful":true}] (for
// per-request resource tests of the long-polling transport).
//
// Control API:
//   GET /control/stats -> {"handshake":N,"connect":N,"subscribe":N,"unsubscribe":N,
//       "publish":N,"disconnect":N,"posts":N,"upgrades":N,"echo":N,"fired":B,"delivered":N,
//       "markerSent":N,"tinyCount":N}
//     fired: the case's payload was queued; delivered: payload items written; markerSent: how
//     often the marker was written (a retried one counts again).

const crypto = require('crypto');
const http = require('http');
const https = require('https');
const net = require('net');
const zlib = require('zlib');
const common = require('./common');

const opts = common.parseArgs(process.argv.slice(2), { port: 0, hold: 1000, maxSize: 262144 },
  'hostile-server.js', ' [--hold MS] [--max-size BYTES]');

const stats = {
  handshake: 0, connect: 0, subscribe: 0, unsubscribe: 0, publish: 0, disconnect: 0, posts: 0,
  upgrades: 0, echo: 0, fired: false, delivered: 0, markerSent: 0, tinyCount: 0,
};

const MARKER = { channel: '/h', data: { marker: 'after' } };
let upgradesRefused = false;  // 500-storm over websocket: set once the first session was cut

// ---- websocket frames ----

function frame(opcode, payload, { fin = true, rsv = 0 } = {}) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const b0 = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  let head;
  if (body.length < 126) {
    head = Buffer.from([b0, body.length]);
  } else if (body.length < 65536) {
    head = Buffer.from([b0, 126, body.length >> 8, body.length & 0xff]);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(body.length), 2);
  }
  return Buffer.concat([head, body]);
}
const textFrame = s => frame(0x1, s);

// Reads complete client frames from `state.buf`; calls onFrame(opcode, payload) per frame.
function readFrames(state, onFrame) {
  for (;;) {
    const buf = state.buf;
    if (buf.length < 2) return;
    const masked = (buf[1] & 0x80) !== 0;
    let len = buf[1] & 0x7f, at = 2;
    if (len === 126) {
      if (buf.length < 4) return;
      len = buf.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (buf.length < 10) return;
      len = Number(buf.readBigUInt64BE(2));
      at = 10;
    }
    const key = masked ? buf.subarray(at, at + 4) : null;
    if (masked) at += 4;
    if (buf.length < at + len) return;
    const payload = Buffer.from(buf.subarray(at, at + len));
    if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i % 4];
    state.buf = buf.subarray(at + len);
    onFrame(buf[0] & 0x0f, payload);
  }
}

// ---- payloads ----

function nested(depth) {
  return '['.repeat(depth) + ']'.repeat(depth);
}

// A valid Bayeux frame of about `size` bytes: one message whose data is a long string.
function bigFrame(size) {
  return JSON.stringify([{ channel: '/h', data: 'x'.repeat(Math.max(0, size - 40)) }]);
}

function tinyFrame(limit) {
  const parts = [];
  let size = 2, n = 0;
  for (;;) {
    const m = '{"channel":"/h","data":' + n + '}';
    if (size + m.length + 1 > limit - 64) break;
    parts.push(m);
    size += m.length + 1;
    ++n;
  }
  stats.tinyCount = n;
  return '[' + parts.join(',') + ']';
}

const mixedFrame = () => '[{"channel":"/h","data":{"n":1}},{"data":{"n":"no channel"}},' +
  '{"channel":"/h","data":{"n":2}},{"channel":"/h","data":' + nested(10000) + '},' +
  '{"channel":42,"data":{"n":"numeric channel"}},{"channel":"/h","data":{"n":3}}]';

let gzipBomb = null;
function gzipBombBody() {
  if (!gzipBomb) gzipBomb = zlib.gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20), { level: 9 });
  return gzipBomb;
}

// Each payload: { lp(res, connectReply) } and/or { ws(socket, connectReply) }; `withMarker` means
// the payload writes the marker itself (websocket floods: the server stops reading after them).
// A payload written as JSON over long-polling carries the connect reply first.
const lpJson = text => (res) => {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
};
const withReply = (reply, text) => '[' + JSON.stringify(reply) + ',' + text.slice(1);

function drip(write, end, data) {
  let i = 0;
  const t = setInterval(() => {
    if (i >= data.length) { clearInterval(t); if (end) end(); return; }
    if (!write(data.subarray(i, i + 1))) { /* the peer is slow: keep dripping anyway */ }
    ++i;
  }, 10);
  return t;
}

function rawSocketClose(socket) {
  setTimeout(() => socket.destroy(), 200);
}

const payloads = {
  'normal': null,
  'malformed': {
    lp: (res) => lpJson('[{"channel":"/meta/connect","successful":true},{"channel":"/h","data":{"x":')(res),
    ws: (socket) => socket.write(textFrame('[{"channel":"/h","data":{"x":')),
  },
  'truncated': {
    // The held connect's reply, valid, then a message cut short: the frame ends mid-message.
    answersConnect: true,
    lp: (res, reply) => lpJson(withReply(reply, '[{"channel":"/h","data":{"cut":'))(res),
    ws: (socket, reply) => socket.write(textFrame(withReply(reply, '[{"channel":"/h","data":{"cut":'))),
  },
  'mixed': {
    lp: (res, reply) => lpJson(withReply(reply, mixedFrame()))(res),
    ws: (socket) => socket.write(textFrame(mixedFrame())),
  },
  'oversized': {
    lp: (res, reply) => lpJson(withReply(reply, bigFrame(4 * opts.maxSize)))(res),
    ws: (socket) => socket.write(textFrame(bigFrame(4 * opts.maxSize))),
  },
  'many-tiny': {
    lp: (res, reply) => lpJson(withReply(reply, tinyFrame(opts.maxSize - 200)))(res),
    ws: (socket) => socket.write(textFrame(tinyFrame(opts.maxSize))),
  },
  'drip': {
    lp: (res, reply) => {
      const body = Buffer.from(withReply(reply, bigFrame(10000)));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      const t = drip(c => res.write(c), () => res.end(), body);
      res.on('close', () => clearInterval(t));
    },
    ws: (socket) => {
      const t = drip(c => socket.write(c), null, textFrame(bigFrame(10000)));
      socket.on('close', () => clearInterval(t));
    },
  },
  'gzip-bomb': {
    lp: (res) => {
      const body = gzipBombBody();
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip',
                           'Content-Length': body.length });
      res.end(body);
    },
  },
  'bad-chunked': {
    lp: (res) => {
      const s = res.socket;
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
              '5\r\n[{"ch\r\nzz\r\nannel":"/h"}]\r\n0\r\n\r\n');
      rawSocketClose(s);
    },
  },
  'short-length': {
    lp: (res, reply) => {
      const body = withReply(reply, JSON.stringify([{ channel: '/h', data: { lie: 'short' } }]));
      const s = res.socket;
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ' +
              (Buffer.byteLength(body) - 10) + '\r\n\r\n' + body);
      rawSocketClose(s);
    },
  },
  'header-flood': {
    lp: (res) => {
      const s = res.socket;
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n');
      const chunk = Buffer.from(('X-Flood: ' + 'a'.repeat(90) + '\r\n').repeat(640));  // 64 KiB
      let sent = 0;
      const pump = () => {
        while (!s.destroyed && sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!s.write(chunk)) return s.once('drain', pump);
        }
        if (!s.destroyed) s.destroy();
      };
      pump();
    },
  },
  'long-length': {
    lp: (res, reply) => {
      const body = withReply(reply, JSON.stringify([{ channel: '/h', data: { lie: 'long' } }]));
      const s = res.socket;
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ' +
              (Buffer.byteLength(body) + 100) + '\r\n\r\n' + body);
      setTimeout(() => s.end(), 100);
    },
  },
  'data-advice': {
    lp: (res, reply) => lpJson(JSON.stringify([
      { channel: '/h', data: { n: 'advised' }, advice: { interval: 86400000 } }, reply]))(res),
    ws: (socket) => socket.write(textFrame(JSON.stringify(
      [{ channel: '/h', data: { n: 'advised' }, advice: { interval: 86400000 } }]))),
  },
  'data-advice-none': {
    lp: (res, reply) => lpJson(JSON.stringify([
      { channel: '/h', data: { n: 'advised' }, advice: { reconnect: 'none' } }, reply]))(res),
    ws: (socket) => socket.write(textFrame(JSON.stringify(
      [{ channel: '/h', data: { n: 'advised' }, advice: { reconnect: 'none' } }]))),
  },
  'huge-header': {
    ws: (socket) => {
      const head = Buffer.alloc(10);
      head[0] = 0x81;
      head[1] = 127;
      head.writeBigUInt64BE(1n << 40n, 2);
      socket.write(Buffer.concat([head, Buffer.alloc(1024, 0x78)]));  // far less than a buffer
    },
  },
  'masked': {
    ws: (socket) => {
      const payload = Buffer.from('[{"channel":"/h","data":"masked"}]');
      const key = Buffer.from([1, 2, 3, 4]);
      const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
      socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | masked.length]), key, masked]));
    },
  },
  'ws-rsv': { ws: (socket) => socket.write(frame(0x1, '[{"channel":"/h","data":"rsv"}]', { rsv: 4 })) },
  'ws-opcode': { ws: (socket) => socket.write(frame(0x3, '[{"channel":"/h","data":"op3"}]')) },
  'ws-long-ping': { ws: (socket) => socket.write(frame(0x9, Buffer.alloc(200, 0x70))) },
  'bad-utf8': {
    lp: (res, reply) => {
      const body = Buffer.concat([Buffer.from('[' + JSON.stringify(reply) + ',{"channel":"/h","data":"utf8:'),
        Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}]')]);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      res.end(body);
    },
    ws: (socket) => socket.write(frame(0x1, Buffer.concat([Buffer.from('[{"channel":"/h","data":"utf8:'),
      Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}]')]))),
  },
  'ping-flood': {
    withMarker: true,
    ws: (socket) => {
      socket.pause();
      socket.removeAllListeners('data');
      const ping = frame(0x9, Buffer.alloc(125, 0x70));
      const all = [];
      for (let i = 0; i < 20000; ++i) all.push(ping);
      all.push(textFrame(JSON.stringify([MARKER])));
      ++stats.markerSent;
      socket.write(Buffer.concat(all));
    },
  },
  'pong-flood': {
    withMarker: true,
    ws: (socket) => {
      const pong = frame(0xA, Buffer.alloc(125, 0x71));
      const all = [];
      for (let i = 0; i < 20000; ++i) all.push(pong);
      all.push(textFrame(JSON.stringify([MARKER])));
      ++stats.markerSent;
      socket.write(Buffer.concat(all));
    },
  },
};

// ---- Bayeux state ----

const sessions = new Map();  // clientId -> session
let nextId = 1;
const queue = [];            // items waiting for delivery: {payload} or {marker: true}

function newSession() {
  const s = { id: 'h' + (nextId++) + crypto.randomBytes(4).toString('hex'), subs: new Set(),
              connects: 0, held: null, ws: null };
  sessions.set(s.id, s);
  return s;
}

function matches(pattern, channel) {
  if (pattern === channel) return true;
  if (pattern.endsWith('/**')) return channel.startsWith(pattern.slice(0, -2));
  if (pattern.endsWith('/*')) {
    const base = pattern.slice(0, -1);
    return channel.startsWith(base) && !channel.slice(base.length).includes('/');
  }
  return false;
}

function caseOf(path) {
  const parts = path.split('/').filter(Boolean);
  return parts.length >= 2 && parts[0] === 'bayeux' ? parts[parts.length - 1] : null;
}

// Like CometD, advice only in the handshake reply (and when it changes): a connect reply has none.
const connectReply = (m, extra) => Object.assign({ channel: '/meta/connect', successful: true,
  clientId: m.clientId, id: m.id }, extra);

function unknownReply(m) {
  return { channel: m.channel, successful: false, clientId: m.clientId, id: m.id,
           error: '402::session_unknown', advice: { reconnect: 'handshake', interval: 0 } };
}

// A connection of either kind: lp = {kind:'lp', res, replies[], pendingCount} per POST;
// ws = {kind:'ws', socket}.
function sendReplies(conn, replies) {
  if (replies.length === 0) return;
  if (conn.kind === 'ws') {
    if (!conn.socket.destroyed) conn.socket.write(textFrame(JSON.stringify(replies)));
  }
}

function fire(kase) {
  if (stats.fired) return;
  stats.fired = true;
  if (payloads[kase]) queue.push({ payload: payloads[kase] });
  if (!payloads[kase] || !payloads[kase].withMarker) queue.push({ marker: true });
  pumpAll();
}

function subscribedSessions() {
  return Array.from(sessions.values()).filter(s => s.subs.has('/h'));
}

// Delivers what is queued to the session's held long-polling connect (one item per answer).
function pumpLp(session) {
  const held = session.held;
  if (!held || held.conn.kind !== 'lp' || queue.length === 0 || !session.subs.has('/h')) return;
  const item = queue.shift();
  session.held = null;
  clearTimeout(held.timer);
  const reply = connectReply(held.msg);
  if (item.marker) {
    ++stats.markerSent;
    finishLp(held.conn, [reply, MARKER]);
  } else {
    ++stats.delivered;
    if (item.payload.lp) {
      held.conn.done = true;
      item.payload.lp(held.conn.res, reply);
    } else {
      finishLp(held.conn, [reply]);  // nothing for long-polling in this case
    }
  }
}

// Over websocket: writes what is queued; after a payload the rest waits for the next connect.
function pumpWs(session) {
  if (!session.ws || session.ws.socket.destroyed || !session.subs.has('/h')) return;
  while (queue.length > 0) {
    const item = queue[0];
    if (item.marker) {
      if (session.ws.afterPayload) return;  // until the client's next /meta/connect
      queue.shift();
      ++stats.markerSent;
      session.ws.socket.write(textFrame(JSON.stringify([MARKER])));
      continue;
    }
    if (item.payload.answersConnect && !(session.held && session.held.conn === session.ws)) return;
    queue.shift();
    ++stats.delivered;
    if (item.payload.ws) {
      session.ws.afterPayload = true;
      let reply = null;
      if (item.payload.answersConnect) {
        reply = connectReply(session.held.msg);
        clearTimeout(session.held.timer);
        session.held = null;
      }
      item.payload.ws(session.ws.socket, reply);
    }
  }
}

function pumpAll() {
  for (const s of subscribedSessions()) {
    if (s.ws) pumpWs(s);
    else pumpLp(s);
  }
}

function finishLp(conn, replies) {
  for (const r of replies) conn.replies.push(r);
  if (--conn.pending > 0 || conn.done) return;
  conn.done = true;
  common.sendJson(conn.res, 200, conn.replies);
}

// Handles one message; returns the reply to send now, or null (held, swallowed or sent later).
function handle(kase, conn, m) {
  const ch = m.channel;
  if (ch === '/meta/handshake') {
    ++stats.handshake;
    const s = newSession();
    if (conn.kind === 'ws') { s.ws = conn; conn.session = s; }
    return { channel: ch, successful: true, version: '1.0', clientId: s.id, id: m.id,
             supportedConnectionTypes: ['long-polling', 'websocket'],
             advice: { reconnect: 'retry', interval: 0, timeout: opts.hold } };
  }
  const s = sessions.get(m.clientId);
  if (ch === '/meta/connect') ++stats.connect;
  if (!s) return unknownReply(m);
  if (conn.kind === 'ws') {
    if (s.ws !== conn) { s.ws = conn; conn.session = s; }
  }
  if (ch === '/meta/connect') {
    ++s.connects;
    return connect(kase, conn, s, m);
  }
  if (ch === '/meta/subscribe') {
    ++stats.subscribe;
    if (kase === 'silent-subscribe') return null;
    const subs = Array.isArray(m.subscription) ? m.subscription : [m.subscription];
    for (const sub of subs) s.subs.add(sub);
    if (subs.includes('/h')) setImmediate(() => fire(kase));
    return { channel: ch, successful: true, clientId: s.id, id: m.id, subscription: m.subscription };
  }
  if (ch === '/meta/unsubscribe') {
    ++stats.unsubscribe;
    const subs = Array.isArray(m.subscription) ? m.subscription : [m.subscription];
    for (const sub of subs) s.subs.delete(sub);
    return { channel: ch, successful: true, clientId: s.id, id: m.id, subscription: m.subscription };
  }
  if (ch === '/meta/disconnect') {
    ++stats.disconnect;
    sessions.delete(s.id);
    if (s.held) releaseHeld(s, []);
    return { channel: ch, successful: true, clientId: s.id, id: m.id };
  }
  if (typeof ch === 'string' && !ch.startsWith('/meta/')) {
    ++stats.publish;
    if (kase === 'silent-publish') return null;
    for (const other of sessions.values()) {
      if (Array.from(other.subs).some(p => matches(p, ch))) deliverData(other, { channel: ch, data: m.data });
    }
    return { channel: ch, successful: true, id: m.id };
  }
  return { channel: ch, successful: false, id: m.id, error: '400::unknown channel' };
}

// A data message from a publish: over websocket at once, over long-polling with the held connect.
function deliverData(s, msg) {
  if (s.ws && !s.ws.socket.destroyed) {
    s.ws.socket.write(textFrame(JSON.stringify([msg])));
  } else if (s.held && s.held.conn.kind === 'lp') {
    releaseHeld(s, [msg]);
  } else {
    (s.pendingData = s.pendingData || []).push(msg);
  }
}

function releaseHeld(s, extra) {
  const held = s.held;
  if (!held) return;
  s.held = null;
  clearTimeout(held.timer);
  const replies = [connectReply(held.msg)].concat(extra);
  if (held.conn.kind === 'lp') finishLp(held.conn, replies);
  else sendReplies(held.conn, replies);
}

function connect(kase, conn, s, m) {
  const first = s.connects === 1;
  if (kase === 'connect-storm') return connectReply(m);
  if (kase === 'silent-connect' && !first) return null;
  if ((kase === '402-storm' || kase === '401-storm' || kase === '500-storm') && !first) {
    setTimeout(() => {
      if (kase === '500-storm') {
        if (conn.kind === 'lp') {
          conn.done = true;
          if (!conn.res.writableEnded) common.sendJson(conn.res, 500, { error: 'storm' });
        } else {
          upgradesRefused = true;
          conn.socket.destroy();
        }
        return;
      }
      const code = kase === '402-storm' ? '402::session_unknown' : '401::unauthorized';
      const reply = { channel: '/meta/connect', successful: false, clientId: m.clientId, id: m.id,
                      error: code, advice: { reconnect: 'handshake', interval: 0 } };
      sessions.delete(s.id);
      if (conn.kind === 'lp') finishLp(conn, [reply]);
      else sendReplies(conn, [reply]);
    }, 100);
    return null;
  }
  if (first && kase !== 'normal' && (kase.endsWith('-storm') || kase === 'silent-connect')) {
    return connectReply(m);
  }
  if (s.pendingData && s.pendingData.length > 0) {
    const data = s.pendingData;
    s.pendingData = [];
    return [connectReply(m)].concat(data);
  }
  if (s.held) releaseHeld(s, []);  // a new connect replaces an old held one
  const held = { conn, msg: m, timer: null };
  held.timer = setTimeout(() => { if (s.held === held) releaseHeld(s, []); }, opts.hold);
  s.held = held;
  if (conn.kind === 'ws') {
    if (conn.afterPayload) conn.afterPayload = false;
    setImmediate(() => pumpWs(s));
  } else {
    setImmediate(() => pumpLp(s));
  }
  return null;
}

// Handles a batch from one POST body or websocket text frame.
function handleBatch(kase, conn, text) {
  let msgs;
  try {
    msgs = JSON.parse(text);
  } catch (e) {
    return { error: 'bad JSON' };
  }
  if (!Array.isArray(msgs)) msgs = [msgs];
  const now = [];
  if (conn.kind === 'lp') conn.pending = 1;  // released below
  for (const m of msgs) {
    if (!m || typeof m !== 'object') continue;
    if (conn.kind === 'lp') ++conn.pending;
    const r = handle(kase, conn, m);
    if (r === null) continue;  // held or swallowed: that POST waits (for ever, if swallowed)
    if (conn.kind === 'lp') --conn.pending;
    if (Array.isArray(r)) now.push(...r); else now.push(r);
  }
  if (conn.kind === 'lp') finishLp(conn, now);
  else sendReplies(conn, now);
  return null;
}

// ---- HTTP and HTTPS on one port ----

const { TEST_CERT, TEST_KEY } = common;

const plainServer = http.createServer();
const tlsServer = https.createServer({ cert: TEST_CERT, key: TEST_KEY });
for (const srv of [plainServer, tlsServer]) {
  srv.requestTimeout = 0;
  srv.keepAliveTimeout = 60000;
  srv.timeout = 0;
}
// The first byte of a connection tells TLS (a handshake record, 0x16) from plain HTTP.
const server = net.createServer(socket => {
  socket.on('error', () => {});
  socket.once('data', first => {
    socket.pause();
    socket.unshift(first);
    (first[0] === 0x16 ? tlsServer : plainServer).emit('connection', socket);
    process.nextTick(() => socket.resume());
  });
});

const routes = {
  'GET /control/stats': async () => stats,
};

const ECHO = '[{"channel":"/meta/connect","successful":true}]';

function onRequest(req, res) {
  if (common.handleControl(req, res, routes)) return;
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  if (path === '/echo') {
    req.resume();
    req.on('end', () => {
      ++stats.echo;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': ECHO.length });
      res.end(ECHO);
    });
    return;
  }
  const kase = caseOf(path);
  if (req.method !== 'POST' || !kase) {
    common.sendJson(res, 404, { error: 'not found' });
    return;
  }
  ++stats.posts;
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const conn = { kind: 'lp', res, replies: [], pending: 0, done: false };
    const bad = handleBatch(kase, conn, Buffer.concat(chunks).toString('utf8'));
    if (bad) common.sendJson(res, 400, bad);
  });
  res.on('close', () => {
    for (const s of sessions.values()) if (s.held && s.held.conn.res === res) {
      clearTimeout(s.held.timer);
      s.held = null;
    }
  });
}

function onUpgrade(req, socket) {
  socket.on('error', () => {});
  ++stats.upgrades;
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  const kase = caseOf(path);
  const key = req.headers['sec-websocket-key'];
  common.debug('upgrade', path);
  if (!kase || !key) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  if (kase === '500-storm' && upgradesRefused) {
    socket.end('HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 5\r\n\r\nstorm');
    return;
  }
  const goodAccept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  switch (kase) {
    case 'upgrade-status':
      socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nno ws\r\n');
      return;
    case 'upgrade-accept':
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                   'Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      return;
    case 'upgrade-garbage':
      socket.write(Buffer.concat([Buffer.from([0, 0xff, 0x1b]), Buffer.from('garbage\r\n\r\n')]));
      return;
    case 'upgrade-close':
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConn');
      setTimeout(() => socket.destroy(), 20);
      return;
    case 'upgrade-silent':
      return;
    default:
      break;
  }
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
               'Sec-WebSocket-Accept: ' + goodAccept + '\r\n\r\n');
  const conn = { kind: 'ws', socket, session: null, afterPayload: false };
  const state = { buf: Buffer.alloc(0) };
  socket.on('data', chunk => {
    state.buf = state.buf.length ? Buffer.concat([state.buf, chunk]) : chunk;
    readFrames(state, (opcode, payload) => {
      if (opcode === 0x8) { socket.end(frame(0x8, payload.subarray(0, 2))); return; }
      if (opcode === 0x9) { socket.write(frame(0xA, payload)); return; }
      if (opcode !== 0x1) return;
      handleBatch(kase, conn, payload.toString('utf8'));
    });
  });
  socket.on('close', () => {
    if (conn.session && conn.session.ws === conn) {
      const s = conn.session;
      s.ws = null;
      if (s.held && s.held.conn === conn) { clearTimeout(s.held.timer); s.held = null; }
    }
  });
}

for (const srv of [plainServer, tlsServer]) {
  srv.on('request', onRequest);
  srv.on('upgrade', onUpgrade);
}

common.listen(server, opts.port);
