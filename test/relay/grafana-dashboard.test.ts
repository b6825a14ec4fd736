/**
 * The Grafana dashboard (docs/grafana/wzp-relay.json) imports as is: what Grafana's import
 * needs (a schema version it migrates from, every `${DS_...}` it must substitute declared in
 * `__inputs`), one data source variable every panel follows, panels that fit the grid without
 * overlapping, and queries that name only series a relay exports and variables the dashboard
 * declares. (No Grafana package exists here: test/relay/prometheus.integration.test.ts runs
 * every query against a real Prometheus; this checks the import contract around them.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RelayMetricsRegistry } from '../../core/relay/metrics.js';

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  gridPos?: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
}
interface Dashboard {
  __inputs?: { name: string; type: string; pluginId: string }[];
  __requires?: { type: string; id: string }[];
  schemaVersion?: number;
  uid?: string;
  title?: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

const root = join(fileURLToPath(import.meta.url), '../../../..');
const text = readFileSync(join(root, 'docs/grafana/wzp-relay.json'), 'utf8');
const dashboard = JSON.parse(text) as Dashboard;
/** Grafana's own variables a query may use. */
const BUILT_INS = new Set(['__rate_interval', '__interval', '__range', '__interval_ms', '__range_s']);

describe('Grafana dashboard: imports as is', () => {
  test('a schema version Grafana 9-11 imports, a uid and a title', () => {
    assert.equal(typeof dashboard.schemaVersion, 'number');
    assert.ok(dashboard.schemaVersion! >= 36 && dashboard.schemaVersion! <= 41, `schemaVersion ${dashboard.schemaVersion}`);
    assert.match(dashboard.uid ?? '', /^[A-Za-z0-9_-]{1,40}$/);
    assert.ok(dashboard.title);
  });

  test('every ${DS_...} input is declared in __inputs, as a Prometheus data source', () => {
    const used = new Set([...text.matchAll(/\$\{(DS_[A-Z0-9_]+)\}/g)].map((m) => m[1]));
    const declared = new Map((dashboard.__inputs ?? []).map((i) => [i.name, i]));
    assert.ok(used.size > 0, 'the dashboard asks for its data source on import');
    for (const name of used) {
      const input = declared.get(name);
      assert.ok(input, `\${${name}} is used but not in __inputs`);
      assert.equal(input.type, 'datasource');
      assert.equal(input.pluginId, 'prometheus');
    }
  });

  test('one data source variable, followed by every panel and query', () => {
    const dsVars = dashboard.templating.list.filter((v) => v.type === 'datasource');
    assert.equal(dsVars.length, 1);
    assert.equal(dsVars[0].query, 'prometheus');
    const uid = `\${${dsVars[0].name}}`;
    for (const p of dashboard.panels) {
      if (p.type === 'row') continue;
      assert.deepEqual(p.datasource, { type: 'prometheus', uid }, `panel "${p.title}"`);
      for (const t of p.targets ?? []) assert.deepEqual(t.datasource, { type: 'prometheus', uid }, `panel "${p.title}" target ${t.refId}`);
    }
  });

  test('panels have unique ids, fit the 24-column grid and do not overlap; __requires names their types', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      assert.ok(g && g.w > 0 && g.h > 0 && g.x >= 0 && g.y >= 0 && g.x + g.w <= 24, `panel "${p.title}" gridPos ${JSON.stringify(g)}`);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const cell = `${x},${y}`;
          assert.ok(!cells.has(cell), `panel "${p.title}" overlaps another at ${cell}`);
          cells.add(cell);
        }
      }
    }
    const required = new Set((dashboard.__requires ?? []).filter((r) => r.type === 'panel').map((r) => r.id));
    for (const p of dashboard.panels) assert.ok(required.has(p.type!), `panel type ${p.type} not in __requires`);
  });

  test('queries name only series a relay exports, and only declared variables', async () => {
    const exported = new Set((await new RelayMetricsRegistry().prometheus().getMetricsAsJSON()).map((m) => m.name));
    const variables = new Set(dashboard.templating.list.map((v) => v.name));
    let queries = 0;
    for (const p of dashboard.panels) {
      const refIds = (p.targets ?? []).map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `panel "${p.title}": unique refIds`);
      for (const t of p.targets ?? []) {
        const expr = t.expr ?? '';
        assert.ok(expr.trim().length > 0, `panel "${p.title}" target ${t.refId} has a query`);
        queries++;
        for (const [, name] of expr.matchAll(/\b((?:wzp_relay|process|nodejs)_[a-z0-9_]+)\b/g)) {
          const base = name.replace(/_(bucket|sum|count)$/, '');
          assert.ok(exported.has(name) || exported.has(base), `panel "${p.title}": ${name} is not a series a relay exports`);
        }
        for (const [, v] of expr.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
          assert.ok(variables.has(v) || BUILT_INS.has(v), `panel "${p.title}": $${v} is not a dashboard variable`);
        }
      }
    }
    assert.ok(queries >= 16, `${queries} queries`);
  });
});
