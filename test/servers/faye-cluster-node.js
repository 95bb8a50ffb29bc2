'use strict';
// One node of a Faye 1.4.3 cluster for the uvcometd cluster tests: websocket and long-polling at
// http://127.0.0.1:<port>/bayeux, sessions shared through Redis (faye-redis 0.2.0) or, without
// --redis-port, kept in this process only (Faye's in-memory engine: nodes that share nothing).
//
//   node faye-cluster-node.js [--timeout SECONDS] [--port N] [--node NAME] [--redis-port N]
//                             [--redis-gc SECONDS] [--advice-hosts URL,URL...]
//                             [--requeue-dropped 0|1] [--stamp-node 0|1] [--delivery-log FILE]
//
// Prints "PORT <n>" on stdout once listening and, with Redis, once both Redis connections are
// ready and the notification channels subscribed; nothing else. DEBUG=1 logs to stderr.
//
//   --node NAME         the node's name: every HTTP response carries "X-Node: NAME", the
//                       websocket upgrade's 101 response too, and /control/stats says it.
//   --redis-port N      faye-redis engine on redis-server at 127.0.0.1:N (0, the default: Faye's
//                       in-memory engine). faye-redis keeps a session 1.6 x --timeout after its
//                       last /meta/connect (a later connect gets "401:<id>:Unknown client") and
//                       collects sessions idle 2 x --timeout every --redis-gc seconds (default 60).
//   --advice-hosts L    comma-separated URLs sent as "advice":{"hosts":[...]} in every
//                       /meta/handshake and /meta/connect reply (successful or not).
//   --requeue-dropped 1 NOT faye-redis's behaviour, a patch for measuring the client alone:
//                       faye-redis 0.2.0 drains a client's queue (LRANGE+DEL) asynchronously and
//                       the messages are lost when the client's long-poll closed meanwhile (a
//                       /meta/connect with advice.timeout 0, or one flushed by an earlier
//                       delivery: under a stream of publishes over long-polling, several percent
//                       of the messages; "dropped" in the stats). With 1 such messages are pushed
//                       back at the head of the queue, in order, for the client's next connect.
//   --stamp-node 1      every message delivered to a network client carries "ext":{"node":NAME}
//                       (merged into its ext): which node handed it over.
//   --delivery-log FILE every message handed to a network client's connection is appended to
//                       FILE as a line {"node","channel","data"}, written before the connection
//                       writes it (synchronously: a line outlives a SIGKILL that follows).
//
// Control API (the in-process /control/publish client is not counted anywhere):
//   POST /control/publish {"channel","data","count"} -> {"published":N}: published through this
//        node's engine, so with Redis every node's clients get it.
//   POST /control/advice-hosts {"hosts":[URL...]} -> {"hosts":[...]}: replaces --advice-hosts
//        ([] stops sending advice.hosts).
//   POST /control/drop  -> {"dropped":N}: destroys every other TCP connection (websockets too).
//   POST /control/forget {"clientId":ID} -> {"forgotten":ID}, 404 without such a session: the
//        engine destroys the session (with Redis, on every node): a connection held for it is
//        answered, and its next /meta/connect gets "401:<id>:Unknown client" with advice
//        reconnect "handshake".
//   GET  /control/stats -> {"node":NAME,"engine":"redis"|"memory","handshakes":N,"connects":N,
//        "unknownClient":N,"delivered":N,"dropped":N,"requeued":N,"held":[clientId...],
//        "clients":[clientId...],"subscriptions":{"<pattern>":N}}
//        handshakes: successful handshakes answered by this node; connects: /meta/connect
//        received; unknownClient: replies with error 401 (any meta channel); delivered: non-meta
//        messages this node handed to network clients; dropped: messages the engine took off a
//        client's queue for this node after the client's connection here had closed (faye-redis
//        reads the queue asynchronously: such messages are lost); requeued: the same messages
//        pushed back instead (--requeue-dropped 1); held: the clientIds this node holds a
//        connection for now (a long-poll waiting, or a websocket that sent a connect); clients:
//        the clientIds whose latest /meta/connect this node accepted (last 100, oldest first);
//        subscriptions: subscribes handled by this node, per pattern, minus its unsubscribes.
//   GET  /control/queue?clientId=ID -> {"queued":N}: the messages waiting for that client in
//        the engine (the shared Redis queue, or this node's memory), not yet handed to a
//        connection.
//   GET  /control/seen  -> {"headers":{...},"channels":[...],"lastConnect":{"clientId",
//        "connectionType"}|null}: the request headers of the latest Bayeux message from the
//        network, the channels of the last 50, the latest /meta/connect.
//   POST /control/seen-reset -> {"reset":true}

