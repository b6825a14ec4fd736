import { Flags } from '@oclif/core';
import { WzpCommand, type ReportMeta } from '../base-command.js';
import { checkOutputFile, writeFileAtomic } from '../services/output-files.js';
import { sweepPlot } from '../services/sweep-plot.js';
import { numberList, sweep, SWEEP_SCHEMA_VERSION, type SweepReport } from '../services/sweep.js';

const words = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

type SweepResultDoc = SweepReport & { plot?: string; meta: ReportMeta };

export default class Sweep extends WzpCommand<SweepResultDoc> {
  static override summary = 'Run the media pipeline over a matrix of emulated network conditions and score it.';
  static override description = `Each scenario runs encode -> FEC -> packetize -> emulated network -> jitter buffer -> FEC decode -> decode in simulated time (seeded: the same flags give the same figures) and reports delivered frames (after FEC, before concealment), concealment, FEC and jitter-buffer delay, MOS (ITU-T G.107 E-model), SNR and bitrate on the wire. Rows that match the media-engine targets are checked against them.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --loss 0,10,25,50 --fec rs,xor --json',
    '<%= config.bin %> <%= command.id %> --tier GOOD --burst wifi,congested --fec rs,raptorq,xor --plot quality.svg',
    '<%= config.bin %> <%= command.id %> --input speech.wav --jitter 0,20,40',
  ];
  static override flags = {
    loss: Flags.string({ summary: 'Random loss rates in %, comma-separated.', default: '0,10,25,50' }),
    burst: Flags.string({ summary: 'Gilbert-Elliott burst presets, comma-separated (wifi, congested, none).', default: 'congested' }),
    jitter: Flags.string({ summary: 'Network jitter (std. dev., ms), comma-separated.', default: '0' }),
    tier: Flags.string({ summary: 'Quality tiers, comma-separated.', default: 'GOOD,DEGRADED,CATASTROPHIC' }),
    fec: Flags.string({ summary: "FEC schemes to compare, comma-separated (default: each tier's own)." }),
    codec: Flags.string({ summary: "Codec to use instead of each tier's own." }),
    k: Flags.integer({ summary: 'Source frames per FEC block (overrides the tier).', min: 1, max: 64 }),
    r: Flags.integer({ summary: 'Repair packets per FEC block (overrides the tier).', min: 0, max: 64 }),
    depth: Flags.integer({ summary: 'FEC interleaving depth (overrides the tier).', min: 1, max: 16 }),
    duration: Flags.integer({ summary: 'Seconds of material per scenario.', default: 20, min: 1, max: 600 }),
    delay: Flags.integer({ summary: 'One-way network delay, ms.', default: 40, min: 0, max: 2000 }),
    input: Flags.file({ summary: 'WAV file to use as material (any rate/channels); default: generated speech-like audio.' }),
    seed: Flags.integer({ summary: 'Random seed for the network emulator and generated material.', default: 1 }),
    vad: Flags.boolean({ summary: 'Voice activity detection: silent frames go as comfort-noise descriptions.' }),
    'noise-suppression': Flags.boolean({ summary: 'RNNoise noise suppression before the codec.' }),
    plot: Flags.string({ summary: 'Write an SVG chart (quality vs loss per FEC scheme) to this file (checked before the sweep starts).' }),
  };

  public async run(): Promise<SweepResultDoc> {
    const { flags } = await this.parse(Sweep);
    // Before the work: a bad value or an unwritable chart path must not cost a whole sweep.
    const lossPct = numberList('--loss', flags.loss, { min: 0, max: 99, what: 'a loss rate is a percentage 0-99', allowEmpty: true });
    const jitterMs = numberList('--jitter', flags.jitter, { min: 0, max: 1000, what: 'a jitter is 0-1000 ms' });
    if (flags.plot) checkOutputFile(flags.plot, 'the chart');
    const started = performance.now();
    const report = await sweep({
      lossPct,
      bursts: words(flags.burst),
      jitterMs,
      tiers: words(flags.tier),
      fec: flags.fec ? words(flags.fec) : undefined,
      codec: flags.codec,
      k: flags.k,
      r: flags.r,
      depth: flags.depth,
      durationMs: flags.duration * 1000,
      delayMs: flags.delay,
      input: flags.input,
      seed: flags.seed,
      vad: flags.vad,
      noiseSuppression: flags['noise-suppression'],
      registries: this.registries,
      signal: this.abortSignal,
      onScenario: (i, total, label) => {
        if (this.interactive) process.stderr.write(`\r\x1b[K[${i + 1}/${total}] ${label}`);
        if (this.interactive && i + 1 === total) process.stderr.write('\n');
      },
    });
    if (this.interactive) process.stderr.write(`\r\x1b[Kswept ${report.results.length} scenarios in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    if (flags.plot && report.results.length > 0) {
      await writeFileAtomic(flags.plot, sweepPlot(report.results), 'the chart');
      return { ...report, plot: flags.plot, meta: this.reportMeta(SWEEP_SCHEMA_VERSION, flags) };
    }
    return { ...report, meta: this.reportMeta(SWEEP_SCHEMA_VERSION, flags) };
  }

  protected renderHuman(r: SweepReport & { plot?: string }): string {
    const head = ['tier', 'codec', 'fec', 'k/r/d', 'loss', 'jit', 'silent', 'delivered', 'fec-rec', 'concealed', 'fec-delay', 'jb-delay', 'MOS', 'SNR', 'seg-SNR', 'kbit/s'];
    const rows = r.results.map((x) => [
      x.tier,
      x.codec,
      x.fec,
      `${x.k}/${x.r}/${x.depth}`,
      x.loss,
      `${x.jitterMs}`,
      `${x.silentPct}%`,
      `${x.deliveredPct.toFixed(2)}%`,
      `${x.recoveredPct.toFixed(1)}%`,
      `${x.concealedPct.toFixed(2)}%`,
      `${x.fecDelayMs} ms`,
      `${x.jitterBufferMs} ms`,
      x.mos.toFixed(2),
      `${x.snrDb}`,
      `${x.segmentalSnrDb}`,
      x.wireKbps.toFixed(1),
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
    const lines = [
      `material: ${r.material.source}, ${r.material.durationMs / 1000} s per scenario; one-way delay ${r.delayMs} ms; seed ${r.seed}`,
      line(head),
      ...rows.map(line),
    ];
    if (r.targets.length > 0) {
      lines.push('', 'targets:');
      for (const t of r.targets) lines.push(`  ${t.met ? 'met ' : 'MISS'}  ${t.tier} ${t.fec} at ${t.condition}: ${t.actual} (need ${t.requirement})`);
    }
    if (r.interrupted) lines.push('', 'interrupted: only the scenarios above ran');
    if (r.plot) lines.push('', `chart written to ${r.plot}`);
    return lines.join('\n');
  }
}
