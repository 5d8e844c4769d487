// Test-only entry: a real worker process that SIGKILLs itself at a chosen point of its first batch, so crash
// recovery is proved against a process that really dies (no clean-up, no finally blocks, no SQS release).
// SLUICE_TEST_CRASH_AT is a step of BATCH_STEPS (workers/batch-processor.ts), or "influx_chunk:<n>" to die
// right after InfluxDB acknowledged the n-th write request of a batch (a batch split into many chunks).
import { loadConfig } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { BATCH_STEPS, type BatchStep } from '../../workers/batch-processor.js';
import { startWorker } from '../../workers/main.js';

const crashAt = process.env.SLUICE_TEST_CRASH_AT ?? '';
const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL delivered');
};

const chunk = /^influx_chunk:(\d+)$/.exec(crashAt);
if (chunk) {
  // Wraps the transport of the InfluxDB sink: let n write requests succeed, then die before the next one is sent.
  const after = Number(chunk[1]);
  const realFetch = globalThis.fetch;
  let written = 0;
  globalThis.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (!/\/write\?/.test(url)) return realFetch(input, init);
    if (written >= after) die();
    const res = await realFetch(input, init);
    if (res.status === 204) written++;
    return res;
  };
} else if (!(BATCH_STEPS as readonly string[]).includes(crashAt)) {
  throw new Error(`SLUICE_TEST_CRASH_AT must be one of ${BATCH_STEPS.join(', ')} or influx_chunk:<n>, got "${crashAt}"`);
}

const cfg = loadConfig();
const log = createLogger('crashing-worker', cfg.SLUICE_LOG_LEVEL);
const service = await startWorker(cfg, log, {
  onStep: (step: BatchStep) => {
    if (step === crashAt) die();
  },
});
process.send?.({ ready: true, url: service.url });
