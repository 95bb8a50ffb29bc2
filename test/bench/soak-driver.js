'use strict';
// The network and the publisher of the soak (test/bench/soak.sh): a TCP proxy in front of a test
// server that resets every connection through it every 1-3 s, and a message stream published on
// the server's own control API (not through the proxy).
//
//   node soak-driver.js --target PORT --seconds S [--rate MSGS_PER_S] [--cut-min MS] [--cut-max MS]
//                       [--seed N] [--wait-subscribed 0|1]
//
// With --wait-subscribed 1 the stream and the cuts start once the target's GET /control/stats
// shows a subscriber of /soak (at most 60 s; then the driver exits 1).
// Listens on 127.0.0.1 (ephemeral port) and prints "PORT <n>" once listening. Publishes
// {"id":N} to /soak, N = 0, 1, 2, ..., through POST 127.0.0.1:<target>/control/publish, --rate
// messages a second in ticks of 100 ms, and cuts (RST) every proxied connection at random
// intervals in [cut-min, cut-max] ms, for --seconds. Then it stops publishing and cutting, prints
// "PUBLISHED <n> CUTS <n>" and keeps proxying (no more cuts) until SIGTERM.
// Only loopback addresses are used; everything is bounded by --seconds.

const http = require('http');
const net = require('net');

const opts = { target: 0, seconds: 60, rate: 50, cutMin: 1000, cutMax: 3000, seed: 1, waitSubscribed: 0 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const name = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (m, c) => c.toUpperCase());
  if (!(name in opts) || i + 1 >= argv.length || !Number.isFinite(Number(argv[i + 1]))) {
    process.stderr.write('usage: node soak-driver.js --target PORT --seconds S [--rate N] ' +
                         '[--cut-min MS] [--cut-max MS] [--seed N]\n');
    process.exit(2);
  }
  opts[name] = Number(argv[i + 1]);
}
if (!opts.target) {
  process.stderr.write('soak-driver: --target is required\n');
  process.exit(2);
}

// A small deterministic generator, so that a run's cut times can be repeated (--seed).
let seed = opts.seed >>> 0 || 1;
function random() {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}

const pairs = new Set();
const proxy = net.createServer(client => {
  const upstream = net.connect(opts.target, '127.0.0.1');
  const pair = { client, upstream };
  pairs.add(pair);
  const drop = () => {
    pairs.delete(pair);
    client.destroy();
    upstream.destroy();
  };
  client.on('error', drop);
  upstream.on('error', drop);
  client.on('close', drop);
  upstream.on('close', drop);
  client.pipe(upstream);
  upstream.pipe(client);
});

let cuts = 0;
function cutAll() {
  for (const p of pairs) {
    // RST both sides, as a network failure would (resetAndDestroy: node >= 16.17).
    if (typeof p.client.resetAndDestroy === 'function') p.client.resetAndDestroy();
    else p.client.destroy();
    if (typeof p.upstream.resetAndDestroy === 'function') p.upstream.resetAndDestroy();
    else p.upstream.destroy();
  }
  pairs.clear();
  ++cuts;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
let published = 0;
let inFlight = 0;
function publish(count) {
  if (count <= 0) return;
  const first = published;
  published += count;
  // /control/publish with count > 1 adds "seq": 0..count-1 to each copy of the data object.
  const body = JSON.stringify({ channel: '/soak', data: { base: first }, count });
  ++inFlight;
  const req = http.request({ host: '127.0.0.1', port: opts.target, path: '/control/publish',
                             method: 'POST', agent,
                             headers: { 'Content-Type': 'application/json',
                                        'Content-Length': Buffer.byteLength(body) } }, res => {
    res.resume();
    res.on('end', () => {
      --inFlight;
      if (res.statusCode !== 200) process.stderr.write('soak-driver: publish got HTTP ' + res.statusCode + '\n');
    });
  });
  req.on('error', e => {
    --inFlight;
    process.stderr.write('soak-driver: publish failed: ' + e.message + '\n');
  });
  req.end(body);
}

function subscribed(callback) {
  http.get({ host: '127.0.0.1', port: opts.target, path: '/control/stats', agent }, res => {
    let text = '';
    res.on('data', c => { text += c; });
    res.on('end', () => {
      let n = 0;
      try { n = (JSON.parse(text).subscriptions || {})['/soak'] || 0; } catch (e) { n = 0; }
      callback(n > 0);
    });
  }).on('error', () => callback(false));
}

function whenSubscribed(start) {
  if (!opts.waitSubscribed) return start();
  const deadline = Date.now() + 60000;
  const poll = () => subscribed(ok => {
    if (ok) return start();
    if (Date.now() > deadline) {
      process.stderr.write('soak-driver: no subscriber of /soak within 60 s\n');
      process.exit(1);
    }
    setTimeout(poll, 100);
  });
  poll();
}

proxy.listen(0, '127.0.0.1', () => {
  process.stdout.write('PORT ' + proxy.address().port + '\n');
  whenSubscribed(run);
});

function run() {
  const perTick = opts.rate / 10;
  let owed = 0;
  const publisher = setInterval(() => {
    owed += perTick;
    const n = Math.floor(owed);
    owed -= n;
    // count 1 would not get a "seq": publish at least 2 at a time.
    if (n >= 2) publish(n);
    else owed += n;
  }, 100);
  let cutter = null;
  const scheduleCut = () => {
    cutter = setTimeout(() => {
      cutAll();
      scheduleCut();
    }, opts.cutMin + random() * (opts.cutMax - opts.cutMin));
  };
  scheduleCut();
  setTimeout(() => {
    clearInterval(publisher);
    clearTimeout(cutter);
    const done = () => {
      if (inFlight > 0) return setTimeout(done, 50);
      process.stdout.write('PUBLISHED ' + published + ' CUTS ' + cuts + '\n');
    };
    done();
  }, opts.seconds * 1000);
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
