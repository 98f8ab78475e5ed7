// The README's React example (examples/ActiveRunBar.tsx) rendered against
// the fake stream, through the page's global fetch as an application would.
import { act, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { OutboundCallsProgress } from '../examples/ActiveRunBar.tsx';
import { BUSINESS, fakeServer } from './fake.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
  vi.setSystemTime(Date.parse('2026-11-30T03:00:00Z'));
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

async function advance(ms) {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

it('shows the bar while the run is active and says why it went', async () => {
  const server = fakeServer();
  vi.stubGlobal('fetch', server.fetch);
  server.start(20);
  const { unmount } = render(<OutboundCallsProgress business={BUSINESS} token="user-token" />);
  await advance(10);
  server.heartbeat(5);
  await advance(10);
  expect(screen.getByRole('status').textContent).toBe('5 of 20 calls');
  expect(screen.getByLabelText('Calls placed').getAttribute('value')).toBe('5');
  server.end('completed');
  await advance(10);
  expect(screen.queryByLabelText('Calls placed')).toBeNull();
  expect(screen.getByRole('status').textContent).toBe('The queue run has finished. (completed)');
  unmount();
  expect(vi.getTimerCount()).toBe(0);
});

it("is the README's example, word for word", async () => {
  const { readFileSync } = await import('node:fs');
  const { resolve } = await import('node:path');
  // Vitest runs from the package's directory (npm test, make test).
  const readme = readFileSync(resolve(process.cwd(), '../../README.md'), 'utf8');
  const example = readFileSync(resolve(process.cwd(), 'examples/ActiveRunBar.tsx'), 'utf8');
  const blocks = [...readme.matchAll(/```tsx\n([\s\S]*?)```/g)].map((m) => m[1]);
  expect(blocks).toContain(example);
});
