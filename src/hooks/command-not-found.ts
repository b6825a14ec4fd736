/**
 * command_not_found hook: a mistyped command is a usage error (exit 2) that says which command
 * was probably meant, as a command line to copy (`Try this: wzp netcheck --json`). With
 * `--json` the CLI prints it as an error document (src/cli.ts).
 *
 * oclif joins every word before the first flag into the id it looks up (`wzp pin list --json`
 * looks up `pin:list`), so the typed id is matched prefix by prefix: the longest prefix close
 * to a command or topic wins, and the words after it stay arguments.
 */
import type { Hook } from '@oclif/core';
import { UsageError } from '../../core/errors.js';

const hook: Hook<'command_not_found'> = async function (opts) {
  const bin = opts.config.bin;
  const known = [
    ...opts.config.commands.filter((c) => !c.hidden).flatMap((c) => [c.id, ...c.aliases]),
    ...opts.config.topics.filter((t) => !t.hidden).map((t) => t.name),
  ];
  const words = typedWords(opts.id, opts.argv ?? []);
  const match = closestCommand(words, known);
  if (match === undefined) {
    throw new UsageError(`"${words[0]}" is not a ${bin} command`, { suggestions: [`${bin} --help`] });
  }
  const typed = words.slice(0, words.length - match.rest.length).join(' ');
  const commandLine = [bin, ...match.id.split(':'), ...match.rest].map(quoteArg).join(' ');
  throw new UsageError(`"${typed}" is not a ${bin} command: did you mean "${match.id.split(':').join(' ')}"?`, {
    suggestions: [commandLine],
  });
};

/**
 * The command line as typed. oclif hands the hook an id built from the words before the first
 * flag joined with ':' (so `wzp echo-tset 127.0.0.1:4433` arrives as one id whose colons are
 * ambiguous); the process's own arguments are used when they are the ones oclif saw.
 */
function typedWords(id: string, argv: readonly string[]): string[] {
  const original = process.argv.slice(2);
  const firstFlag = original.findIndex((a) => a.startsWith('-'));
  const head = firstFlag === -1 ? original : original.slice(0, firstFlag);
  if (head.length > 0 && head.join(':') === id) return [...original];
  return [...id.split(':'), ...argv];
}

export default hook;

export interface CommandMatch {
  /** The command or topic id meant (`pins:list`). */
  id: string;
  /** Words typed after the part that named the command: its arguments. */
  rest: string[];
  distance: number;
}

/**
 * The known id closest to a prefix of the typed words, or undefined when none is close. Close
 * means an edit distance (with transpositions) of at most a third of the typed length (at
 * least 1), or the typed word being the start of the id (`ident` -> `identity`, counted as one
 * edit). The longest prefix with a close id wins (`pin list` -> `pins list`, not `pins`); among
 * equally close ids, the shortest (`pin` -> the topic `pins`, not `pins forget`).
 */
export function closestCommand(typed: readonly string[], known: readonly string[]): CommandMatch | undefined {
  const words = typed.findIndex((w) => w.startsWith('-'));
  for (let n = words === -1 ? typed.length : words; n >= 1; n--) {
    const candidate = typed.slice(0, n).join(':');
    const limit = Math.max(1, Math.floor(candidate.length / 3));
    let best: CommandMatch | undefined;
    for (const id of new Set(known)) {
      const distance = candidate.length >= 3 && id.startsWith(candidate) ? 1 : editDistance(candidate, id);
      if (distance > limit) continue;
      if (best === undefined || distance < best.distance || (distance === best.distance && id.length < best.id.length)) {
        best = { id, rest: typed.slice(n), distance };
      }
    }
    if (best) return best;
  }
  return undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** A word as a POSIX shell would need it to stay one argument. */
function quoteArg(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./[\]-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
