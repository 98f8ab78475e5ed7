// main.js — boots the page: takes the token from the URL fragment, picks the
// view from the token's claims (the server still checks every request), and
// stops everything when the page is hidden.

import { el, replace, setText } from './dom.js';
import { createApi } from './api.js';
import { currentToken, readClaims, signIn, signOut, takeTokenFromFragment } from './session.js';
import { mountBusiness } from './business.js';
import { mountOperator } from './operator.js';
import { parseDuration, zoneLabel } from './format.js';

const MAX_WATCH_MS = 20 * 60e3;

const app = document.getElementById('app');
const who = document.getElementById('who');
const signOutBtn = document.getElementById('signout');
let view = null;

/**
 * watchOptions reads ?max_watch=90s (shorter watches only, at least 1 s):
 * it bounds streaming too, where by default only polling is bounded.
 */
function watchOptions() {
  const asked = parseDuration(new URLSearchParams(location.search).get('max_watch') ?? '');
  if (!Number.isFinite(asked)) return { maxWatchMs: MAX_WATCH_MS }; // polling (the fallback) only: a stream lasts
  const maxWatchMs = Math.min(MAX_WATCH_MS, Math.max(1000, asked));
  return { maxWatchMs, maxStreamWatchMs: maxWatchMs };
}

function showSignIn(problem) {
  view?.stop();
  view = null;
  setText(who, '');
  signOutBtn.hidden = true;
  const input = el('input', { id: 'token-input', type: 'password', autocomplete: 'off', required: true, 'aria-label': 'Token' });
  const form = el(
    'form',
    {
      class: 'signin',
      on: {
        submit: (e) => {
          e.preventDefault();
          signIn(input.value);
          boot();
        },
      },
    },
    el('label', { for: 'token-input', text: 'Token' }),
    input,
    el('button', { type: 'submit', text: 'Sign in' }),
  );
  replace(
    app,
    el(
      'section',
      { class: 'card', id: 'signin' },
      el('h2', { text: 'Sign in' }),
      problem ? el('p', { class: 'error-text', role: 'alert', text: problem }) : null,
      el('p', {}, 'Open a link that ', el('code', { text: 'runledger dev' }), ' printed (its token travels in the part after #, which never reaches the server), or paste a token.'),
      form,
    ),
  );
}

function onUnauthorized(status) {
  signOut();
  showSignIn(status === 401 ? 'The token is invalid or has expired. Sign in again.' : 'This token may not see that business. Sign in with another token.');
}

function boot() {
  setText(document.getElementById('zone'), zoneLabel(Date.now())); // every time on the page is in this zone
  takeTokenFromFragment();
  const token = currentToken();
  if (!token) return showSignIn();
  const claims = readClaims(token);
  if (!claims) {
    signOut();
    return showSignIn('That is not a runledger token.');
  }
  view?.stop();
  const getToken = () => currentToken();
  const api = createApi(getToken);
  const watch = watchOptions();
  setText(who, claims.role === 'operator' ? `operator · ${claims.business_id === '*' ? 'every business' : claims.business_id}` : `${claims.role} · ${claims.business_id}`);
  signOutBtn.hidden = false;
  document.title = claims.role === 'operator' ? 'runledger — operator console' : `runledger — ${claims.business_id}`;
  if (claims.role === 'operator') {
    view = mountOperator(app, { api, claims, getToken, watch, onUnauthorized });
  } else if (claims.role === 'user') {
    view = mountBusiness(app, { business: claims.business_id, api, getToken, canAct: true, watch, onUnauthorized });
  } else {
    view = null;
    replace(app, el('section', { class: 'card' }, el('p', { text: 'This is a worker token: it starts and reports runs. Sign in with a user or operator token to see the page.' })));
  }
}

signOutBtn.addEventListener('click', () => {
  signOut();
  showSignIn();
});
// The watcher stops itself on pagehide; the page stops its own ticker too, and
// starts again if the browser brings the page back from its cache.
addEventListener('pagehide', () => view?.stop());
addEventListener('pageshow', (e) => {
  if (e.persisted) boot();
});
boot();