const http = require('http');
const faye = require('faye');
const common = require('./common');

const opts = common.parseArgs(process.argv.slice(2),
  { timeout: 5, port: 0, node: '', redisPort: 0, redisGc: 60, adviceHosts: '', requeueDropped: 0,
    stampNode: 0, deliveryLog: '' },
  'faye-cluster-node.js',
  ' [--node NAME] [--redis-port N] [--redis-gc SECONDS] [--advice-hosts URL,URL...]' +
  ' [--requeue-dropped 0|1] [--stamp-node 0|1] [--delivery-log FILE]');

const fs = require('fs');
const deliveryLog = opts.deliveryLog !== '' ? fs.openSync(opts.deliveryLog, 'a') : -1;

const splitHosts = text => text.split(',').map(s => s.trim()).filter(s => s !== '');

const state = {
  adviceHosts: splitHosts(opts.adviceHosts),
  handshakes: 0,
  connects: 0,
  unknownClient: 0,
  delivered: 0,
  dropped: 0,
  requeued: 0,
  clients: [],  // clientIds of the latest accepted connects, oldest first (at most CLIENTS)
};
const CLIENTS = 100;

const engineOptions = opts.redisPort > 0
  ? { type: require('faye-redis'), host: '127.0.0.1', port: opts.redisPort, gc: opts.redisGc }
  : undefined;
const adapter = new faye.NodeAdapter({ mount: '/bayeux', timeout: opts.timeout,
                                       engine: engineOptions });
const proxy = adapter._server._engine;  // Faye's engine proxy: holds this node's connections

// faye-redis drains a client's queue (LRANGE+DEL) asynchronously and hands the messages to the
// proxy, which drops them when the client's connection closed meanwhile: count those.
const deliver = proxy.deliver.bind(proxy);
proxy.deliver = (clientId, messages) => {
  const ok = deliver(clientId, messages);
  if (ok || !messages || messages.length === 0) return ok;
  if (engineOptions && opts.requeueDropped) {
    // Back at the head of the queue in their order, and a notification for whichever node
    // holds the client's next connect.
    const engine = proxy._engine;
    const key = engine._ns + '/clients/' + clientId + '/messages';
    const texts = messages.map(m => JSON.stringify(m)).reverse();
    engine._redis.lpush(key, ...texts);
    engine._redis.publish(engine._messageChannel, clientId);
    state.requeued += messages.length;
    common.debug('requeued', messages.length, 'message(s) for', clientId);
  } else {
    state.dropped += messages.length;
    common.debug('dropped', messages.length, 'message(s) drained for', clientId,
                 'with no connection here');
  }
  return ok;
};

const SEEN_CHANNELS = 50;
const newSeen = () => ({ headers: {}, channels: [], lastConnect: null });
let seen = newSeen();

adapter.addExtension({
  incoming(message, request, callback) {
    // request is null for the in-process client of /control/publish.
    if (request !== null) {
      seen.headers = Object.assign({}, request.headers);
      seen.channels.push(message.channel === undefined ? null : message.channel);
      if (seen.channels.length > SEEN_CHANNELS) seen.channels.shift();
      if (message.channel === '/meta/connect') {
        ++state.connects;
        seen.lastConnect = { clientId: message.clientId === undefined ? null : message.clientId,
                             connectionType: message.connectionType === undefined
                               ? null : message.connectionType };
      }
    }
    callback(message);
  },
  outgoing(message, request, callback) {
    if (request !== null) {
      const ch = message.channel;
      const meta = typeof ch === 'string' && ch.startsWith('/meta/');
      if (meta && typeof message.error === 'string' && message.error.startsWith('401:')) {
        ++state.unknownClient;
      }
      if (ch === '/meta/handshake' && message.successful) ++state.handshakes;
      if (ch === '/meta/connect' && message.successful && message.clientId) {
        const i = state.clients.indexOf(message.clientId);
        if (i >= 0) state.clients.splice(i, 1);
        state.clients.push(message.clientId);
        if (state.clients.length > CLIENTS) state.clients.shift();
      }
      if ((ch === '/meta/handshake' || ch === '/meta/connect') && state.adviceHosts.length > 0) {
        message.advice = Object.assign({}, message.advice, { hosts: state.adviceHosts.slice() });
      }
      if (!meta && message.successful === undefined) {
        ++state.delivered;
        if (opts.stampNode) message.ext = Object.assign({}, message.ext, { node: opts.node });
        if (deliveryLog >= 0) {
          fs.writeSync(deliveryLog, JSON.stringify({ node: opts.node, channel: ch,
                                                     data: message.data }) + '\n');
        }
      }
    }
    callback(message);
  },
});

