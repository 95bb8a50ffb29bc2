'use strict';
// Salesforce-style event replay for faye-server.js on the channels under /replay/; the behaviour
// is documented in the header of faye-server.js.
//
// Faye has no per-client delivery API: a replayed event is pushed on the memory engine's own
// per-client queue (engine._engine._messages, where publish() queues a message for each
// subscriber) and the queue is emptied on the next tick, i.e. after the subscribe reply went out.
// A held or later /meta/connect (long-polling) or the client's websocket picks it up, ahead of
// any event published after the subscribe (those are queued behind it).

const Grammar = require('faye/src/protocol/grammar');
const common = require('./common');

const PREFIX = '/replay';

function invalidReplayId(id) {
  const shown = typeof id === 'number' ? String(id) : JSON.stringify(id);
  return '400::The replayId ' + shown + ' you provided was invalid. Please provide a valid ID, ' +
         '-2 to replay all events, or -1 to replay only new events.';
}

function badRequest(text) {
  return Object.assign(new Error(text), { status: 400 });
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function createReplay(adapter, keep) {
  const bayeux = adapter._server;
  const memory = bayeux._engine._engine;
  const logs = new Map();          // channel -> { last: <last replayId>, events: [{id, message}] }
  const replayClients = new Set(); // clientIds that sent ext.replay === true in their handshake

  function logOf(channel) {
    if (!logs.has(channel)) logs.set(channel, { last: 0, events: [] });
    return logs.get(channel);
  }

  function trim(log, k) {
    if (log.events.length > k) log.events.splice(0, log.events.length - k);
  }

  function view(channel) {
    const log = logs.get(channel) || { last: 0, events: [] };
    return { ids: log.events.map(e => e.id), last: log.last };
  }

  // Numbers every publication to a /replay/** channel (last extension: only what gets published).
  const extension = {
    incoming(message, request, callback) {
      const ch = message.channel;
      if (common.under(PREFIX, ch) && Grammar.CHANNEL_NAME.test(ch) && !message.error &&
          message.data !== undefined) {
        const log = logOf(ch);
        const id = ++log.last;
        message.data = { event: { replayId: id }, payload: message.data };
        const stored = JSON.parse(JSON.stringify(message));
        delete stored.clientId;
        log.events.push({ id, message: stored });
        trim(log, keep);
      }
      callback(message);
    },
  };

  // The retained events a subscribe asking for `value` on `channel` gets, or an error.
  function plan(channel, value) {
    const log = logs.get(channel) || { last: 0, events: [] };
    if (value === -1) return { events: [] };
    if (value === -2) return { events: log.events.slice() };
    if (!Number.isInteger(value) || value < 0) return { error: invalidReplayId(value) };
    const oldest = log.events.length > 0 ? log.events[0].id : log.last + 1;
    if (value < oldest - 1) return { error: invalidReplayId(value) };
    return { events: log.events.filter(e => e.id > value) };
  }

  function enqueue(clientId, events) {
    const queues = memory._messages;
    if (!queues.has(clientId)) queues.set(clientId, []);
    const queue = queues.get(clientId);
    for (const e of events) queue.push(JSON.parse(JSON.stringify(e.message)));
    setImmediate(() => memory.emptyQueue(clientId));
  }

  const handshake = bayeux.handshake;
  bayeux.handshake = function(message, local, callback, context) {
    handshake.call(this, message, local, function(response) {
      if (response.successful && !local && isObject(message.ext) && message.ext.replay === true) {
        replayClients.add(response.clientId);
        response.ext = Object.assign({}, response.ext, { replay: true });
      }
      callback.call(context, response);
    }, this);
  };

  const subscribe = bayeux.subscribe;
  bayeux.subscribe = function(message, local, callback, context) {
    const clientId = message.clientId;
    const asked = replayClients.has(clientId) && isObject(message.ext) &&
                  isObject(message.ext.replay) ? message.ext.replay : null;
    let events = [];
    if (asked && !message.error) {
      for (const channel of [].concat(message.subscription || [])) {
        if (!common.under(PREFIX, channel) ||
            !Object.prototype.hasOwnProperty.call(asked, channel)) continue;
        const p = plan(channel, asked[channel]);
        if (p.error) {
          message.error = p.error;   // copied into the reply; Faye then subscribes to nothing
          events = [];
          break;
        }
        events = events.concat(p.events);
      }
    }
    subscribe.call(this, message, local, function(response) {
      if (asked) response.ext = Object.assign({}, response.ext, { replay: asked });
      if (response.successful && events.length > 0) {
        common.debug('replay: sending', events.map(e => e.id), 'to', clientId);
        enqueue(clientId, events);
      }
      callback.call(context, response);
    }, this);
  };

  adapter.on('disconnect', clientId => replayClients.delete(clientId));

  function channelArg(value) {
    if (typeof value !== 'string' || !common.under(PREFIX, value) ||
        !Grammar.CHANNEL_NAME.test(value)) {
      throw badRequest('"channel" must be a channel name under /replay/');
    }
    return value;
  }

  const routes = {
    'POST /control/replay-trim': async body => {
      const channel = channelArg(body.channel);
      const k = Number(body.keep);
      if (!Number.isInteger(k) || k < 0) throw badRequest('"keep" must be an integer >= 0');
      trim(logOf(channel), k);
      return view(channel);
    },
    'GET /control/replay-log': async (body, req) =>
      view(channelArg(new URL(req.url, 'http://127.0.0.1').searchParams.get('channel'))),
    'POST /control/replay-log': async body => view(channelArg(body.channel)),
  };

  return { extension, routes };
}

module.exports = { createReplay, invalidReplayId };
