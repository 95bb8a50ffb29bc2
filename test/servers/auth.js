'use strict';
// Token authentication for faye-server.js (--auth 1 and/or --auth-http 1); the behaviour is
// documented in the header of faye-server.js. Network clients only: the in-process client used by
// /control/publish (request === null) is never refused.

const common = require('./common');

const INVALID = '401::invalid token';
const EXPIRED = '401::token expired';

// The token of an "Authorization: Bearer <token>" header, or null.
function bearer(request) {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(request && request.headers.authorization || '');
  return m ? m[1] : null;
}

function createAuth(adapter, opts) {
  const engine = adapter._server._engine;
  const state = {
    token: 't1',
    clients: new Map(),   // clientId -> the token it handshook with
    ok: 0,                // accepted handshakes (Bayeux) / requests (HTTP)
    failures: 0,          // refused handshakes, messages and HTTP requests
  };

  const extension = {
    incoming(message, request, callback) {
      if (!opts.auth || request === null || message.error) return callback(message);
      if (message.channel === '/meta/handshake') {
        const ext = message.ext;
        const token = ext && ext.auth && ext.auth.token;
        if (token !== state.token && bearer(request) !== state.token) {
          ++state.failures;
          common.debug('auth: handshake refused, token', token, 'bearer', bearer(request));
          message.error = INVALID;
        }
      } else if (state.clients.has(message.clientId) &&
                 state.clients.get(message.clientId) !== state.token) {
        ++state.failures;
        message.error = EXPIRED;
        common.debug('auth: token expired for', message.clientId, message.channel);
        // Destroyed once this batch is answered: destroying it now would turn the error into
        // Faye's "Unknown client".
        const clientId = message.clientId;
        setImmediate(() => engine.destroyClient(clientId));
      }
      callback(message);
    },
    outgoing(message, request, callback) {
      if (opts.auth && request !== null) {
        if (message.channel === '/meta/handshake' && message.successful && message.clientId) {
          // Accepted just now (synchronously), so with the current token.
          ++state.ok;
          state.clients.set(message.clientId, state.token);
        } else if (message.error === EXPIRED) {
          message.advice = { reconnect: 'handshake' };
        }
      }
      callback(message);
    },
  };
  adapter.on('disconnect', clientId => state.clients.delete(clientId));

  // --auth-http 1: every request to /bayeux (but CORS preflights) must carry the current token as
  // a bearer header, else HTTP 401 with an empty body; for websocket the upgrade is refused.
  if (opts.authHttp) {
    const handle = adapter.handle, handleUpgrade = adapter.handleUpgrade;
    adapter.handle = function(request, response) {
      if (request.method === 'OPTIONS' || bearer(request) === state.token) {
        ++state.ok;
        return handle.apply(this, arguments);
      }
      ++state.failures;
      common.debug('auth: HTTP 401 for', request.method, request.url);
      request.resume();   // discard the body, keep the connection usable
      response.writeHead(401, { 'Content-Length': '0', 'WWW-Authenticate': 'Bearer',
                                'Cache-Control': 'no-cache, no-store' });
      response.end();
    };
    adapter.handleUpgrade = function(request, socket) {
      if (bearer(request) === state.token) {
        ++state.ok;
        return handleUpgrade.apply(this, arguments);
      }
      ++state.failures;
      common.debug('auth: upgrade refused with 401');
      socket.on('error', () => {});
      socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nConnection: close\r\n' +
                 'Content-Length: 0\r\n\r\n');
    };
  }

  const routes = {
    'POST /control/auth': async body => {
      if (typeof body.token !== 'string' || body.token === '') {
        throw Object.assign(new Error('"token" must be a non-empty string'), { status: 400 });
      }
      state.token = body.token;
      return { token: state.token };
    },
  };

  return {
    extension,
    routes,
    stats: () => ({ authOk: state.ok, authFailures: state.failures }),
  };
}

module.exports = { createAuth, bearer, INVALID, EXPIRED };
