// api.js — the console's only way to baton: the public HTTP API of
// `baton serve` (FORMATS.md §Additions "HTTP"), with the bearer token the
// user logged in with (kept in sessionStorage: gone when the tab closes).

const KEY = 'baton.token';

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || String(status);
    this.details = e.details;
  }
}

let onAuthLost = () => {};
export function setAuthLost(fn) { onAuthLost = fn; }
export function token() { return sessionStorage.getItem(KEY); }
export function setToken(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); }

// One request. JSON in, JSON out; an error object becomes an ApiError.
// A 401 (expired, revoked or wrong token) drops the token and returns to
// the login form with the server's message.
export async function call(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const t = opts.token !== undefined ? opts.token : token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network', message: `baton serve did not answer (${e.message})` } });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { text }; }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    if (res.status === 401 && !opts.noAuthRedirect) {
      setToken(null);
      onAuthLost(err.message || 'your session has ended: log in again');
    }
    throw err;
  }
  return data;
}

export const get = (p, o) => call('GET', p, undefined, o);
export const post = (p, b, o) => call('POST', p, b === undefined ? {} : b, o);
export const put = (p, b, o) => call('PUT', p, b, o);
export const enc = encodeURIComponent;

// The scopes of the token, as the server reports them.
export async function session(t) {
  return call('GET', '/v1/session', undefined, { token: t, noAuthRedirect: true });
}
