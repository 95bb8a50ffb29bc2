'use strict';
// Faye 1.4.3 Bayeux server for the uvcometd tests: websocket, long-polling, callback-polling at
// http://127.0.0.1:<port>/bayeux, plus a control API under /control/.
//
//   node faye-server.js [--timeout SECONDS] [--port N]
//
// Prints "PORT <n>" on stdout once listening, nothing else. DEBUG=1 logs to stderr.
//
// Test features:
//   publish to /forbidden/**       -> error "403:<channel>:Forbidden channel"
//   subscribe to /private/**       -> error "403:<channel>:Subscription denied"
//   POST /control/publish     {"channel","data","count"} -> {"published":N}
//   POST /control/advice-none {"enabled":bool}  -> {"enabled":bool}; while enabled every
//        /meta/connect fails at once with "403::session terminated by test", advice reconnect none
//   POST /control/expire      -> {"expired":N}: destroys every client session (the next connect
//        gets "401:<id>:Unknown client" with advice reconnect handshake)
//   POST /control/drop        -> {"dropped":N}: destroys every other TCP connection (websockets too)
//   GET  /control/stats       -> {"clients":N,"handshakes":N,"connects":N,
//                                  "subscriptions":{"<channel pattern>":<subscribers>,...}}

const http = require('http');
const faye = require('faye');
const common = require('./common');

// --upgrade 0: websocket upgrades work (default); 1: refused with HTTP 400 while the handshake
// still advertises websocket; 2: the TCP connection is accepted and the upgrade never answered.
const opts = common.parseArgs(process.argv.slice(2), { timeout: 5, port: 0, upgrade: 0 }, 'faye-server.js');

const adapter = new faye.NodeAdapter({ mount: '/bayeux', timeout: opts.timeout });
const engine = adapter._server._engine;

const state = {
  adviceNone: false,
  clients: new Set(),   // clientIds handshaken over the network and not destroyed since
  handshakes: 0,
  connects: 0,
};

const TERMINATED = '403::session terminated by test';

adapter.addExtension({
  incoming(message, request, callback) {
    // request is null for the in-process client used by /control/publish: never refuse it.
    if (request !== null) {
      const ch = message.channel;
      if (ch === '/meta/connect') {
        ++state.connects;
        if (state.adviceNone) message.error = TERMINATED;
      } else if (ch === '/meta/subscribe') {
        const subs = [].concat(message.subscription || []);
        const denied = subs.find(s => common.under('/private', s));
        if (denied) message.error = '403:' + denied + ':Subscription denied';
      } else if (common.under('/forbidden', ch)) {
        message.error = '403:' + ch + ':Forbidden channel';
      }
    }
    callback(message);
  },
  outgoing(message, request, callback) {
    if (request !== null) {
      if (message.channel === '/meta/handshake' && message.successful && message.clientId) {
        ++state.handshakes;
        state.clients.add(message.clientId);
      } else if (message.channel === '/meta/connect' && state.adviceNone) {
        message.successful = false;
        message.error = TERMINATED;
        message.advice = { reconnect: 'none' };
      }
    }
    callback(message);
  },
});

adapter.on('disconnect', clientId => state.clients.delete(clientId));
// Live subscriptions per channel pattern (network clients only: the control client subscribes
// to nothing).
const subscriptions = new Map();
adapter.on('subscribe', (clientId, channel) =>
  subscriptions.set(channel, (subscriptions.get(channel) || 0) + 1));
adapter.on('unsubscribe', (clientId, channel) => {
  const n = (subscriptions.get(channel) || 0) - 1;
  if (n > 0) subscriptions.set(channel, n); else subscriptions.delete(channel);
});

const server = http.createServer();
const sockets = common.trackSockets(server);

const routes = {
  'POST /control/publish': async body => {
    const { channel, items } = common.publications(body);
    const client = adapter.getClient();
    const publish = data => new Promise((resolve, reject) => {
      client.publish(channel, data).then(resolve, err =>
        reject(new Error('publish failed: ' + (err && err.message || err))));
    });
    // The in-process client reorders the messages queued while it handshakes: publish the first
    // alone, then the rest together (they then reach the engine in order).
    if (items.length > 0) await publish(items[0]);
    await Promise.all(items.slice(1).map(publish));
    return { published: items.length };
  },
  'POST /control/advice-none': async body => {
    state.adviceNone = !!body.enabled;
    return { enabled: state.adviceNone };
  },
  'POST /control/expire': async () => {
    const ids = Array.from(state.clients);
    for (const id of ids) engine.destroyClient(id);
    state.clients.clear();
    return { expired: ids.length };
  },
  'POST /control/drop': async (body, req) => ({ dropped: sockets.dropAll(req.socket) }),
  'GET /control/stats': async () => ({
    clients: state.clients.size,
    handshakes: state.handshakes,
    connects: state.connects,
    subscriptions: Object.fromEntries(subscriptions),
  }),
};

server.on('request', (req, res) => {
  common.debug('http', req.method, req.url);
  if (common.handleControl(req, res, routes)) return;
  common.sendJson(res, 404, { error: 'not found' });
});
// Upgrades outside /bayeux are refused (faye handles its own before this listener).
server.on('upgrade', (req, socket) => {
  socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
});

adapter.attach(server);
if (opts.upgrade !== 0) {
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req, socket) => {
    if (opts.upgrade === 1) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    } else {
      socket.on('error', () => {});  // hold it open, say nothing
    }
  });
}

common.listen(server, opts.port, () => adapter.close());
