// The run folder of `sparkmim pretrain`: one run per folder, one process per run. A lock file holds the
// pid of the process writing the folder; a folder that holds a run is not reused by a new run unless asked
// (--overwrite); paths saved with a run are relative to its folder, so a run can be moved or resumed from
// anywhere.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { constants } from 'node:fs';
import { access, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHECKPOINT_MANIFEST, ENCODER_WEIGHTS_FILE, readCheckpointManifest, writeFileAtomic } from '@sparkmim/trainer/node';
import { UsageError } from '../../errors';

/** The lock file in a run folder: `<pid> <host>`, removed when the run ends. */
export const LOCK_FILE = 'run.lock';

/** Files and folders a run writes: what marks a folder as holding a run, and what --overwrite removes. */
const RUN_ENTRIES = [CHECKPOINT_MANIFEST, 'metrics.jsonl', 'config.json', 'encoder.safetensors', 'loss-curve.png', 'previews', 'checkpoints'];
const RUN_FILE = /^\.?(model|optimizer)\.it\d+-[0-9a-f]{4}\.safetensors|^\..+\.\d+\.[0-9a-f]{8}\.tmp$/;

const code = (error: unknown) => (error as { code?: string }).code;

/** Says in words why a folder cannot be written (what the user can fix). */
function reasonOf(error: unknown): string {
  switch (code(error)) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'the file system is read-only';
    case 'ENOTDIR':
    case 'EEXIST':
      return 'a part of it is a file, not a folder';
    case 'ENOSPC':
      return 'no space left on the device';
    default:
      return (error as Error).message;
  }
}

/** Creates `dir` (and its parents) or says in one line why it cannot be a run folder. */
export async function makeRunFolder(dir: string): Promise<void> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) throw new UsageError(`--out: ${dir} is a file, expected a folder for the run`);
    return;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if (code(error) !== 'ENOENT') throw new UsageError(`--out: cannot use ${dir}: ${reasonOf(error)}`);
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new UsageError(`--out: cannot create the run folder ${dir}: ${reasonOf(error)}`);
  }
}

/** Whether `dir` holds (part of) a run: a checkpoint, metrics, a config ... */
export async function holdsRun(dir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  return names.find((name) => RUN_ENTRIES.includes(name) || RUN_FILE.test(name));
}

/** Removes what a run wrote in `dir` (and nothing else the user put there): for --overwrite. */
export async function clearRun(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (RUN_ENTRIES.includes(name) || RUN_FILE.test(name)) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by someone else.
    return code(error) === 'EPERM';
  }
}

interface LockHolder {
  pid: number;
  host: string;
  /** Whether the holder still runs (always assumed for another host, whose processes cannot be checked). */
  live: boolean;
}

/** Who holds the lock file `file`, or undefined when there is none (or it names no process: garbage). */
function readLockHolder(file: string): LockHolder | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const [pidText, holderHost] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!(Number.isSafeInteger(pid) && pid > 0)) return undefined;
  const host = holderHost ?? os.hostname();
  const sameHost = host === os.hostname();
  return { pid, host, live: !sameHost || (pid !== process.pid && processAlive(pid)) };
}

function lockedMessage(dir: string, holder: LockHolder): string {
  const file = path.join(dir, LOCK_FILE);
  const where = holder.host === os.hostname() ? '' : ` on ${holder.host}`;
  return `--out: ${dir} is in use by another run (pid ${holder.pid}${where}, see ${file}): one process per run folder; if that process is gone, delete ${file}`;
}

/** A held lock on a run folder; `release()` removes the lock file (also done at exit). */
export interface RunLock {
  file: string;
  release(): void;
}

/**
 * Takes the lock of run folder `dir`: creates `run.lock` holding this pid and host, atomically (`wx`). A lock
 * left by a process that no longer runs (killed, crashed) on this host is stale and taken over; one held by a
 * live process, or written on another host (whose processes cannot be checked), is a usage error naming it.
 */
export function lockRunFolder(dir: string): RunLock {
  const file = path.join(dir, LOCK_FILE);
  const host = os.hostname();
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (error) {
      if (code(error) !== 'EEXIST') throw new UsageError(`--out: cannot write the lock file ${file}: ${reasonOf(error)}`);
      const holder = readLockHolder(file);
      if (holder?.live) throw new UsageError(lockedMessage(dir, holder));
      // Stale: its process is gone (killed, crashed), or the file names none. Take it over.
      rmSync(file, { force: true });
      continue;
    }
    writeSync(fd, `${process.pid} ${host}\n`);
    closeSync(fd);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      process.off('exit', release);
      try {
        // Only our own lock: never one a later run took over.
        if (readFileSync(file, 'utf8').trim().split(/\s+/)[0] === String(process.pid)) rmSync(file, { force: true });
      } catch {
        // Gone already.
      }
    };
    process.on('exit', release);
    return { file, release };
  }
  throw new UsageError(`${dir}: could not take the lock ${file} (other processes keep changing it)`);
}

