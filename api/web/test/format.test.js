// Unit tests of format.js and session.js (pure parts) with `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ago, counts, formatDuration, formatEta, formatRate, parseDuration, shortId, shortIds, statusText } from '../static/assets/format.js';
import { readClaims, takeTokenFromFragment, currentToken } from '../static/assets/session.js';

const run = (over = {}) => ({
  run_id: '0190f0c2-7b1e-7cc3-9d7e-3f5a2b1c4d5e',
  status: 'running',
  active: true,
  cancel_requested: false,
  total_calls: 100,
  completed_calls: 30,
  failed_calls: 10,
  pending_calls: 60,
  started_at: '2026-11-28T09:00:00Z',
  last_heartbeat_at: '2026-11-28T09:04:00Z',
  ...over,
});

test('formatDuration and ago', () => {
  assert.equal(formatDuration(12_400), '12 s');
  assert.equal(formatDuration(185_000), '3 min 5 s');
  assert.equal(formatDuration(180_000), '3 min');
  assert.equal(formatDuration(2 * 3600e3 + 3 * 60e3), '2 h 3 min');
  assert.equal(formatDuration(-5), '0 s');
  assert.equal(formatDuration(NaN), '—');
  assert.equal(ago(Date.parse('2026-11-28T09:00:00Z'), Date.parse('2026-11-28T09:00:12Z')), '12 s ago');
});

test('parseDuration reads what ?max_watch= accepts', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('2'), 2000);
  for (const bad of ['', 'soon', '5x', '5 m', '-1s']) assert.ok(Number.isNaN(parseDuration(bad)), bad);
});

test('rates, ETAs, statuses and endings read as sentences', () => {
  assert.equal(formatRate(12.4), '12 calls/min');
  assert.equal(formatRate(0.44), '0.4 calls/min');
  assert.equal(formatRate(1), '1 call/min');
  assert.equal(formatRate(null), '—');
  assert.equal(formatEta(30e3), 'less than a minute');
  assert.equal(formatEta(6 * 60e3 + 20e3), 'about 6 min');
  assert.equal(formatEta(null), '—');
  assert.equal(statusText(run()), 'Running');
  assert.equal(statusText(run({ active: false })), 'Not active (silent)');
  assert.equal(statusText(run({ cancel_requested: true })), 'Stopping');
  assert.equal(statusText(run({ paused: true })), 'Paused');
  assert.equal(statusText(run({ stalled: true })), 'Stalled');
  assert.equal(statusText(run({ paused: true, active: false })), 'Not active (silent)');
  assert.equal(statusText(run({ status: 'cancelled', active: false })), 'Cancelled');
  assert.equal(counts(run()), '30 completed · 10 failed · 60 pending of 100');
  assert.equal(shortId('0190f0c2-7b1e-7cc3-9d7e-3f5a2b1c4d5e'), '5a2b1c4d5e'.slice(-8));
  // Runs started in the same millisecond share their first 12 digits; the
  // tails differ, and a shared tail is lengthened until it does not.
  const twins = ['01a222ec-1f00-7abc-8def-0123456789ab', '01a222ec-1f00-7123-9456-fedcba987654', '01a222ec-1f00-7000-8000-1111456789ab'];
  const forms = shortIds(twins);
  assert.deepEqual([...forms.values()], ['3456789ab', 'cba987654', '1456789ab']);
  assert.equal(shortId(twins[0], twins), '3456789ab');
});

const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

test('readClaims reads the role and business of a token, and refuses anything else', () => {
  const tok = `${b64url({ alg: 'HS256' })}.${b64url({ business_id: 'demo', role: 'user', exp: 1 })}.sig`;
  assert.deepEqual(readClaims(tok), { business_id: 'demo', role: 'user', exp: 1 });
  assert.equal(readClaims('not a token'), null);
  assert.equal(readClaims(`a.${b64url({ business_id: 'demo', role: 'admin' })}.c`), null);
  assert.equal(readClaims(`a.${b64url({ role: 'user' })}.c`), null);
  assert.equal(readClaims('a.!!!.c'), null);
});

test('takeTokenFromFragment moves the token to storage and clears the fragment', () => {
  const store = new Map();
  const storage = { setItem: (k, v) => store.set(k, v), getItem: (k) => store.get(k) ?? null };
  const calls = [];
  const hist = { state: null, replaceState: (...a) => calls.push(a) };
  assert.equal(takeTokenFromFragment({ hash: '#token=abc.def.ghi', pathname: '/', search: '?max_watch=5s' }, hist, storage), true);
  assert.equal(currentToken(storage), 'abc.def.ghi');
  assert.deepEqual(calls, [[null, '', '/?max_watch=5s']]);
  calls.length = 0;
  assert.equal(takeTokenFromFragment({ hash: '', pathname: '/', search: '' }, hist, storage), false);
  assert.equal(takeTokenFromFragment({ hash: '#other=1', pathname: '/', search: '' }, hist, storage), false);
  assert.equal(calls.length, 0, 'a fragment without a token is left alone');
  assert.equal(takeTokenFromFragment({ hash: '#token=', pathname: '/', search: '' }, hist, storage), false);
  assert.equal(calls.length, 1, 'an empty token is still cleared from the URL');
});
