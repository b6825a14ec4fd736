/**
 * Helpers for the NAT command tests: run the real CLI (bin/run.js) inside a lab network
 * namespace, start a `wzp relay` process in one, and check a JSON document against the
 * subset of JSON Schema our report schemas use.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, type CliHome, REPO_ROOT } from '../helpers/cli.js';

export interface NsRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time of the whole process, start-up included. */
  wallMs: number;
}

/** `ip netns exec NS node bin/run.js ...args`, bounded by timeoutMs (then SIGKILL). */
export function wzpIn(ns: string, args: string[], home: CliHome, timeoutMs = 30_000): Promise<NsRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wzp ${args.join(' ')} in ${ns} did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, wallMs: performance.now() - started });
    });
  });
}

/** The `result` of a successful `--json` run; fails with the whole output otherwise. */
export function jsonResult<T>(run: NsRun, what: string): T {
  let doc: { status?: number; result?: T };
  try {
    doc = JSON.parse(run.stdout);
  } catch {
    throw new Error(`${what}: stdout is not one JSON document (exit ${run.code})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
  if (run.code !== 0 || doc.status !== 0 || doc.result === undefined) {
    throw new Error(`${what}: exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
  return doc.result;
}

export interface NsRelay {
  address: string;
  fingerprint: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * `wzp relay --listen ADDRESS [...extra]` inside a namespace, with its identity in `configDir`;
 * resolves on its "listening on ... fingerprint ..." line (bounded: 20 s).
 */
export function startRelayIn(ns: string, listen: string, configDir: string, home: CliHome, extra: readonly string[] = []): Promise<NsRelay> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, 'relay', '--listen', listen, '--config-dir', configDir, ...extra], {
      env: home.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise<void>((done) => child.once('close', () => done()));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const force = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(force);
      }
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`relay in ${ns} did not start in 20 s\nstderr: ${stderr}`));
    }, 20_000);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on (\S+) fingerprint (\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve({ address: m[1], fingerprint: m[2], child, stop });
      }
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay in ${ns} exited with ${code} before listening\nstderr: ${stderr}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// JSON Schema, the subset docs/schemas uses: type (one or a list), properties, required,
// additionalProperties (false or a schema), items, enum, const, $ref to #/$defs/..., minimum.

type Schema = Record<string, unknown>;

export function loadSchema(name: string): Schema {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'docs', 'schemas', name), 'utf8')) as Schema;
}

/** Every violation, as `path: problem`; empty when the value conforms. */
export function validate(value: unknown, schema: Schema, root: Schema = schema, path = '$'): string[] {
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.replace(/^#\/\$defs\//, '');
    const target = (root.$defs as Record<string, Schema> | undefined)?.[name];
    if (!target) return [`${path}: unknown $ref ${schema.$ref}`];
    return validate(value, target, root, path);
  }
  const errors: string[] = [];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => hasType(value, t))) return [`${path}: expected ${types.join(' or ')}, got ${JSON.stringify(value)?.slice(0, 80)}`];
  }
  if (schema.enum !== undefined && !(schema.enum as unknown[]).includes(value)) errors.push(`${path}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if (schema.const !== undefined && value !== schema.const) errors.push(`${path}: expected ${JSON.stringify(schema.const)}`);
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) errors.push(`${path}: ${value} < ${schema.minimum}`);
  if (isObject(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) if (!(key in value)) errors.push(`${path}: missing "${key}"`);
    for (const [key, child] of Object.entries(value)) {
      if (properties[key]) errors.push(...validate(child, properties[key], root, `${path}.${key}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: undocumented "${key}"`);
      else if (isObject(schema.additionalProperties)) errors.push(...validate(child, schema.additionalProperties as Schema, root, `${path}.${key}`));
    }
  }
  if (Array.isArray(value) && isObject(schema.items)) value.forEach((item, i) => errors.push(...validate(item, schema.items as Schema, root, `${path}[${i}]`)));
  return errors;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'integer':
      return Number.isInteger(value);
    case 'null':
      return value === null;
    default:
      return typeof value === type;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
