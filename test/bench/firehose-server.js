#!/usr/bin/env node
// A minimal Bayeux server for benchmarking uvcometd: it streams pre-built frames of data messages
// to every client that subscribes, over long-polling (POST, JSON array, any path) and websocket
// (upgrade at any path). Not a general server: no channel routing beyond what the benchmark needs.
//
//   node firehose-server.js [--port N] [--timeout MS] [--count N] [--size BYTES] [--batch M]
//                           [--publish-echo 0|1] [--stdin-exit] [--tls]
//
// Prints "PORT <n>" on stdout once listening on 127.0.0.1.
//   --count N         data messages streamed to each client after its first subscribe (20000)
//   --size BYTES      length of the payload string "p" of each message (100)
//   --batch M         messages per frame (1000)
//   --timeout MS      advice.timeout, the long-poll hold time (30000)
//   --publish-echo    1: client publishes are also delivered to subscribers of their channel;
//                     0 (default): publishes are only acknowledged (publishing benchmark)
//   --stdin-exit      exit when stdin reaches EOF (the parent died or closed the pipe)
//   --tls             serve https:// and wss:// with a throw-away self-signed certificate made
//                     at start by the openssl command (clients must not verify it)
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const crypto = require('crypto');

let WebSocket;
try {
  WebSocket = require(path.join(__dirname, '..', 'servers', 'node_modules', 'faye-websocket'));
} catch (e) {
  WebSocket = require('faye-websocket');  // via NODE_PATH
}
const WS_OPEN = 1;  // faye-websocket's API.OPEN (not exported)

// websocket-driver (under faye-websocket) unmasks every received byte with `i % 4` and checks each
// text frame against a UTF-8 RegExp before decoding it: together a quarter of this server's CPU
// when a client publishes at full speed, enough to make the server, not the client, the limit.
// Replace both in this process only: unmask four bytes per step, and let Buffer decode (invalid
// UTF-8 then becomes U+FFFD instead of closing the socket; JSON.parse still checks the text).
try {
  let hybiPath;
  try {
    hybiPath = require.resolve('websocket-driver/lib/websocket/driver/hybi',
                               { paths: [path.dirname(require.resolve(
                                   path.join(__dirname, '..', 'servers', 'node_modules',
                                             'faye-websocket')))] });
  } catch (e) {
    hybiPath = require.resolve('websocket-driver/lib/websocket/driver/hybi');
  }
  const Hybi = require(hybiPath);
  Hybi.mask = function (payload, mask, offset) {
    if (!mask || mask.length === 0) return payload;
    const m0 = mask[0], m1 = mask[1], m2 = mask[2], m3 = mask[3];
    let i = offset || 0;
    const n = payload.length;
    for (; i + 3 < n; i += 4) {
      payload[i] ^= m0;
      payload[i + 1] ^= m1;
      payload[i + 2] ^= m2;
      payload[i + 3] ^= m3;
    }
    const tail = [m0, m1, m2];
    for (let k = 0; i < n; ++i, ++k) payload[i] ^= tail[k];
    return payload;
  };
  Hybi.prototype._encode = function (buffer) { return buffer.toString('utf8'); };
} catch (e) {
  // Another websocket-driver layout: keep its own (slower) code.
}

// ---- options ------------------------------------------------------------------------------
const opts = { port: 0, timeout: 30000, count: 20000, size: 100, batch: 1000, publishEcho: 0,
               stdinExit: false, tls: false };
{
  const argv = process.argv.slice(2);
  const num = (i) => {
    const v = Number(argv[i + 1]);
    if (!Number.isInteger(v) || v < 0) {
      console.error(`firehose-server: ${argv[i]} needs a non-negative integer`);
      process.exit(2);
    }
    return v;
  };
  for (let i = 0; i < argv.length; ++i) {
    switch (argv[i]) {
      case '--port': opts.port = num(i); ++i; break;
      case '--timeout': opts.timeout = num(i); ++i; break;
      case '--count': opts.count = num(i); ++i; break;
      case '--size': opts.size = num(i); ++i; break;
      case '--batch': opts.batch = Math.max(1, num(i)); ++i; break;
      case '--publish-echo': opts.publishEcho = num(i); ++i; break;
      case '--stdin-exit': opts.stdinExit = true; break;
      case '--tls': opts.tls = true; break;
      default:
        console.error(`firehose-server: unknown argument ${argv[i]}`);
        process.exit(2);
    }
  }
}

