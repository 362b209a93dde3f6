// Integrity: verify the chain now, the latest signed checkpoint, the log's
// public key, and the history of verification runs.
import { announce, card, code, copyButton, dl, errorBox, h, notice, put, table, when } from './ui.js';

const BREAKS = {
  hash_mismatch: 'the stored event no longer matches its hash: it was altered',
  chain_break: 'prev_hash does not link to the event before it',
  gap: 'an event is missing',
};

const eventHref = (id) => `#/event/${encodeURIComponent(id)}`;
const range = (a, b) => (a == null ? '—' : `${a} – ${b}`);

const breaksTable = (breaks, caption) => table(['Seq', 'Type', 'Expected hash', 'Actual hash', 'Event'], breaks.map((b) => [
  String(b.seq), [h('strong', {}, b.type), h('br'), h('span', { class: 'muted' }, BREAKS[b.type])],
  code(b.expected_hash || '—', 'hash'), code(b.actual_hash || '—', 'hash'),
  b.event_id ? h('a', { href: eventHref(b.event_id) }, `Open event ${b.seq}`) : 'missing']), { caption, showCaption: true, cls: 'breaks' });

function verdict(v) {
  const ok = v.valid;
  const n = v.breaks.length;
  return h('div', { class: `verdict ${ok ? 'ok' : 'bad'}` },
    h('p', { class: 'verdict-title' }, ok
      ? '✓ Valid: every event matches its hash and links to the one before.'
      : `✗ Not valid: ${n} break${n === 1 ? '' : 's'} found${v.breaks_truncated ? ' (more not listed)' : ''}.`),
    dl([
      ['Events checked', String(v.events_checked)],
      ['Seq range', range(v.first_seq, v.last_seq)],
      ['Head hash', code(v.head_hash || '—', 'hash')],
      v.anchor ? ['Anchor (archived up to)', h('span', {}, `seq ${v.anchor.seq} `, code(v.anchor.hash, 'hash'))] : null,
    ]),
    n ? breaksTable(v.breaks, 'Breaks in the chain') : null);
}

async function checkpoint(ctx, box) {
  try {
    const cp = await ctx.api('/api/v1/checkpoints/latest');
    box.append(dl([
      ['Tree size', String(cp.size)],
      ['Root hash', code(cp.root_hash, 'hash')],
      ['Signed', when(cp.created_at)],
      ['Origin', code(cp.origin)],
    ]), h('p', {}, 'The signed note:'), h('pre', { class: 'note', tabindex: '0' }, cp.checkpoint), copyButton(() => cp.checkpoint, 'Copy the checkpoint'));
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    box.append(err.status === 404 ? notice('No checkpoint yet: the first is signed within seconds of the first event.') : errorBox(err));
  }
}

async function logKey(ctx, box) {
  try {
    const k = await ctx.api('/api/v1/log-key');
    box.append(dl([
      ['Name', code(k.name)],
      ['Algorithm', k.algorithm],
      ['Public key', code(k.public_key, 'hash')],
      ['Verifier key', h('span', {}, code(k.verifier_key, 'hash'), ' ', copyButton(() => k.verifier_key))],
    ]));
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    box.append(errorBox(err));
  }
}

async function history(ctx, box) {
  try {
    const { data } = await ctx.api('/api/v1/verifications', { params: { limit: 20 } });
    put(box, data.length ? table(['Started', 'Kind', 'Seq range', 'Events checked', 'Result'], data.map((r) => [
      when(r.started_at), r.kind, range(r.from_seq, r.to_seq), String(r.events_checked),
      r.valid ? h('span', { class: 'ok' }, '✓ valid')
        : h('details', {}, h('summary', { class: 'bad' }, `✗ ${r.breaks.length} break(s)`), breaksTable(r.breaks, 'Breaks found by this run'))]),
    { caption: 'Verification runs, newest first' }) : notice('No scheduled verification has run yet.'));
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    put(box, errorBox(err));
  }
}

export async function integrity(ctx) {
  const result = h('div', { 'aria-live': 'polite' });
  const runs = h('div');
  const button = h('button', { type: 'button', class: 'primary' }, 'Run verification');
  button.addEventListener('click', async () => {
    button.disabled = true;
    put(result, h('p', { class: 'muted' }, 'Verifying the whole chain…'));
    try {
      const v = await ctx.api('/api/v1/verify');
      put(result, verdict(v));
      announce(v.valid ? 'The chain is valid.' : `The chain is not valid: ${v.breaks.length} break(s).`);
      history(ctx, runs);
    } catch (err) {
      if (err.name !== 'AbortError') put(result, errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  const cp = h('div');
  const key = h('div');
  ctx.root.append(
    card('Verify the hash chain', h('p', { class: 'muted' }, 'Recomputes every event\'s SHA-256 and checks each link to the event before it.'),
      button, result),
    card('Latest signed checkpoint', cp),
    card('Log key', h('p', { class: 'muted' }, 'Pin it: with it alone, anyone can check checkpoints and proofs (chainlog verify-proof).'), key),
    card('Verification runs', runs));
  await Promise.all([checkpoint(ctx, cp), logKey(ctx, key), history(ctx, runs)]);
}
