// `sluice reconcile` and `sluice replay`: print what they will touch, build the clients, run the job of
// workers/reconcile/ with a progress line every 1,000 listed objects, and return the summary to print.
import path from 'node:path';
import type { Config } from '../shared/config.js';
import { createS3, createSqs } from '../shared/clients/aws.js';
import { createRedis } from '../shared/clients/redis.js';
import { BatchLedger } from '../workers/reconcile/ledger.js';
import { formatReconcile, formatReplay, reconcile, replay, type ReconcileDeps } from '../workers/reconcile/reconcile.js';

export interface RangeArgs {
  fromMs: number;
  toMs: number;
  progress: (message: string) => void;
}

async function withDeps<T>(cfg: Config, fn: (deps: ReconcileDeps) => Promise<T>): Promise<T> {
  const redis = createRedis(cfg);
  const deps: ReconcileDeps = {
    s3: createS3(cfg),
    sqs: createSqs(cfg),
    ledger: new BatchLedger(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_LEDGER_RETENTION),
    rawBucket: cfg.SLUICE_RAW_BUCKET,
    queueName: cfg.SLUICE_QUEUE_NAME,
  };
  try {
    return await fn(deps);
  } finally {
    deps.s3.destroy();
    deps.sqs.destroy();
    redis.disconnect();
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Runs a reconcile; resolves with its printed summary and how many batches it announced. */
export async function reconcileCommand(cfg: Config, a: RangeArgs & { graceMs: number }): Promise<{ text: string; announced: number }> {
  a.progress(
    `reconcile: listing s3://${cfg.SLUICE_RAW_BUCKET}/events/ for event times ${iso(a.fromMs)} → ${iso(a.toMs)}; batches not in the ledger ` +
      `(Redis ${cfg.SLUICE_REDIS_PREFIX}ledger:{…}) and written before ${iso(Date.now() - a.graceMs)} are announced again to SQS queue ${cfg.SLUICE_QUEUE_NAME}`,
  );
  const s = await withDeps(cfg, (deps) => reconcile(deps, { ...a, graceMs: a.graceMs }));
  return { text: formatReconcile(s), announced: s.announced };
}

/** Runs a replay; resolves with its printed summary. */
export async function replayCommand(cfg: Config, a: RangeArgs & { entityId?: string }): Promise<{ text: string; announced: number }> {
  a.progress(
    `replay: listing s3://${cfg.SLUICE_RAW_BUCKET}/events/ for event times ${iso(a.fromMs)} → ${iso(a.toMs)}` +
      `${a.entityId === undefined ? '' : ` and reading each batch for entity ${JSON.stringify(a.entityId)}`}; every batch found is announced again to SQS queue ${cfg.SLUICE_QUEUE_NAME} ` +
      '(workers recount it; counts do not change unless the code that computes them did)',
  );
  const s = await withDeps(cfg, (deps) => replay(deps, { ...a, tempDir: path.join(cfg.SLUICE_DATA_DIR, 'replay-tmp') }));
  return { text: formatReplay(s), announced: s.announced };
}