// ---- pre-built frames (built once; streaming does no per-message work) --------------------
// A frame is the JSON array text of `n` identical messages. Each is kept as a string (websocket
// text frame) and as a Buffer of the array's tail without its '[' (spliced after a long-poll
// connect reply).
function buildFrame(n) {
  const msg = `{"channel":"/bench","data":{"p":"${'x'.repeat(opts.size)}"}}`;
  const text = '[' + new Array(n).fill(msg).join(',') + ']';
  return { n, text, tail: Buffer.from(text.slice(1), 'latin1') };
}
const fullFrame = buildFrame(Math.min(opts.batch, Math.max(opts.count, 1)));
const lastFrame = opts.count % opts.batch ? buildFrame(opts.count % opts.batch) : fullFrame;

// ---- sessions -----------------------------------------------------------------------------
// clientId → { id, subs:Set, sent, streaming, held: {reply, replies, finish, timer} | null, ws }
const sessions = new Map();

const baseAdvice = () => ({ reconnect: 'retry', interval: 0, timeout: opts.timeout });

function nextFrame(s) {
  if (!s.streaming || s.sent >= opts.count) return null;
  const f = opts.count - s.sent >= fullFrame.n ? fullFrame : lastFrame;
  s.sent += f.n;
  return f;
}

function channelMatches(pattern, channel) {
  if (pattern === channel) return true;
  if (pattern.endsWith('/**')) return channel.startsWith(pattern.slice(0, -2));
  if (pattern.endsWith('/*')) {
    const prefix = pattern.slice(0, -1);
    return channel.startsWith(prefix) && channel.indexOf('/', prefix.length) < 0;
  }
  return false;
}

// Answers the held /meta/connect of `s` now (with the next frame when streaming).
function releaseHeld(s) {
  const h = s.held;
  if (!h) return;
  s.held = null;
  clearTimeout(h.timer);
  h.finish(h.replies, h.ws ? null : nextFrame(s));
}

// Queues a delivered message (publish echo) for `s`.
function deliver(s, text) {
  if (s.ws) {
    s.ws.send('[' + text + ']');
  } else {
    s.queue.push(text);
    releaseHeld(s);
  }
}

// Handles one request's messages (`transport.ws` is the websocket, or null for long-polling).
// `finish(replies, frame)` sends the response: the reply objects, then the frame's messages (if
// any; long-polling only). The response may be deferred when it holds a /meta/connect. Over
// websocket the data frames are pushed by wsStream, never attached to a connect reply.
function handleBatch(msgs, finish, transport) {
  const replies = [];
  let hold = null;
  let releaseAfter = null;
  let startStream = null;
  let connected = null;  // the session whose connect is answered in this response
  for (const m of msgs) {
    if (!m || typeof m !== 'object') continue;
    const ch = m.channel;
    const reply = { channel: ch };
    if (m.id !== undefined) reply.id = m.id;
    if (ch === '/meta/handshake') {
      const id = crypto.randomBytes(16).toString('hex');
      const s = { id, subs: new Set(), sent: 0, streaming: false, held: null, queue: [],
                  ws: null };
      sessions.set(id, s);
      Object.assign(reply, { successful: true, version: '1.0', clientId: id,
                             supportedConnectionTypes: ['long-polling', 'websocket'],
                             advice: baseAdvice() });
      replies.push(reply);
      continue;
    }
    const s = sessions.get(m.clientId);
    if (!s) {
      Object.assign(reply, { successful: false, error: '402::session_unknown' });
      if (ch === '/meta/connect') reply.advice = { reconnect: 'handshake', interval: 0 };
      replies.push(reply);
      continue;
    }
    reply.clientId = s.id;
    if (transport.ws) s.ws = transport.ws;
    switch (ch) {
      case '/meta/connect': {
        releaseHeld(s);  // never two connects at once: answer the older one
        Object.assign(reply, { successful: true, advice: baseAdvice() });
        const t = m.advice && Number.isFinite(m.advice.timeout) ? m.advice.timeout : opts.timeout;
        const pendingData = !transport.ws &&
            ((s.streaming && s.sent < opts.count) || s.queue.length > 0);
        if (t > 0 && !pendingData) {
          hold = { s, reply, timeout: t };
        } else {
          replies.push(reply);
          connected = s;
        }
        break;
      }
      case '/meta/subscribe':
        Object.assign(reply, { successful: true, subscription: m.subscription });
        if (typeof m.subscription === 'string') s.subs.add(m.subscription);
        if (!s.streaming && opts.count > 0) startStream = s;
        s.streaming = true;
        replies.push(reply);
        break;
      case '/meta/unsubscribe':
        Object.assign(reply, { successful: true, subscription: m.subscription });
        s.subs.delete(m.subscription);
        replies.push(reply);
        break;
      case '/meta/disconnect':
        reply.successful = true;
        replies.push(reply);
        releaseAfter = s;
        break;
      default:
        if (typeof ch !== 'string' || ch.startsWith('/meta/')) {
          Object.assign(reply, { successful: false, error: '405::Invalid channel' });
        } else {
          reply.successful = true;
          if (opts.publishEcho) {
            const text = JSON.stringify({ channel: ch, data: m.data });
            for (const o of sessions.values()) {
              for (const p of o.subs) {
                if (channelMatches(p, ch)) { deliver(o, text); break; }
              }
            }
          }
        }
        replies.push(reply);
    }
  }
  if (releaseAfter) {
    releaseHeld(releaseAfter);
    sessions.delete(releaseAfter.id);
  }
  if (hold) {
    const { s, reply, timeout } = hold;
    if (transport.ws) {
      // Over websocket the other replies leave now; the connect reply waits alone.
      if (replies.length) finish(replies, null);
      s.held = { replies: [reply], finish, ws: transport.ws, timer: null };
    } else {
      replies.push(reply);
      s.held = { replies, finish, ws: null, timer: null };
      transport.onAbort(() => {
        if (s.held && s.held.finish === finish) { clearTimeout(s.held.timer); s.held = null; }
      });
    }
    s.held.timer = setTimeout(() => releaseHeld(s), timeout);
  } else if (replies.length) {
    finish(replies, connected && !transport.ws ? nextFrame(connected) : null);
  }
  if (startStream) {
    if (transport.ws) transport.stream(startStream);
    else releaseHeld(startStream);
  }
}

