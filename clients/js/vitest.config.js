import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // React 17+'s automatic JSX runtime, as tsconfig.json's "jsx": "react-jsx".
  esbuild: { jsx: 'automatic' },
  resolve: {
    // The package's own names, as a consumer imports them (the README's example does).
    alias: [
      { find: /^@runledger\/watcher\/react$/, replacement: here('./react.js') },
      { find: /^@runledger\/watcher$/, replacement: here('./watcher.js') },
    ],
  },
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.{js,jsx,ts,tsx}'],
    // Vitest's default of 5 s is wall-clock: on a loaded shared machine the
    // pack test (which spawns npm pack) and the jsdom renders outrun it
    // (seen: "packs the page watcher.js…: Test timed out in 5000ms"). The
    // tests' own waits are on fake timers; this only bounds a hang.
    testTimeout: 120_000,
  },
});
