// session.js — sign-in by token. `runledger dev` prints URLs like
// http://127.0.0.1:8080/#token=eyJ…: the fragment never reaches the server
// (nor its logs, nor a Referer), the page moves the token to sessionStorage
// (this tab only) and clears the fragment from the address bar and history.

const KEY = 'runledger.token';

/**
 * takeTokenFromFragment moves a "#token=…" fragment into storage and removes
 * the fragment from the URL. It returns true when a token was taken.
 */
export function takeTokenFromFragment(loc = globalThis.location, hist = globalThis.history, store = globalThis.sessionStorage) {
  const frag = loc.hash.startsWith('#') ? loc.hash.slice(1) : loc.hash;
  if (!frag) return false;
  const token = new URLSearchParams(frag).get('token');
  // Clear any fragment that carried a token, even a malformed one.
  if (token !== null) hist.replaceState(hist.state, '', loc.pathname + loc.search);
  if (!token) return false;
  store.setItem(KEY, token.trim());
  return true;
}

/** currentToken is the signed-in token, or "". */
export function currentToken(store = globalThis.sessionStorage) {
  return store.getItem(KEY) ?? '';
}

/** signIn stores a pasted token. */
export function signIn(token, store = globalThis.sessionStorage) {
  store.setItem(KEY, String(token).trim());
}

/** signOut forgets the token. */
export function signOut(store = globalThis.sessionStorage) {
  store.removeItem(KEY);
}

/**
 * readClaims decodes a JWT's payload without checking it (the server checks
 * every request): {business_id, role, exp}, or null if token is not a
 * runledger token. The page only uses it to pick a view.
 */
export function readClaims(token) {
  const parts = String(token ?? '').split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const json = new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
    const c = JSON.parse(json);
    if (typeof c.business_id !== 'string' || !['worker', 'user', 'operator'].includes(c.role)) return null;
    return { business_id: c.business_id, role: c.role, exp: typeof c.exp === 'number' ? c.exp : null };
  } catch {
    return null;
  }
}