// ---- long-polling -------------------------------------------------------------------------
function lpFinish(res) {
  return (replies, frame) => {
    if (res.writableEnded || res.destroyed) return;
    let head = JSON.stringify(replies);
    const s = sessions.get(replies.find((r) => r.clientId)?.clientId);
    if (s && s.queue.length) {
      head = head.slice(0, -1) + ',' + s.queue.join(',') + ']';
      s.queue = [];
    }
    const headers = { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache' };
    if (frame) {
      const h = Buffer.from(head.slice(0, -1) + ',', 'utf8');
      headers['Content-Length'] = h.length + frame.tail.length;
      res.writeHead(200, headers);
      res.write(h);
      res.end(frame.tail);
    } else {
      const b = Buffer.from(head, 'utf8');
      headers['Content-Length'] = b.length;
      res.writeHead(200, headers);
      res.end(b);
    }
  };
}

// A self-signed P-256 certificate for 127.0.0.1, made in a temporary directory removed at once.
function throwAwayCertificate() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'firehose-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
                             'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
                             '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
                             '-keyout', path.join(dir, 'key.pem'), '-out',
                             path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { key: fs.readFileSync(path.join(dir, 'key.pem')),
             cert: fs.readFileSync(path.join(dir, 'cert.pem')) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const onRequest = (req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(400, { 'Content-Type': 'text/plain' });
    res.end('POST a JSON array\n');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let msgs;
    try {
      msgs = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (!Array.isArray(msgs)) msgs = [msgs];
    } catch (e) {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end('Bad request\n');
      return;
    }
    handleBatch(msgs, lpFinish(res), {
      ws: null,
      onAbort: (fn) => res.on('close', () => { if (!res.writableEnded) fn(); }),
    });
  });
};
const server = opts.tls ? https.createServer(throwAwayCertificate(), onRequest)
                        : http.createServer(onRequest);
server.requestTimeout = 0;
server.keepAliveTimeout = 120000;
server.headersTimeout = 0;

// ---- websocket ----------------------------------------------------------------------------
// Streams the remaining frames of `s` back to back, waiting for 'drain' when the socket's
// buffer is full.
function wsStream(ws, s) {
  const pump = () => {
    for (;;) {
      if (ws.readyState !== WS_OPEN) return;
      const f = nextFrame(s);
      if (!f) return;
      if (!ws.send(f.text)) { ws.once('drain', pump); return; }
    }
  };
  pump();
}

server.on('upgrade', (req, socket, body) => {
  if (!WebSocket.isWebSocket(req)) { socket.destroy(); return; }
  const ws = new WebSocket(req, socket, body, [], { maxLength: 64 * 1024 * 1024 });
  const finish = (replies) => {
    if (ws.readyState === WS_OPEN) ws.send(JSON.stringify(replies));
  };
  const transport = { ws, stream: (s) => wsStream(ws, s) };
  ws.on('message', (ev) => {
    let msgs;
    try {
      msgs = JSON.parse(ev.data);
      if (!Array.isArray(msgs)) msgs = [msgs];
    } catch (e) {
      ws.close(1000, 'bad frame');
      return;
    }
    handleBatch(msgs, finish, transport);
  });
  ws.on('close', () => {
    for (const s of sessions.values()) {
      if (s.ws !== ws) continue;
      s.ws = null;
      if (s.held && s.held.ws === ws) { clearTimeout(s.held.timer); s.held = null; }
    }
  });
});

server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});

if (opts.stdinExit) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
