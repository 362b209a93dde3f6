// The JSON API from the browser, and the small helpers both pages share.
// The key or viewer token is passed in by the caller; this module stores nothing.

export class ApiError extends Error {
  constructor(status, doc, retryAfter) {
    let message = (doc && doc.message) || `The server answered ${status}.`;
    if (status === 429 && retryAfter && !/retry/i.test(message)) message += ` Retry in ${retryAfter} s.`;
    super(message);
    this.status = status;
    this.code = (doc && doc.error) || 'http_error';
    this.violations = (doc && Array.isArray(doc.violations)) ? doc.violations : [];
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// One request with the bearer token. Resolves to the parsed JSON (null for
// 204), or to the Response itself with {raw: true}; rejects with ApiError.
export async function request(token, path, { method = 'GET', body, params, raw = false, signal } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path + query(params), {
      method, headers, signal, credentials: 'omit', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { error: 'network', message: 'The server could not be reached. Check the connection and try again.' });
  }
  if (!res.ok) {
    let doc = null;
    try { doc = await res.json(); } catch { /* not JSON: the status says enough */ }
    throw new ApiError(res.status, doc, res.headers.get('Retry-After'));
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

// The API writes microseconds; Date wants at most milliseconds.
export function parseTs(s) {
  return new Date(String(s).replace(/(\.\d{3})\d+/, '$1'));
}

export function fmtTime(s) {
  if (!s) return '';
  const d = parseTs(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

// <input type="datetime-local"> holds local time; the API wants RFC 3339.
export function localToRfc3339(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace('.000Z', 'Z');
}

export function rfc3339ToLocal(s) {
  if (!s) return '';
  const d = parseTs(s);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fmtBytes(n) {
  if (n == null) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n}\u00a0${units[i]}`;
}

// SHA-256 of a blob as hex, or null where WebCrypto is unavailable (plain http off localhost).
export async function sha256Hex(blob) {
  if (!globalThis.crypto || !crypto.subtle) return null;
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fileName(res, fallback) {
  const m = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
  return m ? m[1] : fallback;
}

// Save a blob as a file through an <a download> on an object URL.
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}
