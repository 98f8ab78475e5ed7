// The operator's Business field: what it says of an id it cannot use.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { businessIdProblem } from '../static/assets/format.js';

const RULE = 'Use letters A–Z, digits, "_", "." and "-" (at most 64), starting with a letter or digit.';

test('an id the server takes has no problem', () => {
  for (const ok of ['demo', 'o9.shop', 'A_b-c.9', '7', 'x'.repeat(64)]) assert.equal(businessIdProblem(ok), '', ok);
});

test('every other id is named with its reason, never dropped in silence', () => {
  const cases = [
    ['', 'Type a business id.'],
    ['café', `"café" cannot be a business id: "é" is not allowed. ${RULE}`],
    [' demo', `" demo" cannot be a business id: it starts with a space. ${RULE}`],
    ['demo ', `"demo " cannot be a business id: it ends with a space. ${RULE}`],
    ['de mo', `"de mo" cannot be a business id: it contains a space. ${RULE}`],
    ['-demo', `"-demo" cannot be a business id: it starts with "-". ${RULE}`],
    ['a/b', `"a/b" cannot be a business id: "/" is not allowed. ${RULE}`],
    ['😀', `"😀" cannot be a business id: "😀" is not allowed. ${RULE}`],
    ['x'.repeat(65), `"${'x'.repeat(65)}" cannot be a business id: it is 65 characters long. ${RULE}`],
  ];
  for (const [id, want] of cases) assert.equal(businessIdProblem(id), want, id);
});
