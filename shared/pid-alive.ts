// Whether a process of this host runs, by its pid: signal 0 checks without sending anything, and EPERM means it runs
// as another user. (A pid can be reused once its process ended; callers that must tell that apart compare a start
// time, as ingest/wal-lock.ts does.)
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
