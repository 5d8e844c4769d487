// Services a test file runs inside the test process (startWorker, startIngest, …): the list they go on is closed
// after every test, and the logger of the worker tests (quiet unless SLUICE_LOG_LEVEL says otherwise).
import { afterEach } from 'vitest';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';

export const workerTestLog = createLogger('worker-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');

/** A list of running services, every one closed (all at once) after each test of the file. */
export function closedAfterEach(): Service[] {
  const running: Service[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((s) => s.close()));
  });
  return running;
}
