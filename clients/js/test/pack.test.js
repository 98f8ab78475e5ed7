// @vitest-environment node
// One source: the watcher.js that `npm pack` puts in the package is the
// page's own, byte for byte, and the package holds what its exports name.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const pkgDir = fileURLToPath(new URL('..', import.meta.url));
const pageWatcher = fileURLToPath(new URL('../../../api/web/static/assets/watcher.js', import.meta.url));

it('packs the page watcher.js byte-identical, with declarations and the hook', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: pkgDir, encoding: 'utf8' });
    const [info] = JSON.parse(out.slice(out.indexOf('[')));
    expect(info.name).toBe('@runledger/watcher');
    const files = info.files.map((f) => f.path).sort();
    expect(files).toEqual(['package.json', 'react.d.ts', 'react.js', 'watcher.d.ts', 'watcher.js']);
    execFileSync('tar', ['-xzf', join(dir, info.filename), '-C', dir]);
    expect(readFileSync(join(dir, 'package', 'watcher.js')).equals(readFileSync(pageWatcher))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(dir, 'package', 'package.json'), 'utf8'));
    expect(manifest.peerDependencies).toEqual({ react: '>=18' });
    expect(manifest.dependencies).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
