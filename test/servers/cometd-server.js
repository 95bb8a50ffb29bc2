'use strict';
// cometd-nodejs-server 1.2.1 Bayeux server for the uvcometd tests: long-polling only at
// http://127.0.0.1:<port>/cometd (and /cometd/*), plus a control API under /control/.
// A websocket upgrade is left to the library, which answers HTTP 400 (tests rely on it).
//
//   node cometd-server.js [--timeout SECONDS] [--max-interval MS] [--port N] [--ack 0|1]
//
// Prints "PORT <n>" on stdout once listening, nothing else. DEBUG=1 logs to stderr.
//
// Test features (the error strings are the library's own):
//   publish to /forbidden/**       -> error "403::publish_denied"   (security policy canPublish)
//   subscribe to /private/**       -> error "403::subscribe_denied" (security policy canSubscribe)
//   POST /control/publish     {"channel","data","count"} -> {"published":N}
//   POST /control/advice-none {"enabled":bool}  -> {"enabled":bool}; while enabled every
//        /meta/connect fails at once with "403::session terminated by test", advice reconnect none
//   POST /control/expire      -> {"expired":N}: removes every session as if it had timed out
//        (a held connect is released; the next one gets "402::session_unknown" + handshake advice)
//   POST /control/drop        -> {"dropped":N}: destroys every other TCP connection
//   GET  /control/stats       -> {"clients":N,"handshakes":N,"connects":N,"connectReplies":N,
//                                  "heldConnects":N,
//                                  "subscriptions":{"<channel pattern>":<subscribers>,...}}
//        connects: /meta/connect messages received; connectReplies: replies to them sent (one
//        that a newer connect of its session replaces is never answered); heldConnects: the
//        sessions whose connect the server holds now.
//
// --ack 1 (default 0) installs the library's AcknowledgedMessagesExtension (ack-extension.js),
// for the sessions whose handshake carries ext.ack === true (the others are unaffected):
//   - the handshake reply carries ext.ack = true;
//   - each /meta/connect reply carries ext.ack = <batch number> (1, 2, 3... per session);
//   - the client sends, in ext.ack of its next /meta/connect, the last batch number it received;
//     the messages of the batches up to it are then forgotten;
//   - messages are delivered only in /meta/connect replies (never in the reply of another
//     request), and each connect reply carries every message not yet acknowledged (so a connect
//     acking N-1 after reply N gets reply N's messages again, then the new ones); when unacked
//     messages are pending the connect is answered at once instead of being held.

const http = require('http');
const cometdLib = require('cometd-nodejs-server');
const common = require('./common');

const opts = common.parseArgs(process.argv.slice(2),
  { timeout: 5, maxInterval: 10000, port: 0, ack: 0 }, 'cometd-server.js',
  ' [--max-interval MS] [--ack 0|1]');

const cometd = cometdLib.createCometDServer({
  timeout: Math.round(opts.timeout * 1000),
  maxInterval: opts.maxInterval,
});

const state = {
  silentCalls: 0,  // remote calls to /service/silent (never answered)
  adviceNone: false,
  sessions: new Map(),   // id -> ServerSession
  handshakes: 0,
  connects: 0,
  connectReplies: 0,
};

const TERMINATED = '403::session terminated by test';

if (opts.ack) {
  const { AcknowledgedMessagesExtension } = require('cometd-nodejs-server/ack-extension');
  cometd.addExtension(new AcknowledgedMessagesExtension());
}

cometd.addListener('sessionAdded', session => {
  ++state.handshakes;
  state.sessions.set(session.id, session);
});
cometd.addListener('sessionRemoved', session => state.sessions.delete(session.id));

cometd.policy = {
  canPublish(session, message, channel, callback) {
    callback(undefined, !common.under('/forbidden', channel.name));
  },
  canSubscribe(session, message, channel, callback) {
    callback(undefined, !common.under('/private', channel.name));
  },
};

cometd.addExtension({
  incoming(server, session, message, callback) {
    if (message.channel === '/meta/connect') {
      ++state.connects;
      // Refusing the message fails the connect at once (not held); outgoing rewrites the reply.
      if (state.adviceNone) return callback(undefined, false);
    }
    callback(undefined, true);
  },
  outgoing(server, sender, session, message, callback) {
    if (message.channel === '/meta/connect') ++state.connectReplies;
    if (message.channel === '/meta/connect' && state.adviceNone) {
      message.successful = false;
      message.error = TERMINATED;
      message.advice = { reconnect: 'none' };
    }
    callback(undefined, true);
  },
});

// Remote calls: /service/echo answers with the caller's data (a server-side channel listener
// filling the publish reply, which carries the caller's id); /service/refuse refuses;
// /service/silent never answers.
cometd.createServerChannel('/service/echo').addListener('message', (session, channel, message, callback) => {
  message.reply.data = message.data;
  callback(undefined, true);
});
cometd.createServerChannel('/service/refuse').addListener('message', (session, channel, message, callback) => {
  message.reply.successful = false;
  message.reply.error = '403:refuse:refused by the test server';
  callback(undefined, true);
});
cometd.createServerChannel('/service/silent').addListener('message', () => ++state.silentCalls);

// Subscribers per channel pattern, from the sessions' own subscription lists.
function subscriptionCounts() {
  const counts = {};
  for (const session of state.sessions.values()) {
    for (const channel of session.subscriptions) counts[channel.name] = (counts[channel.name] || 0) + 1;
  }
  return counts;
}

const server = http.createServer();
const sockets = common.trackSockets(server);

const routes = {
  'POST /control/publish': async body => {
    const { channel, items } = common.publications(body);
    const serverChannel = cometd.createServerChannel(channel);
    await Promise.all(items.map(data => new Promise((resolve, reject) => {
      serverChannel.publish(null, data, (failure) => {
        if (failure) reject(new Error('publish failed: ' + (failure.message || failure)));
        else resolve();
      });
    })));
    return { published: items.length };
  },
  'POST /control/advice-none': async body => {
    state.adviceNone = !!body.enabled;
    return { enabled: state.adviceNone };
  },
  'POST /control/expire': async () => {
    const sessions = Array.from(state.sessions.values());
    for (const session of sessions) {
      // What the sweeper does on expiry, then release a held /meta/connect like a disconnect.
      cometd._removeServerSession(session, true);
      session._flush();
    }
    state.sessions.clear();
    return { expired: sessions.length };
  },
  'POST /control/drop': async (body, req) => ({ dropped: sockets.dropAll(req.socket) }),
  // Delivers {channel, data} to every session directly (no subscription needed).
  'POST /control/deliver': async body => {
    for (const session of state.sessions.values()) session.deliver(null, body.channel, body.data);
    return { delivered: state.sessions.size };
  },
  'GET /control/stats': async () => ({
    clients: state.sessions.size,
    handshakes: state.handshakes,
    connects: state.connects,
    connectReplies: state.connectReplies,
    heldConnects: Array.from(state.sessions.values()).filter(s => s._scheduler).length,
    silentCalls: state.silentCalls,
    subscriptions: subscriptionCounts(),
  }),
};

server.on('request', (req, res) => {
  common.debug('http', req.method, req.url);
  if (common.handleControl(req, res, routes)) return;
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  if (path === '/cometd' || path.startsWith('/cometd/')) return cometd.handle(req, res);
  common.sendJson(res, 404, { error: 'not found' });
});

common.listen(server, opts.port, () => cometd.close());
