/**
 * naudiodon (PortAudio) printf()s diagnostics to the process's standard output whenever a
 * device opens, underflows or closes ("PortAudio V19.6.0-devel", "AudioIO: portAudio status -
 * output underflow", ...), with no switch to turn it off. That would corrupt the one JSON
 * document `--json` promises on stdout. While audio devices are open, file descriptor 1 is
 * therefore pointed at standard error (dup/dup2 through koffi, already a dependency for
 * Codec2), and restored, after flushing C stdio, when the last device closes. Node's own
 * writes to stdout in that window go to stderr too; wzp prints its result only after the
 * devices are closed.
 *
 * PortAudio's initialisation is noisier still: on a machine without a sound card, ALSA's
 * library writes ~100 lines per initialisation to stderr ("ALSA lib confmisc.c:855:
 * (parse_card) cannot find card '0'", JACK's "cannot connect to server", ...) before wzp can say
 * the one useful thing. `quietNative()` runs a synchronous native call with both descriptors
 * pointed at /dev/null (WZP_DEBUG=1 keeps them).
 */
import koffi from 'koffi';

interface Libc {
  dup(fd: number): number;
  dup2(from: number, to: number): number;
  close(fd: number): number;
  fflush(stream: null): number;
  open(path: string, flags: number): number;
}

const O_WRONLY = 1;

let libc: Libc | undefined;
let savedStdout = -1;
let holders = 0;

function loadLibc(): Libc | undefined {
  if (libc) return libc;
  try {
    const lib = koffi.load('libc.so.6');
    libc = {
      dup: lib.func('int dup(int)'),
      dup2: lib.func('int dup2(int, int)'),
      close: lib.func('int close(int)'),
      fflush: lib.func('int fflush(void *)'),
      open: lib.func('int open(const char *, int)'),
    };
  } catch {
    libc = undefined; // not glibc: leave stdout alone
  }
  return libc;
}

/** Divert native writes to stdout onto stderr; the returned function undoes it (once). */
export function divertNativeStdout(): () => void {
  const c = loadLibc();
  if (!c) return () => undefined;
  if (holders++ === 0) {
    c.fflush(null);
    savedStdout = c.dup(1);
    if (savedStdout >= 0) c.dup2(2, 1);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders === 0 && savedStdout >= 0) {
      c.fflush(null);
      c.dup2(savedStdout, 1);
      c.close(savedStdout);
      savedStdout = -1;
    }
  };
}

/**
 * Run `call` (synchronous native code: PortAudio's initialisation, device listing, opening a
 * stream) with the process's stdout and stderr descriptors pointed at /dev/null, so what the
 * native libraries print there is dropped; restored (after flushing C stdio) before returning
 * or throwing. Nothing of Node's can write in between: the call blocks the event loop.
 * With WZP_DEBUG set, or without glibc, the call runs as is.
 */
export function quietNative<T>(call: () => T): T {
  const c = process.env.WZP_DEBUG ? undefined : loadLibc();
  if (!c) return call();
  c.fflush(null);
  const devNull = c.open('/dev/null', O_WRONLY);
  if (devNull < 0) return call();
  const saved = [c.dup(1), c.dup(2)];
  if (saved.some((fd) => fd < 0)) {
    for (const fd of [devNull, ...saved]) if (fd >= 0) c.close(fd);
    return call();
  }
  c.dup2(devNull, 1);
  c.dup2(devNull, 2);
  try {
    return call();
  } finally {
    c.fflush(null);
    c.dup2(saved[0], 1);
    c.dup2(saved[1], 2);
    for (const fd of [devNull, ...saved]) c.close(fd);
  }
}

/**
 * When the sound server died under an open stream, naudiodon's stop waits forever for its
 * dead audio thread and holds a libuv thread: the process could then never exit, not even
 * through process.exit(). After the command has written its output, end the process with
 * _exit() instead (only in that case).
 */
export function exitIfAudioStuck(stuck: boolean, code: number): void {
  if (!stuck) return;
  const lib = (() => {
    try {
      return koffi.load('libc.so.6');
    } catch {
      return undefined;
    }
  })();
  const hardExit: ((status: number) => void) | undefined = lib?.func('void _exit(int)');
  if (!hardExit) return;
  // Let stdout and stderr drain first: _exit does not flush Node's streams.
  process.stdout.write('', () => process.stderr.write('', () => hardExit(code)));
}
