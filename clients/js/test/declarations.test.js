// @vitest-environment node
// watcher.d.ts follows watcher.js: every export of the page's watcher.js is
// declared, and every tunable in DEFAULTS is an option a TypeScript consumer
// may pass. watcher.js is the page's, changed by the page's authors; this
// fails when it gains an export or a tunable the declarations do not name.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import * as watcher from '../watcher.js';

const dts = readFileSync(new URL('../watcher.d.ts', import.meta.url), 'utf8');

it('declares every export of watcher.js', () => {
  const declared = new Set([...dts.matchAll(/^export (?:declare )?(?:const|function|class) (\w+)/gm)].map((m) => m[1]));
  const missing = Object.keys(watcher).filter((name) => !declared.has(name)).sort();
  expect(missing).toEqual([]);
});

it('declares every tunable of DEFAULTS as an option', () => {
  const body = dts.match(/export interface WatcherTunables \{([\s\S]*?)\n\}/)[1];
  const declared = [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]).sort();
  expect(declared).toEqual(Object.keys(watcher.DEFAULTS).sort());
});
