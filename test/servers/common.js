'use strict';
// Shared plumbing of the test servers: command line, quiet stdout, control-API helpers, signals.
// stdout carries exactly one line, "PORT <n>"; diagnostics go to stderr and only when DEBUG=1.

const DEBUG = process.env.DEBUG === '1' || process.env.DEBUG === 'true';

function debug(...args) {
  if (DEBUG) process.stderr.write('[' + new Date().toISOString() + '] ' + args.map(a =>
    typeof a === 'string' ? a : JSON.stringify(a)).join(' ') + '\n');
}

// Libraries sometimes console.log (faye on a bad websocket frame): keep stdout clean so that an
// undrained pipe can never block the server.
function quietConsole() {
  const toStderr = (...args) => { if (DEBUG) console.error(...args); };
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
  console.warn = toStderr;
  process.stdout.on('error', () => {});
}

function usage(script, extra) {
  process.stderr.write(`usage: node ${script} [--timeout SECONDS] [--port N]${extra || ''}\n`);
  process.exit(2);
}

// Parses "--name value" / "--name=value" options; `spec` maps a name to its default: a number
// (the value must be a number >= 0) or a string (the value is kept as given).
function parseArgs(argv, spec, script, extraUsage) {
  const out = Object.assign({}, spec);
  for (let i = 0; i < argv.length; ++i) {
    let arg = argv[i], value;
    if (arg === '-h' || arg === '--help') usage(script, extraUsage);
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const name = arg.replace(/^--/, '').replace(/-([a-z])/g, (m, c) => c.toUpperCase());
    if (!arg.startsWith('--') || !(name in spec)) {
      process.stderr.write(`unknown option ${arg}\n`);
      usage(script, extraUsage);
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) usage(script, extraUsage);
      value = argv[++i];
    }
    if (typeof spec[name] === 'string') {  // a string option: taken as is
      out[name] = value;
      continue;
    }
    const n = Number(value);
    if (value === '' || !Number.isFinite(n) || n < 0) {
      process.stderr.write(`bad value for ${arg}: ${value}\n`);
      usage(script, extraUsage);
    }
    out[name] = n;
  }
  return out;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body).toString(),
    'Cache-Control': 'no-cache, no-store',
  });
  res.end(body);
}

// The messages a /control/publish request asks for: `count` copies of `data`, each object copy
// with its 0-based "seq" merged in when count > 1.
function publications(body) {
  const channel = body.channel;
  if (typeof channel !== 'string' || !channel.startsWith('/') || channel.includes('*')) {
    throw new Error('"channel" must be a channel name');
  }
  const count = body.count === undefined ? 1 : Number(body.count);
  if (!Number.isInteger(count) || count < 0 || count > 1000000) {
    throw new Error('"count" must be an integer >= 0');
  }
  const data = body.data === undefined ? null : body.data;
  const isObject = data !== null && typeof data === 'object' && !Array.isArray(data);
  const out = [];
  for (let i = 0; i < count; ++i) {
    out.push(count > 1 && isObject ? Object.assign({}, data, { seq: i }) : data);
  }
  return { channel, items: out };
}

// Serves /control/* with `routes` ({'POST /control/publish': async (body, req) => result}).
// Returns true when the request was a control request.
function handleControl(req, res, routes) {
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  if (path !== '/control' && !path.startsWith('/control/')) return false;
  const route = routes[req.method + ' ' + path];
  if (!route) {
    sendJson(res, 404, { error: 'no such control endpoint: ' + req.method + ' ' + path });
    return true;
  }
  readBody(req).then(text => {
    let body = {};
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
      } catch (e) {
        throw Object.assign(new Error('bad JSON body: ' + e.message), { status: 400 });
      }
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw Object.assign(new Error('the body must be a JSON object'), { status: 400 });
    }
    return route(body, req);
  }).then(result => {
    debug('control', req.method, path, '->', result);
    sendJson(res, 200, result);
  }, err => {
    debug('control', req.method, path, 'failed:', String(err && err.message || err));
    sendJson(res, err && err.status || 500, { error: String(err && err.message || err) });
  });
  return true;
}

