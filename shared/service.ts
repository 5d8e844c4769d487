// The lifecycle every Sluice process shares: a started service exposes its URL and a close() that
// finishes in-flight work; SIGTERM/SIGINT trigger close() once, a second signal exits at once.
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
}