/** A path of the run's settings as saved in the run folder `dir`: relative to that folder (absolute paths stay). */
export function savedPath(value: string, dir: string): string {
  if (path.isAbsolute(value)) return value;
  return path.relative(path.resolve(dir), path.resolve(value)) || '.';
}

/** A path saved with a run, as the current process sees it: relative ones resolve against the run folder `dir`. */
export function pathFromRun(value: string, dir: string): string {
  return path.isAbsolute(value) ? value : path.join(dir, value);
}

/** The nearest folder of `dir` that exists (itself or an ancestor), or a usage error when a file is in the way. */
async function nearestExisting(dir: string): Promise<string> {
  let current = path.resolve(dir);
  for (;;) {
    try {
      const info = await stat(current);
      if (!info.isDirectory())
        throw new UsageError(
          `--out: ${current} is a file, expected a folder for the run${current === path.resolve(dir) ? '' : ` (${dir} would be inside it)`}`,
        );
      return current;
    } catch (error) {
      if (error instanceof UsageError) throw error;
      // ENOTDIR: a file further up; the walk up finds and names it.
      if (code(error) !== 'ENOENT' && code(error) !== 'ENOTDIR') throw new UsageError(`--out: cannot use ${dir}: ${reasonOf(error)}`);
    }
    const parent = path.dirname(current);
    if (parent === current) return current;
    current = parent;
  }
}

/**
 * Checks, writing nothing, that `out` can hold this run: not a file, writable, not in use by a live run, and
 * for a new run not holding another run unless `overwrite`. Called before anything is set up; {@link openRunFolder}
 * checks again under the lock.
 */
export async function checkRunFolder(out: string, { resume, overwrite }: { resume: boolean; overwrite: boolean }): Promise<void> {
  const existing = await nearestExisting(out);
  try {
    await access(existing, constants.W_OK);
  } catch (error) {
    throw new UsageError(`--out: cannot write in ${existing}: ${reasonOf(error)}`);
  }
  if (existing !== path.resolve(out)) return; // a new folder
  const holder = readLockHolder(path.join(out, LOCK_FILE));
  if (holder?.live) throw new UsageError(lockedMessage(out, holder));
  if (!resume && !overwrite) {
    const found = await holdsRun(out);
    if (found !== undefined) {
      throw new UsageError(
        `--out: ${out} already holds a run (${found}): continue it with --resume ${out}, choose another --out, or pass --overwrite to replace it`,
      );
    }
  }
}

/** Creates `out`, takes its lock and, with `overwrite`, removes the run it held. Release the lock when done. */
export async function openRunFolder(out: string, { resume, overwrite }: { resume: boolean; overwrite: boolean }): Promise<RunLock> {
  await makeRunFolder(out);
  const lock = lockRunFolder(out);
  try {
    if (!resume) {
      const found = await holdsRun(out);
      if (found !== undefined && !overwrite) {
        throw new UsageError(
          `--out: ${out} already holds a run (${found}): continue it with --resume ${out}, choose another --out, or pass --overwrite to replace it`,
        );
      }
      if (found !== undefined) await clearRun(out);
    }
  } catch (error) {
    lock.release();
    throw error;
  }
  return lock;
}

/**
 * Copies the latest checkpoint of `runDir` (rewritten every epoch) to the snapshot folder `target`: every file
 * its manifest names, each atomically, then the manifest (its paths made relative to `target`), then the files
 * of an earlier snapshot in `target` are removed: the folder holds exactly one checkpoint, and one that
 * `--resume target` continues.
 */
export async function keepCheckpointCopy(runDir: string, target: string): Promise<void> {
  const manifest = await readCheckpointManifest(runDir);
  await mkdir(target, { recursive: true });
  const files = Object.values(manifest.files).filter((file): file is string => typeof file === 'string');
  for (const file of files) await writeFileAtomic(path.join(target, file), await readFile(path.join(runDir, file)));
  const config = { ...manifest.config };
  for (const key of ['data', 'initWeights']) {
    if (typeof config[key] === 'string') config[key] = savedPath(pathFromRun(config[key] as string, runDir), target);
  }
  // The manifest last, as the trainer does: a folder with a manifest holds a whole checkpoint.
  await writeFileAtomic(path.join(target, CHECKPOINT_MANIFEST), new TextEncoder().encode(`${JSON.stringify({ ...manifest, config }, null, 2)}\n`));
  const keep = new Set([...files, CHECKPOINT_MANIFEST]);
  for (const name of await readdir(target)) {
    if (!keep.has(name) && (RUN_FILE.test(name) || name === ENCODER_WEIGHTS_FILE)) await rm(path.join(target, name), { force: true });
  }
}
