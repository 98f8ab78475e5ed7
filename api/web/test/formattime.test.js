// Times on the page: one zone (the browser's, here America/Sao_Paulo), named,
// 24-hour, one way of writing them. `node --test` runs each file in its own
// process, so setting TZ here touches no other test.
process.env.TZ = 'America/Sao_Paulo';

const { test } = await import('node:test');
const assert = (await import('node:assert/strict')).default;
const { formatDateTime, formatTime, localInputValue, localizeTimes, parseLocalInput, timeZoneName, zoneLabel, zoneOffset } = await import('../static/assets/format.js');

const at = Date.parse('2026-11-30T02:41:03.456Z'); // 23:41:03 the day before in São Paulo

test('the zone is named with its offset', () => {
  assert.equal(timeZoneName(), 'America/Sao_Paulo');
  assert.equal(zoneOffset(at), 'UTC-03:00');
  assert.equal(zoneLabel(at), 'Times in America/Sao_Paulo (UTC-03:00), 24-hour');
  assert.equal(zoneLabel(at, 'UTC'), 'Times in UTC, 24-hour');
});

test('every time is written one way, 24-hour, in that zone', () => {
  assert.equal(formatTime('2026-11-30T02:41:03.456Z'), '23:41:03');
  assert.equal(formatTime('2026-11-30T16:05:09Z'), '13:05:09'); // never 1:05 PM
  assert.equal(formatDateTime('2026-11-30T02:41:03.456Z'), '2026-11-29 23:41:03');
  assert.equal(localInputValue(at), '2026-11-29 23:41:03'); // the replay input reads like its answer
  assert.equal(formatTime('nonsense'), '—');
  assert.equal(formatDateTime(null), '—');
});

test('the replay input is read in the same zone, and refuses what is not an instant', () => {
  assert.equal(parseLocalInput('2026-11-29 23:41:03'), Date.parse('2026-11-30T02:41:03Z'));
  assert.equal(parseLocalInput(' 2026-11-29T23:41 '), Date.parse('2026-11-30T02:41:00Z'));
  assert.equal(parseLocalInput(localInputValue(at)), Math.floor(at / 1000) * 1000); // a round trip
  for (const bad of ['', '2026-11-29', '2026-13-01 00:00:00', '2026-02-30 10:00:00', '2026-11-29 24:00:00', '29/11/2026 23:41', '2026-11-29 11:41 PM']) {
    assert.ok(Number.isNaN(parseLocalInput(bad)), bad);
  }
});

test("the server's UTC times inside sentences are rewritten in the page's zone", () => {
  assert.equal(
    localizeTimes('run 1a2b3c4d had ended at 2026-11-30T02:41:03Z (completed); stalled since 2026-11-30T02:31:00.000Z'),
    'run 1a2b3c4d had ended at 2026-11-29 23:41:03 (completed); stalled since 2026-11-29 23:31:00',
  );
  assert.equal(localizeTimes('no time here'), 'no time here');
});
