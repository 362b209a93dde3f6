// Home: events per hour over the last 24 h, stacked by action category (an
// SVG drawn here, with a text summary and a data table), and counts by country.
import { fmtTime, parseTs } from './api.js';
import { card, h, newId, notice, table } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';
const W = 960;
const H = 240;
const M = { left: 44, right: 10, top: 12, bottom: 30 };
const TOP_CATEGORIES = 6;

function s(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k);
  return e;
}

function niceMax(m) {
  if (m <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(m));
  return [1, 2, 5, 10].map((f) => f * p).find((v) => v >= m);
}

const hourLabel = (ts) => {
  const d = parseTs(ts);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
};

const regionName = (() => {
  try {
    const names = new Intl.DisplayNames(undefined, { type: 'region' });
    return (c) => { try { return names.of(c); } catch { return c; } };
  } catch { return (c) => c; }
})();

// The top categories by volume, the rest folded into "other".
function categories(hours) {
  const totals = new Map();
  for (const hr of hours) {
    for (const [c, n] of Object.entries(hr.by_category || {})) totals.set(c, (totals.get(c) || 0) + n);
  }
  const sorted = [...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const top = sorted.slice(0, TOP_CATEGORIES).map(([c]) => c);
  const other = sorted.slice(TOP_CATEGORIES).reduce((n, [, v]) => n + v, 0);
  const list = sorted.slice(0, TOP_CATEGORIES);
  if (other) list.push(['other', other]);
  const of = (c) => (top.includes(c) ? c : 'other');
  return { list, of, index: (c) => (c === 'other' ? TOP_CATEGORIES : top.indexOf(c)) };
}

function chart(data) {
  const hours = data.hours || [];
  const cats = categories(hours);
  const total = hours.reduce((n, hr) => n + hr.total, 0);
  const peak = hours.reduce((best, hr) => (hr.total > (best ? best.total : 0) ? hr : best), null);
  const max = niceMax(Math.max(0, ...hours.map((hr) => hr.total)));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const slot = plotW / Math.max(1, hours.length);
  const y = (v) => M.top + plotH - (v / max) * plotH;
  const titleId = newId('chart-title');
  const descId = newId('chart-desc');
  const summary = total
    ? `${total} events from ${fmtTime(data.from)} to ${fmtTime(data.to)}. Busiest hour: ${hourLabel(peak.hour)} with ${peak.total}. By category: ${cats.list.map(([c, n]) => `${c} ${n}`).join(', ')}.`
    : `No events from ${fmtTime(data.from)} to ${fmtTime(data.to)}.`;

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-labelledby': `${titleId} ${descId}` },
    s('title', { id: titleId }, 'Events per hour, last 24 hours'),
    s('desc', { id: descId }, summary));
  for (const v of [0, max / 2, max]) {
    svg.append(s('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: M.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
  }
  hours.forEach((hr, i) => {
    const x = M.left + i * slot + slot * 0.14;
    let base = 0;
    const stacked = new Map();
    for (const [c, n] of Object.entries(hr.by_category || {})) stacked.set(cats.of(c), (stacked.get(cats.of(c)) || 0) + n);
    for (const [c, n] of [...stacked].sort((a, b) => cats.index(a[0]) - cats.index(b[0]))) {
      svg.append(s('rect', { x, y: y(base + n), width: slot * 0.72, height: Math.max(0, y(base) - y(base + n)), class: `cat-${cats.index(c)}` },
        s('title', {}, `${hourLabel(hr.hour)}: ${c} ${n}`)));
      base += n;
    }
    if (i % 3 === 0) {
      svg.append(s('text', { x: x + slot * 0.36, y: H - 10, class: 'axis', 'text-anchor': 'middle' }, hourLabel(hr.hour)));
    }
  });

  const legend = h('ul', { class: 'legend', 'aria-label': 'Categories' },
    cats.list.map(([c, n]) => h('li', {}, h('span', { class: `swatch cat-${cats.index(c)}`, 'aria-hidden': 'true' }), `${c} (${n})`)));
  const names = cats.list.map(([c]) => c);
  const data2 = h('details', { class: 'chart-data' }, h('summary', {}, 'Show the data as a table'),
    table(['Hour', 'Total', ...names], hours.map((hr) => {
      const row = new Map();
      for (const [c, n] of Object.entries(hr.by_category || {})) row.set(cats.of(c), (row.get(cats.of(c)) || 0) + n);
      return [fmtTime(hr.hour), String(hr.total), ...names.map((c) => String(row.get(c) || 0))];
    }), { caption: 'Events per hour by category (local time)', showCaption: true, rowHeader: true }));
  return card('Events per hour, last 24 hours', h('p', { class: 'muted' }, summary), svg, legend, data2);
}

function countries(data) {
  const list = data.countries || [];
  return card('Events by country, last 24 hours',
    list.length ? table(['Country', 'Events'], list.map((c) => [
      h('a', { href: `#/events?ip_country=${encodeURIComponent(c.country)}` }, `${regionName(c.country)} (${c.country})`), String(c.count)]),
    { caption: 'Events by country', rowHeader: true, cls: 'compact counts' })
      : notice('No geolocated event in this period: events without an ip_address, or from addresses the GeoIP database does not know, have no country.'));
}

export async function home(ctx) {
  const data = await ctx.api('/api/v1/stats/activity', { params: { hours: 24 } });
  ctx.root.append(chart(data), countries(data));
}
