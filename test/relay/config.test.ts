/**
 * The relay's config file (core/relay/config.ts, src/services/relay-config.ts): a full file
 * parses to the right options; every kind of bad input is a UsageError naming the key and
 * its line; flags override the file, which overrides the defaults; the generated example
 * parses as written (and its documented defaults are the relay's real ones); the reload diff
 * hides secrets; the example is written 0600 and never over an existing file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { AUTH_CACHE_SECONDS_DEFAULT, diffRelayConfigs, parseRelayConfig, relayConfigExample, type RelayConfig } from '../../core/relay/config.js';
import { DEFAULT_RELAY_LIMITS } from '../../core/relay/limits.js';
import { CONFIG_LIMIT_KEYS, readRelayConfig, relaySettings, writeRelayConfigExample } from '../../src/services/relay-config.js';
import { parseGlobalRoomFlag, parsePeerFlag, resolveFederation } from '../../src/services/relay-federation.js';
import { hashRoomName } from '../../core/crypto/room-name.js';

const FP1 = '0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef';
const FP2 = 'aaaa:bbbb:cccc:dddd:eeee:ffff:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999';

const parse = (text: string) => parseRelayConfig(text, { file: 'relay.toml', limitKeys: CONFIG_LIMIT_KEYS });

/** The UsageError a document raises (fails the test if it parses). */
function errorOf(text: string): Error & { code: number } {
  try {
    parse(text);
  } catch (err) {
    assert.equal((err as Error).name, 'UsageError', String(err));
    return err as Error & { code: number };
  }
  assert.fail(`parsed without error:\n${text}`);
}

const FULL = `# a relay
listen = "127.0.0.1:4433"
identity = "/var/lib/wzp/relay.json"
udp_media = false
media_plane = false
stun_alternate = "203.0.113.2:3479"
stats = 30
metrics = "127.0.0.1:9464"
debug_tap = "*"
drain_timeout = 12.5
source_id_prefix = 4660

[limits]
max_room_size = 3
max_connections_per_ip = 10
max_signal_kib_per_second = 8
signal_buffer_total_mib = 2

[auth]
url = "https://auth.example.org/admit?token=s3cret"
fail_open = true
cache_seconds = 5

[[rooms]]
name = "team"
allow = ["${FP1}", "${FP2}"]

[[rooms]]
id = "${'AB'.repeat(16)}"
allow = [
  "${FP2}",
]
`;

describe('relay config: parsing', () => {
  test('a full file gives every option, limits in the relay\'s units', () => {
    const { config } = parse(FULL);
    assert.equal(config.listen, '127.0.0.1:4433');
    assert.equal(config.identity, '/var/lib/wzp/relay.json');
    assert.equal(config.udpMedia, false);
    assert.equal(config.mediaPlane, false);
    assert.equal(config.stunAlternate, '203.0.113.2:3479');
    assert.equal(config.statsSeconds, 30);
    assert.equal(config.metrics, '127.0.0.1:9464');
    assert.equal(config.debugTap, '*');
    assert.equal(config.drainTimeoutSeconds, 12.5);
    assert.equal(config.sourceIdPrefix, 0x1234);
    assert.deepEqual(config.limits, { roomSize: 3, connectionsPerSource: 10, signalBytesPerSecond: 8 * 1024, signalBufferTotalBytes: 2 * 1024 * 1024 });
    assert.deepEqual(config.auth, { url: 'https://auth.example.org/admit?token=s3cret', failOpen: true, cacheSeconds: 5 });
    assert.deepEqual(config.rooms, [
      { name: 'team', allow: [FP1, FP2] },
      { id: 'ab'.repeat(16), allow: [FP2] },
    ]);
  });

  test('an empty file sets nothing; [auth] without fail_open/cache_seconds gets their defaults', () => {
    assert.deepEqual(parse('').config, { limits: {}, rooms: [] });
    assert.deepEqual(parse('[auth]\nurl = "http://127.0.0.1:8080/check"\n').config.auth, { url: 'http://127.0.0.1:8080/check', failOpen: false, cacheSeconds: AUTH_CACHE_SECONDS_DEFAULT });
  });

  test('every [limits] key is a limit flag of wzp relay, in snake_case', () => {
    assert.ok(CONFIG_LIMIT_KEYS.length >= 25);
    for (const k of CONFIG_LIMIT_KEYS) assert.match(k.key, /^[a-z0-9_]+$/);
    assert.ok(CONFIG_LIMIT_KEYS.some((k) => k.key === 'max_connections_per_ip' && k.limit === 'connectionsPerSource'));
  });
});

