// Starts the real services once per test run (InfluxDB, Redis, fauxqs) on test ports, installing the Debian packages
// (and Chromium, for the dashboard test) when missing; tests never touch a developer's stack; stops only what it started.
import path from 'node:path';
import { ensureDebianPackages, ensureLocalServices, type RunningService } from '../../localstack/services.js';
import { createLogger } from '../../shared/logger.js';
import { PROJECT_ROOT } from '../../shared/config.js';
import { TEST_ENDPOINTS } from './endpoints.js';

let services: RunningService[] = [];

export async function setup(): Promise<void> {
  const log = createLogger('test-services', process.env.SLUICE_LOG_LEVEL ?? 'warn');
  // The dashboard test drives Debian's Chromium; like InfluxDB and Redis it is installed when missing.
  ensureDebianPackages(log, { chromium: true });
  services = await ensureLocalServices(TEST_ENDPOINTS, path.join(PROJECT_ROOT, '.data', 'test-services'), log);
}

export async function teardown(): Promise<void> {
  await Promise.all(services.map((s) => s.stop()));
}
