/**
 * Every codec wzp ships, and the example third-party plugin, passes the exported codec
 * compliance suite, exactly as a plugin author would run it.
 */
import { describeCodecCompliance } from '../../core/compliance/codec.js';
import type { CodecFactory } from '../../core/media/codec-types.js';
import { opusCodec } from '../../src/plugins/codec-opus/index.js';
import { pcm16Codec } from '../../src/plugins/codec-pcm/index.js';

const exampleHookUrl = new URL('../fixtures/wzp-plugin-example/index.js', import.meta.url);
const example = (await import(exampleHookUrl.href)) as { default: () => Promise<CodecFactory[]> };

describeCodecCompliance(opusCodec);
describeCodecCompliance(opusCodec, { bitrate: 6_000 });
describeCodecCompliance(pcm16Codec);
for (const factory of await example.default()) describeCodecCompliance(factory);
