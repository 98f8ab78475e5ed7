// The package's watcher.js is the page's own (api/web/static/assets/watcher.js):
// one source. This copies it into the package before tests and `npm pack`;
// the copy is not committed (see .gitignore), and a test checks that the
// packed file is byte-identical to the page's.
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const source = join(here, '..', '..', '..', 'api', 'web', 'static', 'assets', 'watcher.js');
copyFileSync(source, join(here, '..', 'watcher.js'));
