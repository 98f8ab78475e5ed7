// api.js — the page's calls to the runledger API: fetch with the bearer
// token (never in the URL), JSON in and out, problem+json errors as ApiError.

/** ApiError is a failed call: status 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || (status ? `HTTP ${status}` : 'the server cannot be reached'));
    this.status = status;
    this.code = problem?.code ?? (status ? '' : 'network');
    this.problem = problem ?? null;
  }
}

/**
 * createApi returns {get, post} for the API at baseUrl with the token from
 * getToken(). Each returns {status, body} for a 2xx answer and throws
 * ApiError otherwise.
 */
export function createApi(getToken, baseUrl = '') {
  async function call(method, path, body) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${getToken()}` };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(baseUrl + path, init);
    } catch {
      throw new ApiError(0, null);
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      // not JSON (a proxy's error page): the status says enough
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return { status: res.status, body: data };
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body = {}) => call('POST', path, body),
  };
}

/** businessPath is /v1/businesses/{b} with b escaped. */
export function businessPath(business) {
  return `/v1/businesses/${encodeURIComponent(business)}`;
}
