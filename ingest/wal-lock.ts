// The exclusive lock of one WAL folder: `<node dir>/wal.lock`, a file holding who holds it (pid, the process's start
// time, boot id, host, role). Guarantee: two live processes never hold one folder; a holder killed by SIGKILL or a
// power cut leaves a lock that the next taker recognises as free (dead pid or reused pid, other boot) and takes over.
//
// Why a lock file and not flock/fcntl: Node has no flock of its own and no maintained pure-JS package offers one; a
// native addon would tie every install to a compiler. Creation is atomic (a complete temporary file is hard-linked to
// the lock path, which fails if one exists), a takeover of a dead holder's lock is serialised by an exclusive
// `wal.lock.break` folder, and liveness is read from the kernel (/proc), so no clock or timeout decides on this host.
// A lock written on another host (a shared volume) is judged by its heartbeat: the holder touches it every
// LOCK_HEARTBEAT_MS and it counts as free once it was not touched for LOCK_STALE_MS.
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmdirSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError, SluiceError } from '../shared/errors.js';
import { pidAlive } from '../shared/pid-alive.js';

/** Who holds a lock: the node owning the folder, or a node adopting an orphaned folder. */
export interface LockHolder {
  pid: number;
  /** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid apart. */
  startTicks: string;
  bootId: string;
  host: string;
  role: 'owner' | 'adopting';
  /** The node id of the process holding the lock (for an adoption, the adopting node). */
  node: string;
  since: string;
}

export const LOCK_FILE = 'wal.lock';
export const LOCK_HEARTBEAT_MS = 5_000;
export const LOCK_STALE_MS = 60_000;
/** A takeover lasts milliseconds; a `.break` folder older than this was left by a process that died during one. */
const BREAK_STALE_MS = 10_000;

const readOr = (file: string, fallback: string): string => {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
};

const BOOT_ID = readOr('/proc/sys/kernel/random/boot_id', 'unknown');

