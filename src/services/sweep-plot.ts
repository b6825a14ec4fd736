/**
 * The sweep chart as SVG: one panel per tier, loss on the x axis, one line per FEC scheme,
 * MOS on the left axis (solid) and delivered frames on the right axis (dashed). Hand-written:
 * a chart of a few dozen points does not need a plotting library.
 */
import type { SweepResult } from '../../core/media/sweep.js';

const PANEL_W = 420;
const PANEL_H = 300;
const MARGIN = { left: 56, right: 56, top: 64, bottom: 48 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

export function sweepPlot(results: SweepResult[], title = 'wzp sweep: quality vs loss'): string {
  const tiers = [...new Set(results.map((r) => r.tier))];
  const schemes = [...new Set(results.map((r) => r.fec))];
  const lossOrder = [...new Set(results.map((r) => r.loss))];
  const width = tiers.length * (PANEL_W + MARGIN.left + MARGIN.right);
  const height = PANEL_H + MARGIN.top + MARGIN.bottom + 40 + schemes.length * 0;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 30}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`,
  ];
  tiers.forEach((tier, t) => {
    const x0 = t * (PANEL_W + MARGIN.left + MARGIN.right) + MARGIN.left;
    const y0 = MARGIN.top;
    parts.push(...panel(tier, results.filter((r) => r.tier === tier && r.jitterMs === minJitter(results)), schemes, lossOrder, x0, y0));
  });
  // Legend.
  const ly = height + 5;
  schemes.forEach((s, i) => {
    const lx = MARGIN.left + i * 150;
    parts.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${COLORS[i % COLORS.length]}" stroke-width="2.5"/>`);
    parts.push(`<text x="${lx + 30}" y="${ly + 4}">${esc(s)}</text>`);
  });
  const lx = MARGIN.left + schemes.length * 150;
  parts.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="#333" stroke-width="2"/><text x="${lx + 30}" y="${ly + 4}">MOS (left)</text>`);
  parts.push(
    `<line x1="${lx + 120}" y1="${ly}" x2="${lx + 144}" y2="${ly}" stroke="#333" stroke-width="2" stroke-dasharray="5,4"/><text x="${lx + 150}" y="${ly + 4}">delivered % (right)</text>`,
  );
  parts.push('</svg>');
  return parts.join('\n');
}

function minJitter(results: SweepResult[]): number {
  return Math.min(...results.map((r) => r.jitterMs));
}

function panel(tier: string, rows: SweepResult[], schemes: string[], lossOrder: string[], x0: number, y0: number): string[] {
  const out: string[] = [];
  const xs = lossOrder.filter((l) => rows.some((r) => r.loss === l));
  const xAt = (i: number) => x0 + (xs.length === 1 ? PANEL_W / 2 : (i * PANEL_W) / (xs.length - 1));
  const mosY = (m: number) => y0 + PANEL_H - ((m - 1) / 3.5) * PANEL_H;
  const delMin = Math.min(80, ...rows.map((r) => Math.floor(r.deliveredPct / 5) * 5));
  const delY = (d: number) => y0 + PANEL_H - ((d - delMin) / (100 - delMin)) * PANEL_H;
  out.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 - 12}" text-anchor="middle" font-size="14" font-weight="bold">${esc(tier)}</text>`);
  out.push(`<rect x="${x0}" y="${y0}" width="${PANEL_W}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
  for (const m of [1, 2, 3, 4, 4.5]) {
    out.push(`<line x1="${x0}" y1="${mosY(m)}" x2="${x0 + PANEL_W}" y2="${mosY(m)}" stroke="#eee"/>`);
    out.push(`<text x="${x0 - 6}" y="${mosY(m) + 4}" text-anchor="end">${m}</text>`);
  }
  for (const d of [delMin, (delMin + 100) / 2, 100]) {
    out.push(`<text x="${x0 + PANEL_W + 6}" y="${delY(d) + 4}">${Math.round(d)}%</text>`);
  }
  xs.forEach((l, i) => out.push(`<text x="${xAt(i)}" y="${y0 + PANEL_H + 18}" text-anchor="middle">${esc(l)}</text>`));
  out.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + PANEL_H + 38}" text-anchor="middle">network loss</text>`);
  out.push(
    `<text transform="translate(${x0 - 40},${y0 + PANEL_H / 2}) rotate(-90)" text-anchor="middle">MOS (E-model)</text>`,
  );
  // Random-loss rates form a connected axis; burst presets are separate points to the right.
  const firstBurst = xs.findIndex((l) => !l.endsWith('%'));
  if (firstBurst > 0) {
    const xSep = (xAt(firstBurst - 1) + xAt(firstBurst)) / 2;
    out.push(`<line x1="${xSep}" y1="${y0}" x2="${xSep}" y2="${y0 + PANEL_H}" stroke="#bbb" stroke-dasharray="2,3"/>`);
    out.push(`<text x="${xSep + 4}" y="${y0 + 14}" fill="#777">bursts</text>`);
  }
  schemes.forEach((scheme, si) => {
    const color = COLORS[si % COLORS.length];
    // Earlier schemes drawn wider, so identical results stay visible underneath.
    const width = 2 + 2.5 * (schemes.length - 1 - si);
    const pts = xs
      .map((l, i) => ({ i, r: rows.find((r) => r.fec === scheme && r.loss === l) }))
      .filter((p): p is { i: number; r: SweepResult } => p.r !== undefined);
    if (pts.length === 0) return;
    const line = pts.filter((p) => firstBurst < 0 || p.i < firstBurst);
    const attrs = `fill="none" stroke="${color}" stroke-opacity="0.85" stroke-linejoin="round"`;
    out.push(`<polyline ${attrs} stroke-width="${width}" points="${line.map((p) => `${xAt(p.i)},${mosY(p.r.mos)}`).join(' ')}"/>`);
    out.push(
      `<polyline ${attrs} stroke-width="${width * 0.8}" stroke-dasharray="6,4" points="${line.map((p) => `${xAt(p.i)},${delY(p.r.deliveredPct)}`).join(' ')}"/>`,
    );
    for (const p of pts) {
      const tip = `<title>${esc(`${scheme} ${p.r.loss}: MOS ${p.r.mos}, delivered ${p.r.deliveredPct}%`)}</title>`;
      out.push(`<circle cx="${xAt(p.i)}" cy="${mosY(p.r.mos)}" r="${2 + width / 2}" fill="${color}">${tip}</circle>`);
      out.push(`<rect x="${xAt(p.i) - 1 - width / 2}" y="${delY(p.r.deliveredPct) - 1 - width / 2}" width="${2 + width}" height="${2 + width}" fill="none" stroke="${color}">${tip}</rect>`);
    }
  });
  return out;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
