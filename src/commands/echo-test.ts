import * as Args from '@oclif/core/args';
import * as Flags from '@oclif/core/flags';
import { CheckFailedError } from '../../core/errors.js';
import type { TierName } from '../../core/media/quality.js';
import { mediaPathFlag, WzpCommand, type ReportMeta } from '../base-command.js';
import { echoTest, type EchoTestReport } from '../services/echo-test.js';
import { pinFile } from '../services/paths.js';
import { mediaPathText, relayPinnedLine } from '../services/relay-connect.js';
import { timeoutFlag, timeoutMs, tokenFlag } from '../connect-flags.js';

export const ECHO_TEST_SCHEMA_VERSION = 1;

export default class EchoTest extends WzpCommand<EchoTestReport & { meta: ReportMeta }> {
  static override summary = 'Send a test signal through a relay in echo mode and measure what comes back.';
  static override description = `Sends a test signal as 20 ms media frames in QUIC datagrams, receives the relay's echo, decodes it and reports packet loss, round-trip time, jitter and the SNR of the decoded audio against what was sent.

Without RELAY an embedded relay is started on loopback in this process, which checks the whole media path on this machine.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --duration 10',
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --codec pcm16 --json',
  ];
  static override args = {
    relay: Args.string({ description: 'Relay HOST:PORT (default: an embedded relay on loopback).', required: false }),
  };
  static override flags = {
    duration: Flags.integer({ summary: 'Seconds of audio to send.', default: 5, min: 1, max: 1200 }),
    codec: Flags.string({ summary: 'Codec name (see `wzp extensions`), used without FEC when no --tier is given.', default: 'opus' }),
    tier: Flags.string({
      summary: "Use a quality tier's codec and FEC (the call path) instead of the bare codec.",
      options: ['GOOD', 'DEGRADED', 'CATASTROPHIC'],
    }),
    mic: Flags.boolean({ summary: 'Talk into the microphone and hear yourself back through the relay.' }),
    'input-device': Flags.string({ summary: 'Input device for --mic (id or part of its name).' }),
    'output-device': Flags.string({ summary: 'Output device for --mic (id or part of its name).' }),
    'frame-ms': Flags.integer({
      summary: "Frame duration in ms (default: 20 if the codec has it, else the codec's own, e.g. 40 for codec2).",
      options: ['10', '20', '40', '60', '80'] as never,
    }),
    bitrate: Flags.integer({ summary: 'Codec bitrate in bits/s, for codecs that take one.', min: 500, max: 512000 }),
    'relay-fingerprint': Flags.string({ summary: 'Trust only this relay certificate fingerprint (overrides the stored pin).' }),
    token: tokenFlag,
    'media-path': mediaPathFlag,
    'min-snr': Flags.integer({ summary: 'Exit with status 1 if the decoded echo SNR is below this (dB); the measurements are printed (and in the JSON document) either way.' }),
    timeout: timeoutFlag,
  };

  public async run(): Promise<EchoTestReport & { meta: ReportMeta }> {
    const { args, flags } = await this.parse(EchoTest);
    let lastLine = 0;
    const report = await echoTest({
      relay: args.relay,
      configDir: this.configDir(flags),
      relayFingerprint: flags['relay-fingerprint'],
      token: flags.token,
      timeoutMs: timeoutMs(flags.timeout),
      mediaPath: flags['media-path'],
      codec: flags.codec,
      tier: flags.tier as TierName | undefined,
      mic: flags.mic ? { inputDevice: flags['input-device'], outputDevice: flags['output-device'] } : undefined,
      durationMs: flags.duration * 1000,
      frameMs: flags['frame-ms'],
      bitrate: flags.bitrate,
      registries: this.registries,
      signal: this.abortSignal,
      onConnected: (c) => {
        const pinned = relayPinnedLine(c, pinFile(this.configDir(flags)));
        if (pinned) this.progress(pinned);
        this.progress(`echo-test via ${c.embedded ? 'embedded relay ' : 'relay '}${c.relay} (fingerprint ${c.fingerprint})`);
      },
      onProgress: (p) => {
        if (!this.interactive) return;
        const now = performance.now();
        if (now - lastLine < 200 && p.sent !== p.total) return;
        lastLine = now;
        const rtt = p.lastRttMs === undefined ? '-' : `${p.lastRttMs.toFixed(1)} ms`;
        process.stderr.write(`\r  sent ${p.sent}/${p.total}  received ${p.received}  rtt ${rtt}   `);
        if (p.sent === p.total) process.stderr.write('\n');
      },
    });
    // Ctrl-C cut the progress line short: end it before the summary.
    if (report.interrupted && this.interactive) process.stderr.write('\n');
    const result = { ...report, meta: this.reportMeta(ECHO_TEST_SCHEMA_VERSION, flags, args) };
    // An interrupted test has no verdict: its partial result exits 130 (docs/exit-codes.md).
    if (flags['min-snr'] !== undefined && !flags.mic && !report.interrupted && !(report.snrDb >= flags['min-snr'])) {
      // The measurements go with the failure: printed first, and in the JSON document's result.
      throw new CheckFailedError(`decoded echo SNR ${report.snrDb} dB is below --min-snr ${flags['min-snr']} dB`, result);
    }
    return result;
  }

  protected renderHuman(r: EchoTestReport): string {
    const fec = r.fec.r > 0 ? `, FEC ${r.fec.scheme} ${r.fec.k}+${r.fec.r}${r.fec.depth > 1 ? ` x${r.fec.depth}` : ''}` : '';
    return [
      `codec       ${r.codec.name} (${r.codec.plugin}), ${r.frameMs} ms frames${fec}${r.tier ? ` [${r.tier}]` : ''}, ${(r.payloadBitrate / 1000).toFixed(1)} kbit/s of datagrams`,
      `relay       ${r.relay.address}${r.relay.embedded ? ' (embedded)' : ''}  ${r.relay.fingerprint}, ${mediaPathText(r.relay.mediaPath)}`,
      `packets     sent ${r.packetsSent}, received ${r.packetsReceived}, loss ${r.lossPct}%`,
      `rtt         p50 ${r.rttMs.p50} ms, p95 ${r.rttMs.p95} ms, max ${r.rttMs.max} ms`,
      `jitter      ${r.jitterMs} ms (RFC 3550)`,
      `playback    jitter buffer ${r.jitterBufferMs} ms, concealed ${r.concealedPct}%, recovered by FEC ${r.framesRecovered} frames`,
      `audio       SNR ${r.snrDb} dB (segmental ${r.segmentalSnrDb} dB), codec delay ${r.alignmentLagMs} ms, MOS ${r.mos}`,
      ...(r.interrupted ? [`interrupted: these figures cover the first ${(r.durationMs / 1000).toFixed(1)} s sent (Ctrl-C)`] : []),
    ].join('\n');
  }
}
