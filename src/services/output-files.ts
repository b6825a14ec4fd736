/**
 * Files a command writes when it is done (a call report, a recording, a sweep chart): checked
 * before the work starts, so a typo in a path costs nothing (the issue: a whole sweep ran, then
 * exited 3 and the table was lost), and written atomically, so a reader never sees half a report.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, statSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, errorMessage } from '../../core/errors.js';

/**
 * Throws a ConfigError naming `path` (and what it is for, e.g. "--report") unless a file can be
 * written there: its directory exists and is writable, and it is not a directory or a file we
 * may not write.
 */
export function checkOutputFile(path: string, what: string): void {
  const fail = (reason: string) =>
    new ConfigError(`cannot write ${what} to ${path}: ${reason}`, { suggestions: ['give a path in an existing directory you can write to'] });
  const full = resolve(path);
  const dir = dirname(full);
  let dirStat;
  try {
    dirStat = statSync(dir);
  } catch (err) {
    throw fail((err as { code?: string }).code === 'ENOENT' ? `directory ${dir} does not exist` : `cannot reach directory ${dir}: ${errorMessage(err)}`);
  }
  if (!dirStat.isDirectory()) throw fail(`${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw fail(`directory ${dir} is not writable`);
  }
  let fileStat;
  try {
    fileStat = statSync(full);
  } catch {
    return; // not there yet: it will be created
  }
  if (fileStat.isDirectory()) throw fail('it is a directory');
  try {
    accessSync(full, constants.W_OK);
  } catch {
    throw fail('the file exists and is not writable');
  }
}

/**
 * Write `data` to `path` atomically: a temporary file in the same directory, synced, then
 * renamed over `path`. A failure is a ConfigError naming the path (and `what`); the temporary
 * file is removed.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, what: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw new ConfigError(`cannot write ${what} to ${path}: ${errorMessage(err)}`, { cause: err });
  }
}
