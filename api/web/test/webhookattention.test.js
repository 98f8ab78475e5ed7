// The words of "Webhooks needing attention" (operator console), in a zone
// that is not UTC: node --test api/web/test/. `node --test` runs each file
// in its own process, so setting TZ here touches no other test.
process.env.TZ = 'Asia/Kolkata'; // UTC+05:30

const { test } = await import('node:test');
const assert = (await import('node:assert/strict')).default;
const { ageWords, attentionWords, clockWords, lastAttemptWords, statusWords } = await import('../static/assets/webhookattention.js');

const now = Date.parse('2026-11-30T06:42:03Z'); // 12:12:03 in Kolkata

const failing = {
  business_id: 'acme',
  id: '019a0000-0000-7000-8000-000000000001',
  origin: 'https://hooks.example.com',
  description: 'CRM',
  failing_since: '2026-11-30T03:42:03Z', // 09:12:03, 3 h before
  disabled: false,
  disabled_at: null,
  last_attempt: { at: '2026-11-30T06:37:03Z', status_code: 503 },
  pending_deliveries: 1,
  oldest_pending_at: '2026-11-30T03:42:03Z',
  oldest_pending_age_seconds: 10800,
};

test('a failing endpoint: since when (in the page zone), for how long, and what it last answered', () => {
  assert.deepEqual(attentionWords(failing, now), {
    state: 'failing since 09:12:03 (3 h), last attempt 503 Service Unavailable',
    detail: 'last attempt at 12:07:03 · 1 delivery waiting, for 3 h',
  });
  // The duration is counted from the server's now that is passed in.
  assert.equal(attentionWords(failing, now + 125e3).state, 'failing since 09:12:03 (3 h 2 min), last attempt 503 Service Unavailable');
  const many = { ...failing, pending_deliveries: 4, last_attempt: { at: '2026-11-30T06:37:03Z', status_code: null, error: 'timed out' } };
  assert.deepEqual(attentionWords(many, now), {
    state: 'failing since 09:12:03 (3 h), last attempt got no answer (timed out)',
    detail: 'last attempt at 12:07:03 · 4 deliveries waiting, the oldest for 3 h',
  });
});

test('a disabled endpoint says why in words, and what it holds', () => {
  const gone = {
    ...failing,
    failing_since: null,
    disabled: true,
    disabled_reason: 'the endpoint answered 410 Gone',
    disabled_at: '2026-11-30T06:40:03Z',
    last_attempt: { at: '2026-11-30T06:40:03Z', status_code: 410 },
    pending_deliveries: 0,
    oldest_pending_at: null,
  };
  assert.deepEqual(attentionWords(gone, now), {
    state: 'disabled: answered 410 Gone',
    detail: 'disabled at 12:10:03, 2 min ago · last attempt 410 Gone at 12:10:03 · no delivery waiting',
  });
  const week = {
    ...failing,
    failing_since: '2026-11-25T03:42:03Z',
    disabled: true,
    disabled_reason: 'every attempt failed for 5 days',
    disabled_at: '2026-11-30T03:43:03Z',
    pending_deliveries: 2,
    oldest_pending_at: '2026-11-25T03:42:03Z',
  };
  assert.deepEqual(attentionWords(week, now), {
    state: 'disabled after 5 days of failures',
    detail: 'disabled at 09:13:03, 2 h 59 min ago · failing since 2026-11-25 09:12:03 (5 days 3 h) · last attempt 503 Service Unavailable at 12:07:03 · 2 deliveries held until the endpoint is enabled, the oldest for 5 days 3 h',
  });
  assert.equal(attentionWords({ ...gone, disabled_reason: 'disabled by a user' }, now).state, 'disabled by a user');
  assert.equal(attentionWords({ ...gone, disabled_reason: 'a reason from a newer server' }, now).state, 'disabled: a reason from a newer server');
  assert.equal(attentionWords({ ...gone, disabled_reason: undefined, last_attempt: null }, now).state, 'disabled: no reason given');
});

test('the pieces: statuses, ages, clocks', () => {
  assert.equal(statusWords(503), '503 Service Unavailable');
  assert.equal(statusWords(302), '302 Found');
  assert.equal(statusWords(204), '204 No Content');
  assert.equal(statusWords(599), '599');
  assert.equal(lastAttemptWords(null), 'no attempt yet');
  assert.equal(lastAttemptWords({ at: '2026-11-30T06:37:03Z', status_code: null }), 'last attempt got no answer (no reason given)');
  assert.equal(ageWords(42e3), '42 s');
  assert.equal(ageWords(86400e3), '1 day');
  assert.equal(ageWords(5 * 86400e3 + 7200e3 + 59e3), '5 days 2 h');
  // The day goes without saying on the server's day in the page's zone only:
  // 2026-11-29T19:00Z is 00:30 on the 30th in Kolkata, the day of now.
  assert.equal(clockWords('2026-11-29T19:00:00Z', now), '00:30:00');
  assert.equal(clockWords('2026-11-29T18:00:00Z', now), '2026-11-29 23:30:00');
});
