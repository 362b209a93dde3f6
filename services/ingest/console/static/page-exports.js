// Exports: request one with the explorer's filters, follow it while it runs,
// download it with the bearer header and check its SHA-256 against the record.
import { fileName, fmtBytes, saveBlob, sha256Hex } from './api.js';
import { FILTERS, filtersOf } from './page-events.js';
import { announce, card, code, errorBox, group, h, makeForm, notice, put, small, table, when } from './ui.js';

const POLL_MS = 2000;
const running = (x) => x.status === 'pending' || x.status === 'processing';

async function download(ctx, x, out) {
  put(out, h('span', { class: 'muted' }, 'Downloading…'));
  try {
    const res = await ctx.api(`/api/v1/exports/${encodeURIComponent(x.id)}/download`, { raw: true });
    const blob = await res.blob();
    const digest = await sha256Hex(blob);
    saveBlob(blob, fileName(res, `chainlog-export-${x.id}.${x.format}`));
    const text = digest === null ? 'Saved. This browser cannot compute SHA-256 here; compare the file with the record.'
      : digest === x.sha256 ? 'Saved; its SHA-256 matches the record.'
        : `Saved, but its SHA-256 (${digest}) differs from the record: do not trust this file.`;
    put(out, h('span', { class: digest && digest !== x.sha256 ? 'bad' : 'ok' }, text));
    announce(text);
  } catch (err) {
    if (err.name !== 'AbortError') put(out, errorBox(err));
  }
}

function row(ctx, x, outs) {
  // kept across the list's refreshes, so a download's outcome stays on screen
  if (!outs.has(x.id)) outs.set(x.id, h('div', { 'aria-live': 'polite' }));
  const out = outs.get(x.id);
  let state = x.expired ? 'expired' : x.status;
  if (running(x)) state = [h('progress', { 'aria-label': `Export ${x.status}` }), ` ${x.status}…`];
  else if (x.status === 'failed') state = h('span', { class: 'bad' }, `failed: ${x.error || 'unknown error'}`);
  return [when(x.created_at), x.format, Object.entries(x.filters || {}).map(([k, v]) => `${k}=${v}`).join('; ') || 'all events', state,
    x.total_rows == null ? '' : String(x.total_rows), fmtBytes(x.file_size), x.sha256 ? code(x.sha256, 'hash') : '—',
    [x.download_url ? small('Download', () => download(ctx, x, out), `Download export ${x.id}`) : null, out]];
}

export async function exports(ctx) {
  const listBox = h('div');
  const outs = new Map();
  let timer = null;
  ctx.signal.addEventListener('abort', () => clearTimeout(timer));

  async function refresh() {
    clearTimeout(timer);
    const { data } = await ctx.api('/api/v1/exports');
    put(listBox, data.length ? table(['Requested', 'Format', 'Filters', 'Status', 'Rows', 'Size', 'SHA-256', 'File'],
      data.map((x) => row(ctx, x, outs)), { caption: 'Exports, newest first' }) : notice('No export yet.'));
    if (data.some(running) && !ctx.signal.aborted) {
      timer = setTimeout(() => refresh().catch((err) => { if (err.name !== 'AbortError') listBox.append(errorBox(err)); }), POLL_MS);
    }
  }

  const form = makeForm({
    groups: [group([
      { name: 'format', label: 'Format', type: 'select', options: [['csv', 'CSV'], ['jsonl', 'JSON Lines']] },
      ...FILTERS,
    ])],
    cls: 'form filters',
    submitLabel: 'Request export',
    async onSubmit(body) {
      const created = await ctx.api('/api/v1/exports', { method: 'POST', body });
      announce(`Export requested (${created.format}); it is ${created.status}.`);
      await refresh();
    },
  });
  form.fill(filtersOf(ctx.params));
  ctx.root.append(
    card('New export', h('p', { class: 'muted' }, 'The events matching the filters, oldest first, with every hash: chainlog verify-export checks the file offline.'),
      form.node),
    card('Exports', listBox));
  await refresh();
}
