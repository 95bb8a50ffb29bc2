'use strict';
// Faye 1.4.3 Bayeux server for the uvcometd tests: websocket, long-polling, callback-polling at
// http://127.0.0.1:<port>/bayeux, plus a control API under /control/.
//
//   node faye-server.js [--timeout SECONDS] [--port N] [--upgrade 0|1|2] [--auth 0|1]
//                       [--auth-http 0|1] [--replay-keep N]
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
//   GET  /control/stats       -> {"clients":N,"handshakes":N,"connects":N,"connectReplies":N,
//                                  "heldConnects":N,
//                                  "subscriptions":{"<channel pattern>":<subscribers>,...},
//                                  "authOk":N,"authFailures":N}   (the auth counters stay 0
//                                  unless --auth or --auth-http is on)
//        connects: /meta/connect messages received; connectReplies: replies to them sent (a held
//        connect is answered when it ends, also when its client is gone; one that a newer connect
//        of its client replaces is never answered); heldConnects: the network clients whose connect
//        the server holds now.
//
// What network clients sent (the in-process /control/publish client is not recorded):
//   GET  /control/seen        -> {"headers":{...},"handshakeExt":ext|null,"connectExt":ext|null,
//                                  "subscribeExt":ext|null,"publishExt":ext|null,"channels":[...]}
//        headers: the HTTP request headers (names lower-cased, as Node gives them) of the request
//        that carried the latest Bayeux message: the POST/GET for long-polling/callback-polling,
//        the upgrade request for websocket (Faye hands that one to extensions for every message
//        of the socket). *Ext: the "ext" of the latest /meta/handshake, /meta/connect,
//        /meta/subscribe and non-meta publish (null when none or when it had no ext).
//        channels: the channels of the last 50 messages received, oldest first.
//   POST /control/seen-reset  -> {"reset":true}: back to {} / null / [].
//
// Authentication (token state: the current token, initially "t1"):
//   --auth 1       a /meta/handshake is accepted only if ext.auth.token is the current token or the
//        request has "Authorization: Bearer <current token>"; otherwise it fails with error
//        "401::invalid token" and Faye's default advice for a failed handshake,
//        {"reconnect":"handshake"} (no interval). An accepted client keeps the token it
//        handshook with; once the token is rotated every later message of that client (connect,
//        subscribe, publish, disconnect...) fails with "401::token expired", advice
//        {"reconnect":"handshake"}, and the client is destroyed right after the reply (the next
//        message gets "401:<id>:Unknown client"; over websocket the socket is closed, as with
//        /control/expire). A /meta/connect already held when the token rotates ends normally.
//   --auth-http 1  every /bayeux request (CORS preflights aside) must carry
//        "Authorization: Bearer <current token>", else HTTP 401 with an empty body (and
//        "WWW-Authenticate: Bearer"); a websocket upgrade without it is refused with HTTP 401.
//        Messages on an already open websocket are not re-checked. Independent of --auth (both
//        may be on; the HTTP check comes first).
//   POST /control/auth {"token":"NEW"} -> {"token":"NEW"}: rotates the current token.
//   Stats: authOk counts accepted handshakes (--auth) and accepted HTTP requests/upgrades
//   (--auth-http); authFailures counts refused handshakes, messages and HTTP requests/upgrades.
//
// Replay (Salesforce streaming style), always on for the channels under /replay/:
//   Every message published to a /replay/** channel (by a network client or /control/publish)
//   gets data {"event":{"replayId":N},"payload":<original data>}, N counting 1, 2, ... per
//   channel. The last --replay-keep (default 100) events of each channel are retained.
//   A handshake with ext.replay === true gets ext.replay = true in its reply; such a client may
//   send ext.replay = {"<channel>": ID, ...} in a /meta/subscribe (exact channel names under
//   /replay/; other keys ignored; ext.replay of clients that did not ask at handshake ignored):
//     ID -1          only new events (the same as no entry for the channel)
//     ID -2          every retained event, then new ones
//     ID >= 0        every retained event with replayId > ID, then new ones (nothing when ID is
//                    the last id or beyond)
//     ID < oldest retained id - 1 (events after ID were trimmed), or not an integer >= -2:
//                    the subscribe fails with "400::The replayId <ID> you provided was invalid.
//                    Please provide a valid ID, -2 to replay all events, or -1 to replay only new
//                    events." and subscribes to nothing.
//   The subscribe reply echoes ext.replay as sent. Replayed events are exactly the messages the
//   live subscribers got, sent to that client only, in order, after the subscribe reply and
//   before any event published after the subscribe (long-polling: in the held or next connect).
//   POST /control/replay-trim {"channel":"/replay/a","keep":K} -> keeps the last K events, answers
//        like replay-log.
//   GET  /control/replay-log?channel=/replay/a, POST /control/replay-log {"channel":"/replay/a"}
//        -> {"ids":[<retained replayIds, oldest first>],"last":<last replayId, 0 if none>}