// Live subscriptions per channel pattern (network clients only).
const subscriptions = common.fayeSubscriptions(adapter);

const server = http.createServer();
const sockets = common.trackSockets(server);

const routes = {
  'POST /control/publish': common.fayePublishRoute(adapter),
  'POST /control/advice-hosts': async body => {
    const hosts = body.hosts;
    if (!Array.isArray(hosts) || hosts.some(h => typeof h !== 'string')) {
      throw Object.assign(new Error('"hosts" must be an array of strings'), { status: 400 });
    }
    state.adviceHosts = hosts.slice();
    return { hosts: state.adviceHosts };
  },
  'POST /control/forget': async body => {
    const clientId = body.clientId;
    if (typeof clientId !== 'string' || clientId === '') {
      throw Object.assign(new Error('"clientId" must be a non-empty string'), { status: 400 });
    }
    const exists = await new Promise(resolve => proxy.clientExists(clientId, resolve));
    if (!exists) throw Object.assign(new Error('no session ' + clientId), { status: 404 });
    await new Promise(resolve => proxy.destroyClient(clientId, resolve));
    return { forgotten: clientId };
  },
  'POST /control/drop': async (body, req) => ({ dropped: sockets.dropAll(req.socket) }),
  'GET /control/stats': async () => ({
    node: opts.node,
    engine: engineOptions ? 'redis' : 'memory',
    handshakes: state.handshakes,
    connects: state.connects,
    unknownClient: state.unknownClient,
    delivered: state.delivered,
    dropped: state.dropped,
    requeued: state.requeued,
    held: Array.from(proxy._connections.keys()),
    clients: state.clients.slice(),
    subscriptions: Object.fromEntries(subscriptions),
  }),
  'GET /control/queue': async (body, req) => {
    const clientId = new URL(req.url, 'http://127.0.0.1').searchParams.get('clientId');
    if (!clientId) throw Object.assign(new Error('clientId missing'), { status: 400 });
    const engine = proxy._engine;
    if (!engineOptions) {
      const queue = engine._messages.get(clientId);
      return { queued: queue ? queue.length : 0 };
    }
    const queued = await new Promise((resolve, reject) =>
      engine._redis.llen(engine._ns + '/clients/' + clientId + '/messages',
                         (err, n) => (err ? reject(err) : resolve(n))));
    return { queued };
  },
  'GET /control/seen': async () => seen,
  'POST /control/seen-reset': async () => {
    seen = newSeen();
    return { reset: true };
  },
};

server.on('request', (req, res) => {
  common.debug('http', req.method, req.url);
  if (common.handleControl(req, res, routes)) return;
  common.sendJson(res, 404, { error: 'not found' });
});
server.on('upgrade', (req, socket) => {
  socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
});
adapter.attach(server);

// X-Node on every response: set before Faye or the control API write theirs...
if (opts.node !== '') {
  server.prependListener('request', (req, res) => res.setHeader('X-Node', opts.node));
  // ...and written into the 101 of a websocket upgrade (one write carries the whole head).
  server.prependListener('upgrade', (req, socket) => {
    const write = socket.write;
    socket.write = function (chunk, ...rest) {
      socket.write = write;
      const head = Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
      const eol = head.indexOf('\r\n');
      if (head.startsWith('HTTP/1.1 101') && eol > 0) {
        chunk = Buffer.from(head.slice(0, eol + 2) + 'X-Node: ' + opts.node + '\r\n' +
                            head.slice(eol + 2), 'latin1');
      }
      return write.call(socket, chunk, ...rest);
    };
  });
}

// With Redis, "PORT n" once both connections are ready and the subscriber listens to the
// notification channels (a publish before that would reach no node until the next connect).
function redisReady() {
  if (!engineOptions) return Promise.resolve();
  const engine = proxy._engine;
  const clients = [engine._redis, engine._subscriber];
  // faye-redis sets no error handler: an 'error' (Redis gone) would end the process.
  for (const c of clients) {
    c.on('error', err => common.debug('redis error:', String(err && err.message || err)));
  }
  const ready = c => new Promise(resolve => (c.connected ? resolve() : c.once('ready', resolve)));
  const subscribed = new Promise(resolve => {
    let n = 0;
    engine._subscriber.on('subscribe', () => { if (++n === 2) resolve(); });
  });
  return Promise.all([...clients.map(ready), subscribed]);
}

redisReady().then(() => common.listen(server, opts.port, () => adapter.close()));
