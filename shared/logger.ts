// Structured JSON logs (pino), one line per event, with the service name on every line.
import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/** `level` comes from the configuration (SLUICE_LOG_LEVEL). */
export function createLogger(service: string, level: Config['SLUICE_LOG_LEVEL'] | (string & {}) = 'info'): Logger {
  return pino({ level, base: { service, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