// Tracks sockets so that /control/drop can cut every connection (a network failure).
function trackSockets(server) {
  const sockets = new Set();
  server.on('connection', s => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    dropAll(except) {
      let n = 0;
      for (const s of sockets) {
        if (s === except) continue;
        s.destroy();
        ++n;
      }
      return n;
    },
  };
}

function listen(server, port, onExit) {
  server.requestTimeout = 0;
  server.keepAliveTimeout = 60000;
  server.timeout = 0;
  server.on('error', err => {
    process.stderr.write('server error: ' + (err && err.stack || err) + '\n');
    process.exit(1);
  });
  const stop = sig => {
    debug('exiting on', sig);
    try { if (onExit) onExit(); } catch (e) { /* ignore */ }
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => stop('SIGHUP'));
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write('PORT ' + server.address().port + '\n');
    quietConsole();
    debug('listening on 127.0.0.1:' + server.address().port);
  });
}

// Is `channel` (a name or a pattern such as /a/** or /a/*) inside the `/prefix/**` tree?
function under(prefix, channel) {
  return typeof channel === 'string' && channel.startsWith(prefix + '/');
}

// Live subscriptions per channel pattern of a Faye adapter (network clients only: the in-process
// control client subscribes to nothing), kept up to date from its events.
function fayeSubscriptions(adapter) {
  const subscriptions = new Map();
  adapter.on('subscribe', (clientId, channel) =>
    subscriptions.set(channel, (subscriptions.get(channel) || 0) + 1));
  adapter.on('unsubscribe', (clientId, channel) => {
    const n = (subscriptions.get(channel) || 0) - 1;
    if (n > 0) subscriptions.set(channel, n); else subscriptions.delete(channel);
  });
  return subscriptions;
}

// The POST /control/publish route of a Faye server: publishes `publications(body)` through the
// adapter's in-process client and answers {"published":N}.
function fayePublishRoute(adapter) {
  return async body => {
    const { channel, items } = publications(body);
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
  };
}

// The test servers' TLS certificate (self-signed, CA:TRUE, IP 127.0.0.1 and DNS localhost, valid
// until 2126) and its key: test material, never a secret. Clients of the tests turn verification
// off or trust this certificate (test_websocket_transport.cpp carries a copy as its CA).
const TEST_CERT =
  '-----BEGIN CERTIFICATE-----\n' +
  'MIIBmzCCAUGgAwIBAgIUV0uINHGhtS4JTozU8sJC7WlnhFEwCgYIKoZIzj0EAwIw\n' +
  'FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyNzIxMjIxNFoYDzIxMjYxMTAz\n' +
  'MjEyMjE0WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO\n' +
  'PQMBBwNCAARU0T/uSmSEp3Vl2dEw3fCG5p7cZIW0NDCJF0aEZantldKp1Cm2tg2d\n' +
  'UYnA9FTnZjMYDr8Y4RnwTwKiAPs4oyhNo28wbTAdBgNVHQ4EFgQU0n+Qk9dRkA2J\n' +
  'MBdxhvQ0cuOAUB4wHwYDVR0jBBgwFoAU0n+Qk9dRkA2JMBdxhvQ0cuOAUB4wGgYD\n' +
  'VR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI\n' +
  'zj0EAwIDSAAwRQIhAM0XXVcccYZ1vEYSim3Co0e+QaxJu2I6R0DTNKVDcNsaAiBt\n' +
  'ViusKJ+z3DzA6115uo7OUrLdA/G5WzoClIdEPpv0vw==\n' +
  '-----END CERTIFICATE-----\n';
const TEST_KEY =
  '-----BEGIN PRIVATE KEY-----\n' +
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTEt7Vxx6HQps+RoH\n' +
  'zSDQV9wR7sOUh+U8DKhi45T6E2GhRANCAARU0T/uSmSEp3Vl2dEw3fCG5p7cZIW0\n' +
  'NDCJF0aEZantldKp1Cm2tg2dUYnA9FTnZjMYDr8Y4RnwTwKiAPs4oyhN\n' +
  '-----END PRIVATE KEY-----\n';

module.exports = { TEST_CERT, TEST_KEY, DEBUG, debug, parseArgs, handleControl, sendJson,
                   publications, fayeSubscriptions, fayePublishRoute, trackSockets,
                   listen, under, quietConsole };
