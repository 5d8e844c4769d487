// Structured JSON logs (pino), one line per event, with the service name on every line.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(service: string, level = process.env.SLUICE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