const http = require('http');
const faye = require('faye');
const common = require('./common');
const { createAuth } = require('./auth');
const { createReplay } = require('./replay');

// --upgrade 0: websocket upgrades work (default); 1: refused with HTTP 400 while the handshake
// still advertises websocket; 2: the TCP connection is accepted and the upgrade never answered.
// --auth, --auth-http, --replay-keep: see the header.
const opts = common.parseArgs(process.argv.slice(2),
  { timeout: 5, port: 0, upgrade: 0, auth: 0, authHttp: 0, replayKeep: 100 }, 'faye-server.js',
  ' [--upgrade 0|1|2] [--auth 0|1] [--auth-http 0|1] [--replay-keep N]');

const adapter = new faye.NodeAdapter({ mount: '/bayeux', timeout: opts.timeout });
const engine = adapter._server._engine;

const state = {
  silentCalls: 0,  // remote calls to /service/silent (never answered)
  adviceNone: false,
  clients: new Set(),   // clientIds handshaken over the network and not destroyed since
  handshakes: 0,
  connects: 0,
  connectReplies: 0,
};

const TERMINATED = '403::session terminated by test';

// GET /control/seen: what network clients sent last.
const SEEN_CHANNELS = 50;
const newSeen = () => ({ headers: {}, handshakeExt: null, connectExt: null, subscribeExt: null,
                         publishExt: null, channels: [] });
let seen = newSeen();
const copyExt = ext => (ext === undefined ? null : JSON.parse(JSON.stringify(ext)));

// Extensions run in the order added: seen (the message as received), auth, the /forbidden,
// /private and advice-none features, replay (numbers only what will be published).
adapter.addExtension({
  incoming(message, request, callback) {
    if (request !== null) {
      seen.headers = Object.assign({}, request.headers);
      const ch = message.channel;
      if (ch === '/meta/handshake') seen.handshakeExt = copyExt(message.ext);
      else if (ch === '/meta/connect') seen.connectExt = copyExt(message.ext);
      else if (ch === '/meta/subscribe') seen.subscribeExt = copyExt(message.ext);
      else if (typeof ch === 'string' && !ch.startsWith('/meta/')) {
        seen.publishExt = copyExt(message.ext);
      }
      seen.channels.push(ch === undefined ? null : ch);
      if (seen.channels.length > SEEN_CHANNELS) seen.channels.shift();
    }
    callback(message);
  },
});

const auth = createAuth(adapter, opts);
adapter.addExtension(auth.extension);

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
      if (message.channel === '/meta/connect') ++state.connectReplies;
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

// Remote calls: /service/echo answers with the caller's data (the publish reply, which keeps the
// caller's id, gets the data), /service/refuse refuses, /service/silent never answers.
const echoes = new Map();  // clientId + ' ' + id -> data, between the request and its reply
adapter.addExtension({
  incoming(message, request, callback) {
    const ch = message.channel;
    if (ch === '/service/echo') echoes.set(message.clientId + ' ' + message.id, message.data);
    else if (ch === '/service/refuse') message.error = '403:refuse:refused by the test server';
    else if (ch === '/service/silent') return void ++state.silentCalls;  // never answered
    callback(message);
  },
  outgoing(message, request, callback) {
    if (message.channel === '/service/echo' && message.successful !== undefined) {
      const key = message.clientId + ' ' + message.id;
      if (echoes.has(key)) {
        message.data = echoes.get(key);
        echoes.delete(key);
      }
    }
    callback(message);
  },
});

const replay = createReplay(adapter, opts.replayKeep);
adapter.addExtension(replay.extension);

adapter.on('disconnect', clientId => state.clients.delete(clientId));
// Live subscriptions per channel pattern (network clients only).
const subscriptions = common.fayeSubscriptions(adapter);

const server = http.createServer();
const sockets = common.trackSockets(server);

const routes = {
  'POST /control/publish': common.fayePublishRoute(adapter),
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
    connectReplies: state.connectReplies,
    heldConnects: Array.from(engine._connections.entries()).filter(([id, c]) =>
      state.clients.has(id) && c._timeouts && c._timeouts.has('connection')).length,
    silentCalls: state.silentCalls,
    subscriptions: Object.fromEntries(subscriptions),
    ...auth.stats(),
  }),
  'GET /control/seen': async () => seen,
  'POST /control/seen-reset': async () => {
    seen = newSeen();
    return { reset: true };
  },
  ...auth.routes,
  ...replay.routes,
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
