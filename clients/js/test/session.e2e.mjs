// Run by clients/js_test.go against a real server: the page's watcher.js
// (the one source) follows a business whose active_runs read model is held
// back right after the user's own cancel. It prints what the first answer
// showed, as JSON, and exits.
import { Watcher } from '../../../api/web/static/assets/watcher.js';

const { RUNLEDGER_TEST_URL: baseUrl, TOKEN: token, BUSINESS: business, MIN_POSITION: min } = process.env;
const w = new Watcher({ baseUrl, business, token, minPosition: min ? Number(min) : undefined, maxErrors: 3 });
let printed = false;
const done = (out) => {
  if (printed) return;
  printed = true;
  console.log(JSON.stringify(out));
  w.stop();
};
w.addEventListener('run', (e) => done({ event: 'run', cancel_requested: e.detail.run.cancel_requested }));
for (const type of ['inactive', 'ended', 'lost', 'stopped']) {
  w.addEventListener(type, (e) => done({ event: type, detail: e.detail }));
}
w.start();