/** Start time of a process in clock ticks since boot, or undefined when it is gone ('' where /proc is absent). */
function startTicksOf(pid: number): string | undefined {
  const stat = readOr(`/proc/${pid}/stat`, '');
  if (stat === '') return pidAlive(pid) ? '' : undefined;
  // Field 2 (comm) may hold spaces and parentheses: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // A zombie (Z) or dying (X) process holds no files any more: its lock is free.
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

/** True when the process that wrote `h` is still running (on this host: from the kernel; elsewhere: from the heartbeat). */
export function holderAlive(h: LockHolder, lockMtimeMs: number, now = Date.now()): boolean {
  if (h.host !== os.hostname()) return now - lockMtimeMs < LOCK_STALE_MS;
  if (h.bootId !== BOOT_ID) return false; // written before a reboot or power cut
  const ticks = startTicksOf(h.pid);
  if (ticks === undefined) return false;
  return ticks === '' || h.startTicks === '' || ticks === h.startTicks;
}

export function describeHolder(h: LockHolder): string {
  return h.role === 'owner'
    ? `ingest node ${h.node} (pid ${h.pid} on ${h.host}, since ${h.since})`
    : `ingest node ${h.node} adopting it (pid ${h.pid} on ${h.host}, since ${h.since})`;
}

/** The result of one attempt: held, or the live holder that has it. */
export type LockAttempt = { held: true; lock: WalLock } | { held: false; holder: LockHolder | undefined };

/** A held lock: its heartbeat runs until `release`. */
export class WalLock {
  private readonly timer: NodeJS.Timeout;
  private released = false;

  constructor(
    readonly file: string,
    readonly holder: LockHolder,
  ) {
    this.timer = setInterval(() => this.touch(), LOCK_HEARTBEAT_MS);
    this.timer.unref();
  }

  private touch(): void {
    try {
      const now = new Date();
      utimesSync(this.file, now, now);
    } catch {
      // A missing lock file is reported by the next acquire of another process; nothing to do here.
    }
  }

  /** Removes the lock (only if it is still this holder's). Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    const current = readHolder(this.file);
    if (current && current.pid === this.holder.pid && current.startTicks === this.holder.startTicks && current.since === this.holder.since) {
      unlinkSync(this.file);
    }
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
    return typeof h.pid === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

function mtimeOf(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * One attempt to take the lock of the WAL folder of `nodeDir` for `role`. A free lock (missing, or left by a dead
 * process) is taken; a live holder's is not (its record is returned, undefined when it could not be read yet).
 */
export function tryLockWal(nodeDir: string, role: LockHolder['role'], node: string): LockAttempt {
  mkdirSync(nodeDir, { recursive: true });
  const file = path.join(nodeDir, LOCK_FILE);
  const holder: LockHolder = {
    pid: process.pid,
    startTicks: startTicksOf(process.pid) ?? '',
    bootId: BOOT_ID,
    host: os.hostname(),
    role,
    node,
    since: new Date().toISOString(),
  };
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  const fd = openSync(tmp, 'wx');
  try {
    writeSync(fd, JSON.stringify(holder));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    if (link(tmp, file)) return { held: true, lock: new WalLock(file, holder) };
    const current = readHolder(file);
    const mtime = mtimeOf(file);
    if (mtime === undefined) return tryLockWal(nodeDir, role, node); // released in between: try again
    // Unreadable: being written right now is impossible (links are complete), so it is a corrupt leftover, unless young.
    if (current === undefined) return Date.now() - mtime < BREAK_STALE_MS ? { held: false, holder: undefined } : takeOver(file, tmp, holder, undefined);
    if (holderAlive(current, mtime)) return { held: false, holder: current };
    return takeOver(file, tmp, holder, current);
  } finally {
    unlinkSync(tmp);
  }
}

/** Hard-links `from` to `to`; false when `to` exists. */
function link(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** Replaces a dead holder's lock, once, under the `.break` folder so two takers cannot both replace it. */
function takeOver(file: string, tmp: string, holder: LockHolder, dead: LockHolder | undefined): LockAttempt {
  const breaker = `${file}.break`;
  try {
    mkdirSync(breaker);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const age = Date.now() - (mtimeOf(breaker) ?? Date.now());
    if (age > BREAK_STALE_MS) rmdirSync(breaker);
    return { held: false, holder: dead };
  }
  try {
    const again = readHolder(file);
    // Still the same dead record? (another taker may have replaced it between our read and our break folder)
    if (JSON.stringify(again) !== JSON.stringify(dead)) return { held: false, holder: again };
    try {
      unlinkSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!link(tmp, file)) return { held: false, holder: readHolder(file) };
    return { held: true, lock: new WalLock(file, holder) };
  } finally {
    rmdirSync(breaker);
  }
}

/** Code of the error of a start refused because the lock of its WAL folder cannot be read. */
export const WAL_LOCKED = 'wal_locked';

/**
 * Takes the lock of this node's own WAL folder for as long as the process runs. A live owner → refused with its pid
 * (two live nodes never share a folder); a node adopting the folder → waits until its adoption is done.
 */
export async function lockOwnWal(nodeDir: string, node: string, onWaiting: (holder: string) => void, pollMs = 250): Promise<WalLock> {
  let waitingFor: string | undefined;
  for (let unreadable = 0; ; ) {
    const attempt = tryLockWal(nodeDir, 'owner', node);
    if (attempt.held) return attempt.lock;
    const h = attempt.holder;
    if (h?.role === 'owner') {
      // A ConfigError: the start is refused like a wrong setting (`sluice ingest` prints it and exits with 2).
      throw new ConfigError(
        `the WAL folder ${nodeDir} is in use by ${describeHolder(h)}: two ingest nodes cannot share one WAL folder. Stop that process, or give this node another SLUICE_NODE_ID (a folder whose node is gone is adopted by the other nodes)`,
      );
    }
    if (h === undefined && ++unreadable > 40) {
      throw new SluiceError(`the lock ${path.join(nodeDir, LOCK_FILE)} cannot be read; remove it if no ingest node uses ${nodeDir}`, WAL_LOCKED, false);
    }
    if (h !== undefined && waitingFor !== describeHolder(h)) {
      waitingFor = describeHolder(h);
      onWaiting(waitingFor);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
