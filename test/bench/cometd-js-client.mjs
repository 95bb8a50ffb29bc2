#!/usr/bin/env node
// The CometD JavaScript client (npm `cometd` 9 on `cometd-nodejs-client` 2, both from
// test/servers/node_modules) as a comparison contender for uvcometd-bench: it subscribes to a
// channel, counts COUNT messages and reports its own process CPU per message
// (process.cpuUsage(), user + system) over the same span as uvcometd-bench: from the subscribe
// reply to the last message.
//
//   node cometd-js-client.mjs --url URL [--count N] [--channel /bench]
//                             [--transport websocket|long-polling] [--timeout S]
//
// Prints "SUBSCRIBED" once the subscription is confirmed (a driver may then make the server
// publish), then "key: value" lines and a "summary:" line. Exits 1 on a failed handshake or
// subscribe, or when COUNT messages have not arrived within --timeout seconds (default 120).
// UVCOMETD_SERVERS_DIR overrides where node_modules is looked for.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const serversDir = process.env.UVCOMETD_SERVERS_DIR || path.join(here, '..', 'servers');
const modules = path.join(serversDir, 'node_modules');
const processStart = process.cpuUsage();

const opts = { url: null, count: 20000, channel: '/bench', transport: 'websocket', timeout: 120 };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) { console.error(`cometd-js-client: ${k} needs a value`); process.exit(2); }
    switch (k) {
      case '--url': opts.url = v; break;
      case '--count': opts.count = Number(v); break;
      case '--channel': opts.channel = v; break;
      case '--transport': opts.transport = v; break;
      case '--timeout': opts.timeout = Number(v); break;
      default: console.error(`cometd-js-client: unknown argument ${k}`); process.exit(2);
    }
  }
  if (!opts.url || !(opts.count > 0)) {
    console.error('usage: cometd-js-client.mjs --url URL [--count N] [--channel C] ' +
                  '[--transport websocket|long-polling] [--timeout S]');
    process.exit(2);
  }
}

const { adapt } = await import(
  pathToFileURL(path.join(modules, 'cometd-nodejs-client', 'cometd-nodejs-client.js')).href);
const { CometD } = await import(pathToFileURL(path.join(modules, 'cometd', 'cometd.js')).href);
adapt();

const fail = (why) => {
  console.error(`cometd-js-client: error: ${why}`);
  process.exit(1);
};
const limit = setTimeout(() => fail(`run limit of ${opts.timeout} s exceeded`), opts.timeout * 1000);

const cometd = new CometD();
for (const t of cometd.getTransportTypes()) {
  if (t !== opts.transport) cometd.unregisterTransport(t);
}
if (cometd.getTransportTypes().length !== 1) fail(`no transport ${opts.transport}`);
cometd.configure({ url: opts.url, logLevel: 'warn' });

let received = 0;
let start = null;  // { cpu, wall } at the subscribe reply
const finish = () => {
  const cpu = process.cpuUsage(start.cpu);
  const wall = Number(process.hrtime.bigint() - start.wall) / 1e9;
  const total = process.cpuUsage(processStart);
  const perMsg = (cpu.user + cpu.system) / opts.count;
  console.log(`client: cometd-js ${opts.transport}`);
  console.log(`count: ${opts.count}`);
  console.log(`wall_s: ${wall.toFixed(4)}`);
  console.log(`msgs_per_s: ${Math.round(opts.count / wall)}`);
  console.log(`cpu_user_s: ${(cpu.user / 1e6).toFixed(4)}`);
  console.log(`cpu_sys_s: ${(cpu.system / 1e6).toFixed(4)}`);
  console.log(`cpu_us_per_msg: ${perMsg.toFixed(3)}`);
  console.log(`cpu_share_of_wall: ${((cpu.user + cpu.system) / 1e6 / wall).toFixed(2)}`);
  console.log(`process_cpu_s: ${((total.user + total.system) / 1e6).toFixed(4)}`);
  console.log(`summary: cometd-js ${opts.transport} ${opts.count} msgs, ` +
              `${perMsg.toFixed(3)} us CPU/msg, ${Math.round(opts.count / wall)} msg/s`);
  clearTimeout(limit);
  cometd.disconnect(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};

cometd.handshake((reply) => {
  if (!reply.successful) fail(`handshake failed: ${JSON.stringify(reply)}`);
  cometd.subscribe(opts.channel, () => {
    if (++received === opts.count) finish();
  }, (sub) => {
    if (!sub.successful) fail(`subscribe failed: ${JSON.stringify(sub)}`);
    start = { cpu: process.cpuUsage(), wall: process.hrtime.bigint() };
    process.stdout.write('SUBSCRIBED\n');
  });
});
