// The console: sign-in, the hash router and the page frame. Pages live in
// page-*.js and are loaded when first visited.
import { request } from './api.js';
import { announce, errorBox, group, h, makeForm, notice } from './ui.js';

// The key lives in sessionStorage only: gone when the tab closes, never a cookie.
const STORE = 'chainlog.apiKey';
let key = sessionStorage.getItem(STORE);
let controller = null;
let routed = false; // focus the heading on navigation, not on the first load

const $ = (id) => document.getElementById(id);

const ROUTES = [
  [/^home$/, 'Home', 'page-home.js', 'home'],
  [/^events$/, 'Events', 'page-events.js', 'explorer'],
  [/^event\/(.+)$/, 'Event', 'page-events.js', 'detail'],
  [/^session\/(.+)$/, 'Session timeline', 'page-events.js', 'session'],
  [/^integrity$/, 'Integrity', 'page-integrity.js', 'integrity'],
  [/^alerts$/, 'Alerts', 'page-alerts.js', 'alerts'],
  [/^exports$/, 'Exports', 'page-exports.js', 'exports'],
  [/^settings\/streams$/, 'Log streams', 'page-settings.js', 'streams'],
  [/^settings\/webhooks$/, 'Webhook endpoints', 'page-settings.js', 'webhooks'],
  [/^settings\/schemas$/, 'Schemas', 'page-settings.js', 'schemas'],
  [/^settings\/keys$/, 'API keys', 'page-settings.js', 'keys'],
  [/^settings\/members$/, 'Members', 'page-settings.js', 'members'],
  [/^settings\/allowlist$/, 'IP allowlist', 'page-settings.js', 'allowlist'],
  [/^settings\/viewer$/, 'Viewer links', 'page-settings.js', 'viewer'],
];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const at = raw.indexOf('?');
  const path = at < 0 ? raw : raw.slice(0, at);
  return { path: path || 'home', params: new URLSearchParams(at < 0 ? '' : raw.slice(at + 1)) };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function markNav(path) {
  const section = /^(event|session)\//.test(path) ? 'events' : path;
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (!key) { signInPage(); return; }
  if (controller) controller.abort();
  controller = new AbortController();
  const { signal } = controller;
  const { path, params } = parseHash();
  const found = ROUTES.find(([re]) => re.test(path));
  const [re, title, file, name] = found || [/^/, 'Not found'];
  const heading = h('h1', { tabindex: '-1' }, title);
  const root = h('div', { class: 'page' }, heading);
  $('main').replaceChildren(root);
  document.title = `${title} · Chainlog`;
  markNav(path);
  if (routed) heading.focus();
  routed = true;
  if (!found) { root.append(notice('There is no such page. Choose one from the menu.')); return; }
  const ctx = {
    root,
    params,
    signal,
    args: re.exec(path).slice(1).map(decodeURIComponent),
    title(text) { heading.textContent = text; document.title = `${text} · Chainlog`; },
    api: (p, opts = {}) => request(key, p, { ...opts, signal }),
    go,
  };
  try {
    const page = await import(`./${file}`);
    await page[name](ctx);
  } catch (err) {
    if (err.name === 'AbortError' || signal.aborted) return;
    if (err.status === 401) { signOut(`Signed out: ${err.message}`); return; }
    root.append(errorBox(err));
  }
}

function showWorkspace(ws) {
  $('workspace').replaceChildren(h('strong', {}, ws.name), ` · ${ws.plan && ws.plan.name ? ws.plan.name : ''} plan`);
  $('nav').hidden = false;
  $('sign-out').hidden = false;
}

function signOut(message) {
  key = null;
  sessionStorage.removeItem(STORE);
  if (controller) controller.abort();
  $('workspace').replaceChildren();
  $('nav').hidden = true;
  $('sign-out').hidden = true;
  signInPage(message);
  announce(message || 'Signed out.');
}

function signInPage(message) {
  document.title = 'Sign in · Chainlog';
  const fields = group([{
    name: 'key', label: 'API key', type: 'password', required: true, autocomplete: 'off',
    help: 'A key with the read scope; admin pages need the admin scope. It is kept in this tab only, and forgotten when you sign out or close the tab.',
  }]);
  const form = makeForm({
    groups: [fields],
    submitLabel: 'Sign in',
    async onSubmit(body) {
      const ws = await request(body.key, '/api/v1/workspace');
      key = body.key;
      sessionStorage.setItem(STORE, key);
      showWorkspace(ws);
      announce(`Signed in to ${ws.name}.`);
      route();
    },
  });
  $('main').replaceChildren(h('div', { class: 'page narrow' },
    h('h1', {}, 'Sign in to Chainlog'),
    message ? notice(message, 'warn') : null,
    form.node));
  form.field('key').control.focus();
}

async function start() {
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  $('skip').addEventListener('click', (e) => { e.preventDefault(); $('main').focus(); });
  window.addEventListener('hashchange', route);
  if (!key) { signInPage(); return; }
  try {
    showWorkspace(await request(key, '/api/v1/workspace'));
  } catch (err) {
    if (err.status === 401 || err.status === 403) { signOut(`Signed out: ${err.message}`); return; }
    $('main').replaceChildren(errorBox(err));
    return;
  }
  route();
}

start();
