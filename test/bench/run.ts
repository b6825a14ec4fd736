/**
 * `npm run bench`: runs every benchmark and prints numbers and ratios. Benchmarks never pass
 * or fail; they are how speed and memory targets are measured (timed tests would be flaky).
 *
 * Usage: node dist/test/bench/run.js [name-filter]
 * Each benchmark module in this folder exports `name` and `run(): Promise<void>`, bounded in
 * count and time, sending traffic to loopback only.
 */
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface BenchModule {
  name: string;
  run(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2];
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .sort();
for (const file of files) {
  const mod = (await import(pathToFileURL(`${here}/${file}`).href)) as BenchModule;
  if (filter && !mod.name.includes(filter)) continue;
  console.log(`\n== ${mod.name}`);
  const t0 = performance.now();
  await mod.run();
  console.log(`   (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
