// The lifecycle every Sluice process shares: a started service exposes its URL and a close() that
// finishes in-flight work; SIGTERM/SIGINT trigger close() once, a second signal exits at once. A child of a
// supervisor (an IPC channel to it) also closes when that channel closes: its supervisor exited, however it died.
import type { Logger } from './logger.js';

export interface Service {
  /** Base URL of the service's HTTP server (API, /healthz, /readyz, /metrics). */
  url: string;
  /** Stops accepting work, finishes or releases in-flight work, then resolves. */
  close(): Promise<void>;
}

export function closeOnSignals(service: Service, log: Logger, onClosed: () => void = () => process.exit(0)): void {
  let closing = false;
  const handler = (signal: NodeJS.Signals) => {
    if (closing) {
      log.warn({ signal }, 'second signal: exiting without finishing');
      process.exit(1);
    }
    closing = true;
    log.info({ signal }, 'shutting down');
    service.close().then(onClosed, (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  // The supervisor runs its children in their own process groups (shared/process-supervisor.ts): no terminal or group
  // signal reaches them, so its exit is their stop. Already closing, it changes nothing (it is not a second signal).
  if (typeof process.send === 'function') {
    const parentGone = () => {
      if (closing) return;
      log.warn('the supervisor that started this process exited (its IPC channel closed): shutting down');
      handler('SIGTERM');
    };
    if (process.connected) process.once('disconnect', parentGone);
    else parentGone();
  }
}