describe('relay config: every error names the key and its line', () => {
  const cases: [string, string, RegExp][] = [
    ['unknown top-level key', 'listen = "0.0.0.0:1"\nlisten_adress = "x"\n', /^relay\.toml:2: listen_adress: unknown key/],
    ['unknown limit', '[limits]\nmax_room_size = 3\nmax_room_sise = 4\n', /^relay\.toml:3: limits\.max_room_sise: unknown key in \[limits\]/],
    ['wrong type', 'stats = "often"\n', /^relay\.toml:1: stats: must be a whole number of seconds from 1 to 86400, not "often"/],
    ['out of range (room size over 64)', '\n[limits]\n\nmax_room_size = 65\n', /^relay\.toml:4: limits\.max_room_size: must be a whole number from 1 to 64, not 65/],
    ['zero limit', '[limits]\nmax_connections = 0\n', /^relay\.toml:2: limits\.max_connections: .* from 1 to/],
    ['fractional limit', '[limits]\nmax_member_kbps = 1.5\n', /^relay\.toml:2: limits\.max_member_kbps: must be a whole number/],
    ['bad listen address', 'udp_media = true\nlisten = "nowhere"\n', /^relay\.toml:2: listen: "nowhere" is not HOST:PORT/],
    ['bad port', 'listen = "0.0.0.0:99999"\n', /^relay\.toml:1: listen: .*invalid port/],
    ['bad metrics address', 'metrics = "9464:x"\n', /^relay\.toml:1: metrics: "9464:x" is not HOST:PORT/],
    ['bool as string', 'udp_media = "yes"\n', /^relay\.toml:1: udp_media: must be true or false, not "yes"/],
    ['media plane not a bool', 'media_plane = 1\n', /^relay\.toml:1: media_plane: must be true or false, not 1/],
    ['negative drain timeout', 'drain_timeout = -1\n', /^relay\.toml:1: drain_timeout: must be a number of seconds/],
    ['a source-id prefix over 16 bits', 'stats = 5\nsource_id_prefix = 65536\n', /^relay\.toml:2: source_id_prefix: must be a whole number from 0 to 65535/],
    ['limits not a table', 'limits = 5\n', /^relay\.toml:1: limits: must be a table/],
    ['dotted limit key', 'limits.max_room_size = 0\n', /^relay\.toml:1: limits\.max_room_size: must be a whole number/],
    ['unknown [auth] key', '[auth]\nurl = "https://a.example/x"\ntoken = "t"\n', /^relay\.toml:3: auth\.token: unknown key in \[auth\]/],
    ['[auth] without url', '\n[auth]\nfail_open = true\n', /^relay\.toml:2: auth: needs url/],
    ['[auth] url not http', '[auth]\nurl = "ftp://a.example/x?token=SECRET"\n', /^relay\.toml:2: auth\.url: "ftp:\/\/a\.example\/x \(user, query and fragment hidden\)" is not an http/],
    ['fail_open not a bool', '[auth]\nurl = "https://a.example/"\nfail_open = 1\n', /^relay\.toml:3: auth\.fail_open: must be true or false/],
    ['bad fingerprint (inline list)', `[[rooms]]\nname = "x"\nallow = ["${FP1}", "abcd"]\n`, /^relay\.toml:3: rooms\[0\]\.allow\[1\]: "abcd" is not a fingerprint/],
    ['bad fingerprint (one per line), second room', `[[rooms]]\nname = "a"\nallow = ["${FP1}"]\n\n[[rooms]]\nname = "b"\nallow = [\n  "${FP1}",\n  "${FP2}:0000",\n]\n`, /^relay\.toml:9: rooms\[1\]\.allow\[1\]: .* is not a fingerprint/],
    ['bad room id', '[[rooms]]\nid = "abc"\nallow = []\n', /^relay\.toml:2: rooms\[0\]\.id: "abc" is not a room id/],
    ['room with name and id', `[[rooms]]\nname = "a"\nid = "${'a'.repeat(32)}"\nallow = []\n`, /^relay\.toml:1: rooms\[0\]: needs exactly one of name/],
    ['room without allow', '[[rooms]]\nname = "a"\n', /^relay\.toml:1: rooms\[0\]: needs allow/],
    ['unknown room key', '[[rooms]]\nname = "a"\nallow = []\ndeny = []\n', /^relay\.toml:4: rooms\[0\]\.deny: unknown key in \[rooms\]/],
    ['the same room twice', '[[rooms]]\nname = "a"\nallow = []\n[[rooms]]\nname = "a"\nallow = []\n', /^relay\.toml:4: rooms\[1\]: a second \[\[rooms\]\] entry for name "a"/],
    ['peers as a plain table', '[peers]\naddress = "x"\n', /^relay\.toml:1: peers: must be \[\[peers\]\] tables/],
    ['a peer without an address', `[[peers]]\nfingerprint = "${FP1}"\n`, /^relay\.toml:1: peers\[0\]: needs address/],
    ['a peer address without a port', `[[peers]]\naddress = "relay2.example.org"\nfingerprint = "${FP1}"\n`, /^relay\.toml:2: peers\[0\]\.address: "relay2\.example\.org" is not HOST:PORT/],
    ['a peer address with port 0', `[[peers]]\naddress = "10.0.0.2:0"\nfingerprint = "${FP1}"\n`, /^relay\.toml:2: peers\[0\]\.address: .*port 0/],
    ['a peer without a fingerprint', '[[peers]]\naddress = "10.0.0.2:4433"\n', /^relay\.toml:1: peers\[0\]: needs fingerprint/],
    ['a peer with a short fingerprint', '[[peers]]\naddress = "10.0.0.2:4433"\nfingerprint = "0123:4567"\n', /^relay\.toml:3: peers\[0\]\.fingerprint: "0123:4567" is not a fingerprint/],
    ['an unknown peer key', `[[peers]]\naddress = "10.0.0.2:4433"\nfingerprint = "${FP1}"\nname = "b"\n`, /^relay\.toml:4: peers\[0\]\.name: unknown key in \[peers\]/],
    ['the same peer twice', `[[peers]]\naddress = "10.0.0.2:4433"\nfingerprint = "${FP1}"\n[[peers]]\naddress = "10.0.0.3:4433"\nfingerprint = "${FP1}"\n`, /^relay\.toml:4: peers\[1\]: a second \[\[peers\]\] entry/],
    ['a trusted relay without a fingerprint', '[[trusted]]\n', /^relay\.toml:1: trusted\[0\]: needs fingerprint/],
    ['a trusted relay with an address', `[[trusted]]\nfingerprint = "${FP1}"\naddress = "10.0.0.2:4433"\n`, /^relay\.toml:3: trusted\[0\]\.address: unknown key/],
    ['a global room with neither name nor id', '[[global_rooms]]\n', /^relay\.toml:1: global_rooms\[0\]: needs exactly one of name/],
    ['a global room with a bad id', '[[global_rooms]]\nid = "xyz"\n', /^relay\.toml:2: global_rooms\[0\]\.id: "xyz" is not a room id/],
    ['the same global room twice', '[[global_rooms]]\nname = "a"\n[[global_rooms]]\nname = "a"\n', /^relay\.toml:3: global_rooms\[1\]: a second/],
    ['a mistyped global_rooms', '[[global_room]]\nname = "a"\n', /^relay\.toml:1: global_room: unknown key/],
    ['a date', 'stats = 1979-05-27\n', /^relay\.toml:1: stats: .* not a date/],
  ];
  for (const [name, text, expected] of cases) {
    test(name, () => {
      const err = errorOf(text);
      assert.match(err.message, expected);
      assert.equal(err.code, 2, 'a usage error: exit code 2');
    });
  }

  test('a mistyped key suggests the right one', () => {
    const err = errorOf('[limits]\nmax_room_sise = 4\n') as unknown as { suggestions: string[] };
    assert.deepEqual(err.suggestions, ['did you mean limits.max_room_size?']);
  });

  test('a TOML syntax error (a corrupt file: ConfigError, exit 3) gives line and column, and shows the line', () => {
    const syntax = (text: string) => {
      try {
        parse(text);
      } catch (err) {
        assert.equal((err as Error).name, 'ConfigError', String(err));
        return (err as Error).message;
      }
      assert.fail('parsed');
    };
    const message = syntax('listen = "0.0.0.0:4433"\n[limits]\nmax_room_size = = 3\n');
    assert.match(message, /^relay\.toml:3:\d+: invalid TOML: /);
    assert.match(message, /max_room_size = = 3/);
    assert.match(syntax('stats = 1\nstats = 2\n'), /^relay\.toml:2:\d+: invalid TOML/);
    assert.match(syntax('root:x:0:0:root:/root:/bin/bash\n'), /^relay\.toml:1:\d+: invalid TOML/);
  });

  test('a secret in the auth URL never appears in an error', () => {
    const err = errorOf('[auth]\nurl = "gopher://u:pw@a.example/x?token=SECRET#frag"\n');
    assert.doesNotMatch(err.message, /SECRET|:pw@|#frag/);
  });

  test('a bad stun_alternate is refused with its line (checked as the flag is)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wzp-config-'));
    try {
      const path = join(dir, 'r.toml');
      writeFileSync(path, 'listen = "0.0.0.0:4433"\nstun_alternate = "not-an-ip"\n');
      await assert.rejects(readRelayConfig(path), (err: Error) => err.name === 'UsageError' && err.message.startsWith(`${path}:2: stun_alternate: "not-an-ip"`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('relay config: precedence', () => {
  const file = parse('listen = "127.0.0.1:5000"\nudp_media = false\nstats = 10\n[limits]\nmax_room_size = 5\nmax_connections = 100\n').config;
  const defaults = { identityPath: '/default/identity.json' };

  test('nothing given: the defaults', () => {
    const s = relaySettings(undefined, { limits: {} }, defaults);
    assert.equal(s.listen, '0.0.0.0:4433');
    assert.equal(s.udpMedia, true);
    assert.equal(s.mediaPlane, true);
    assert.equal(s.identityPath, '/default/identity.json');
    assert.deepEqual(s.limits, {});
    assert.equal(s.statsIntervalMs, undefined);
  });

  test('the file over the defaults', () => {
    const s = relaySettings(file, { limits: {} }, defaults);
    assert.equal(s.listen, '127.0.0.1:5000');
    assert.equal(s.udpMedia, false);
    assert.equal(s.statsIntervalMs, 10_000);
    assert.deepEqual(s.limits, { roomSize: 5, connections: 100 });
  });

  test('flags given on the command line over the file (only those given)', () => {
    const s = relaySettings(file, { listen: '127.0.0.1:6000', udpMedia: true, limits: { roomSize: 2 } }, defaults);
    assert.equal(s.listen, '127.0.0.1:6000');
    assert.equal(s.udpMedia, true);
    assert.equal(s.statsIntervalMs, 10_000);
    assert.deepEqual(s.limits, { roomSize: 2, connections: 100 });
  });

  test('the file\'s other keys map onto the run options', () => {
    const s = relaySettings(parse(FULL).config, { limits: {} }, defaults);
    assert.equal(s.metrics, '127.0.0.1:9464');
    assert.equal(s.debugTap, '*');
    assert.equal(s.drainTimeoutMs, 12_500);
    assert.equal(s.sourceIdPrefix, 0x1234);
    assert.equal(relaySettings(parse(FULL).config, { limits: {}, sourceIdPrefix: 7 }, defaults).sourceIdPrefix, 7, 'the flag over the file');
    assert.deepEqual(s.auth, { url: 'https://auth.example.org/admit?token=s3cret', failOpen: true, cacheSeconds: 5 });
    assert.equal(s.roomAcls?.length, 2);
    assert.equal(s.stunAlternate, '203.0.113.2:3479');
  });

  test('--metrics, --auth-url and --acl over the file\'s metrics, [auth] and [[rooms]]', () => {
    const full = parse(FULL).config;
    const s = relaySettings(full, { limits: {}, metrics: '127.0.0.1:9999', auth: { url: 'http://127.0.0.1:1/check' }, roomAcls: [{ name: 'ops', allow: [FP1] }] }, defaults);
    assert.equal(s.metrics, '127.0.0.1:9999');
    // The flag's URL; fail_open and cache_seconds not given as flags keep the file's.
    assert.deepEqual(s.auth, { url: 'http://127.0.0.1:1/check', failOpen: true, cacheSeconds: 5 });
    assert.deepEqual(s.roomAcls, [{ name: 'ops', allow: [FP1] }]);
    const noFile = relaySettings(undefined, { limits: {}, auth: { url: 'http://127.0.0.1:1/check', cacheSeconds: 0 } }, defaults);
    assert.deepEqual(noFile.auth, { url: 'http://127.0.0.1:1/check', failOpen: false, cacheSeconds: 0 });
  });
});

describe('relay config: the generated example', () => {
  const facts = { listen: '198.51.100.7:4433', identity: '/etc/wzp/relay-identity.json', fingerprint: FP1, limitKeys: CONFIG_LIMIT_KEYS };
  const example = relayConfigExample(facts);

  test('parses as written, carrying this relay\'s address and identity', () => {
    const { config } = parse(example);
    assert.deepEqual(config, { listen: facts.listen, identity: facts.identity, limits: {}, rooms: [] });
    assert.ok(example.includes(FP1), 'the fingerprint is in the example');
    assert.match(example, /^# {3}address = "198\.51\.100\.7:4433"$/m);
    assert.match(example, new RegExp(`^# {3}fingerprint = "${FP1}"$`, 'm'));
  });

  test('documents every key, and uncommented its documented defaults are the relay\'s defaults', () => {
    for (const key of ['udp_media', 'media_plane', 'stun_alternate', 'stats', 'metrics', 'debug_tap', 'drain_timeout', 'source_id_prefix', 'url', 'fail_open', 'cache_seconds', 'allow']) {
      assert.match(example, new RegExp(`^# ${key} = `, 'm'), key);
    }
    // The source-id prefix shown is this relay's default: its fingerprint's first 16 bits.
    assert.match(example, new RegExp(`^# source_id_prefix = ${Number.parseInt(FP1.slice(0, 4), 16)}$`, 'm'));
    for (const k of CONFIG_LIMIT_KEYS) assert.match(example, new RegExp(`^# ${k.key} = \\d+$`, 'm'), k.key);
    // Uncomment every limit line and [auth]: the values shown must be accepted and be the defaults.
    const limitKeys = new Set(CONFIG_LIMIT_KEYS.map((k) => k.key));
    const uncommented = example
      .split('\n')
      .map((l) => {
        const m = /^# ([a-z_]+) = /.exec(l);
        if (l === '# [auth]' || (m && (limitKeys.has(m[1]) || ['url', 'fail_open', 'cache_seconds'].includes(m[1])))) return l.slice(2);
        return l;
      })
      .join('\n');
    const { config } = parse(uncommented);
    for (const k of CONFIG_LIMIT_KEYS) assert.equal(config.limits[k.limit], DEFAULT_RELAY_LIMITS[k.limit], k.key);
    assert.equal(config.auth?.failOpen, false);
    assert.equal(config.auth?.cacheSeconds, AUTH_CACHE_SECONDS_DEFAULT);
  });

  test('its peer snippet, pasted into another relay\'s config uncommented, is a [[peers]] entry for this relay', () => {
    const lines = example.split('\n');
    const at = lines.indexOf('#   [[peers]]');
    assert.ok(at > 0, 'the snippet is there');
    const snippet = lines.slice(at, at + 3).map((l) => l.replace(/^# {3}/, '')).join('\n');
    const { config } = parse(`listen = "127.0.0.1:5000"\n${snippet}\n`);
    assert.deepEqual(config.peers, [{ address: facts.listen, fingerprint: FP1 }]);
    assert.doesNotMatch(example, /not implemented/);
    for (const key of ['[[peers]]', '[[trusted]]', '[[global_rooms]]']) assert.ok(example.includes(`# ${key}\n`), key);
  });

  test('still parses with a [[rooms]] block and a pasted peer snippet appended', () => {
    const edited = `${example}\n[[rooms]]\nname = "ops"\nallow = ["${FP2}"]\n\n# peer relay (pasted from its own config):\n#   address = "203.0.113.9:4433"\n#   fingerprint = "${FP2}"\n`;
    const { config } = parse(edited);
    assert.deepEqual(config.rooms, [{ name: 'ops', allow: [FP2] }]);
    assert.equal(config.listen, facts.listen);
  });

  test('is written mode 0600, atomically, and never over an existing file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wzp-config-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'relay.toml');
    const parsed = await writeRelayConfigExample(path, { listen: facts.listen, identity: facts.identity, fingerprint: FP1 });
    assert.equal(parsed.config.listen, facts.listen);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(readFileSync(path, 'utf8'), example);
    writeFileSync(path, 'listen = "127.0.0.1:1"\n');
    await assert.rejects(writeRelayConfigExample(path, { listen: facts.listen, identity: facts.identity, fingerprint: FP1 }), (err: Error) => err.name === 'ConfigError' && /not overwritten/.test(err.message));
    assert.equal(readFileSync(path, 'utf8'), 'listen = "127.0.0.1:1"\n', 'the existing file is untouched');
    assert.deepEqual(readdirSync(dir), ['relay.toml'], 'no temporary file left behind');
  });
});

describe('relay config: federation keys', () => {
  const FED = `[[peers]]\naddress = "relay2.example.org:4433"\nfingerprint = "${FP1.toUpperCase()}"\n\n[[peers]]\naddress = "[2001:db8::2]:4433"\nfingerprint = "${FP2}"\n\n[[trusted]]\nfingerprint = "${FP2}"\n\n[[global_rooms]]\nname = "all-hands"\n\n[[global_rooms]]\nid = "${'ab'.repeat(16).toUpperCase()}"\n`;

  test('[[peers]], [[trusted]] and [[global_rooms]] parse (fingerprints and ids lowercased)', () => {
    const { config } = parse(FED);
    assert.deepEqual(config.peers, [
      { address: 'relay2.example.org:4433', fingerprint: FP1 },
      { address: '[2001:db8::2]:4433', fingerprint: FP2 },
    ]);
    assert.deepEqual(config.trusted, [FP2]);
    assert.deepEqual(config.globalRooms, [{ name: 'all-hands' }, { id: 'ab'.repeat(16) }]);
  });

  test('flags replace the file\'s lists; rooms are kept by name for the relay to hash', () => {
    const { config } = parse(FED);
    const s = relaySettings(config, { limits: {} }, { identityPath: '/x' });
    assert.equal(s.federation?.peers.length, 2);
    const flagged = relaySettings(config, { limits: {}, trusted: [FP1], globalRooms: [{ name: 'other' }] }, { identityPath: '/x' });
    assert.deepEqual(flagged.federation?.trusted, [FP1]);
    assert.deepEqual(flagged.federation?.globalRooms, [{ name: 'other' }]);
    assert.equal(flagged.federation?.peers.length, 2, 'no --peer: the file\'s peers');
    assert.equal(relaySettings(undefined, { limits: {} }, { identityPath: '/x' }).federation, undefined, 'none: no federation');
  });

  test('a change to the federation lists is reported and applied live', () => {
    const before = parse(FED).config;
    const after_ = parse(FED.replace(`[[trusted]]\nfingerprint = "${FP2}"\n`, '')).config;
    const changes = diffRelayConfigs(before, after_, CONFIG_LIMIT_KEYS);
    assert.deepEqual(changes, [{ key: 'trusted', from: '1 fingerprint', to: '0 fingerprints (0 added, 1 removed)', live: true }]);
  });
});

describe('relay config: what a reload reports', () => {
  const base = parse(FULL).config;
  const with_ = (text: string): RelayConfig => parse(text).config;

  test('one change per key, limits and stats live (limits in flag units), listen needs a restart', () => {
    const next = with_(
      FULL.replace('max_room_size = 3', 'max_room_size = 4').replace('listen = "127.0.0.1:4433"', 'listen = "127.0.0.1:4434"').replace('max_signal_kib_per_second = 8\n', '').replace('stats = 30', 'stats = 5'),
    );
    const changes = diffRelayConfigs(base, next, CONFIG_LIMIT_KEYS);
    assert.deepEqual(changes, [
      { key: 'listen', from: '"127.0.0.1:4433"', to: '"127.0.0.1:4434"', live: false },
      { key: 'stats', from: '30', to: '5', live: true },
      { key: 'limits.max_signal_kib_per_second', from: '8', to: '(default 32)', live: true },
      { key: 'limits.max_room_size', from: '3', to: '4', live: true },
    ]);
  });

  test('media_plane is applied live', () => {
    const changes = diffRelayConfigs(base, with_(FULL.replace('media_plane = false', 'media_plane = true')), CONFIG_LIMIT_KEYS);
    assert.deepEqual(changes, [{ key: 'media_plane', from: 'false', to: 'true', live: true }]);
  });

  test('the auth URL\'s token never shows, even when only the token changed', () => {
    const changes = diffRelayConfigs(base, with_(FULL.replace('token=s3cret', 'token=n3w')), CONFIG_LIMIT_KEYS);
    assert.equal(changes.length, 1);
    assert.equal(changes[0].key, 'auth.url');
    assert.match(changes[0].to, /hidden part changed/);
    assert.doesNotMatch(JSON.stringify(changes), /s3cret|n3w/);
  });

  test('rooms added, removed and their lists changed', () => {
    const next = with_(FULL.replace(`allow = ["${FP1}", "${FP2}"]`, `allow = ["${FP1}"]`).replace(/\[\[rooms\]\]\nid = [\s\S]*$/, `[[rooms]]\nname = "new"\nallow = ["${FP2}"]\n`));
    const keys = diffRelayConfigs(base, next, CONFIG_LIMIT_KEYS).map((c) => `${c.key}: ${c.from} -> ${c.to}`);
    assert.deepEqual(keys.sort(), [
      `rooms[id=${'ab'.repeat(16)}]: allow 1 fingerprint -> (no access list: anyone may join)`,
      'rooms[name="new"]: (no access list: anyone may join) -> allow 1 fingerprint',
      'rooms[name="team"].allow: 2 fingerprints -> 1 fingerprint (0 added, 1 removed)',
    ]);
  });

  test('the same file: no changes', () => {
    assert.deepEqual(diffRelayConfigs(base, parse(FULL).config, CONFIG_LIMIT_KEYS), []);
  });
});

describe('relay federation flags and settings (src/services/relay-federation.ts)', () => {
  test('--peer HOST:PORT=FP, --global-room NAME|id:HEX', () => {
    assert.deepEqual(parsePeerFlag(`10.0.0.2:4433=${FP1}`), { address: '10.0.0.2:4433', fingerprint: FP1 });
    assert.deepEqual(parsePeerFlag(`[2001:db8::2]:4433=${FP1}`), { address: '[2001:db8::2]:4433', fingerprint: FP1 });
    for (const bad of ['10.0.0.2:4433', `=${FP1}`, '10.0.0.2:4433=']) assert.throws(() => parsePeerFlag(bad), (e: Error) => e.name === 'UsageError' && /HOST:PORT=FINGERPRINT/.test(e.message), bad);
    assert.deepEqual(parseGlobalRoomFlag('team'), { name: 'team' });
    assert.deepEqual(parseGlobalRoomFlag(`id:${'cd'.repeat(16)}`), { id: 'cd'.repeat(16) });
  });

  test('resolves to what the relay takes: parsed addresses, canonical fingerprints, hashed room names', () => {
    const r = resolveFederation({ peers: [{ address: '10.0.0.2:4433', fingerprint: FP1.replaceAll(':', '').toUpperCase() }], trusted: [FP2], globalRooms: [{ name: 'team' }, { name: 'team' }, { id: 'CD'.repeat(16) }] });
    assert.deepEqual(r.peers, [{ address: { host: '10.0.0.2', port: 4433 }, fingerprint: FP1 }]);
    assert.deepEqual(r.trusted, [FP2]);
    assert.deepEqual(r.globalRooms, [hashRoomName('team'), 'cd'.repeat(16)], 'names hashed as clients hash them, duplicates once');
    assert.ok(!r.globalRooms.includes('team'), 'the relay keeps no room name');
  });

  test('bad entries are usage errors naming them', () => {
    const none = { peers: [], trusted: [], globalRooms: [] };
    assert.throws(() => resolveFederation({ ...none, peers: [{ address: '10.0.0.2:0', fingerprint: FP1 }] }), (e: Error) => e.name === 'UsageError' && /peer 10\.0\.0\.2:0/.test(e.message));
    assert.throws(() => resolveFederation({ ...none, peers: [{ address: '10.0.0.2:4433', fingerprint: 'abcd' }] }), (e: Error) => e.name === 'UsageError' && /not a fingerprint/.test(e.message));
    assert.throws(() => resolveFederation({ ...none, trusted: ['nope'] }), (e: Error) => e.name === 'UsageError' && /trusted relay/.test(e.message));
    assert.throws(() => resolveFederation({ ...none, globalRooms: [{ id: 'xyz' }] }), (e: Error) => e.name === 'UsageError' && /32 hex digits/.test(e.message));
  });
});
