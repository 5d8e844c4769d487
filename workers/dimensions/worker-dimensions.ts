// The dimension enrichment of one worker process: with SLUICE_DIMENSIONS set, the embedded store of the current
// table version (SLUICE_DATA_DIR/worker-dimensions, polled every SLUICE_DIMENSIONS_POLL) and the batch stage that
// writes the attribute series; with it empty, nothing (no store, no join, no query).
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { InfluxDB } from 'influx';
import { InfluxLineWriter } from '../../shared/clients/influx.js';
import type { Config } from '../../shared/config.js';
import { DimensionStore } from '../../shared/dimension-store.js';
import type { Logger } from '../../shared/logger.js';
import { InfluxSink } from '../influx-sink.js';
import { BatchEnrichment } from './batch-enrichment.js';

export interface WorkerDimensions {
  enrichment: BatchEnrichment;
  store: DimensionStore;
  close(): Promise<void>;
}

/** Starts the store (after openEngine) and returns the enrichment stage, or undefined when SLUICE_DIMENSIONS is empty. */
export async function startWorkerDimensions(
  cfg: Config,
  clients: { s3: S3Client; influx: InfluxDB },
  log: Logger,
  observeLatency?: (seconds: number) => void,
): Promise<WorkerDimensions | undefined> {
  if (cfg.SLUICE_DIMENSIONS.length === 0) return undefined;
  const store = new DimensionStore({
    s3: clients.s3,
    bucket: cfg.SLUICE_RAW_BUCKET,
    table: cfg.SLUICE_DIMENSIONS_TABLE,
    dir: path.join(cfg.SLUICE_DATA_DIR, 'worker-dimensions'),
    pollMs: cfg.SLUICE_DIMENSIONS_POLL,
    log,
  });
  try {
    await store.start();
  } catch (err) {
    await store.close();
    throw err;
  }
  const sink = new InfluxSink({ writer: new InfluxLineWriter({ url: cfg.SLUICE_INFLUX_URL, database: cfg.SLUICE_INFLUX_DB, observeLatency }) });
  const enrichment = new BatchEnrichment({
    store,
    attributes: cfg.SLUICE_DIMENSIONS,
    sink,
    influx: clients.influx,
    database: cfg.SLUICE_INFLUX_DB,
    pointsPerRequest: cfg.SLUICE_INFLUX_BATCH_POINTS,
    log,
  });
  log.info({ attributes: cfg.SLUICE_DIMENSIONS, table: cfg.SLUICE_DIMENSIONS_TABLE, version: store.version }, 'dimension enrichment on');
  return { enrichment, store, close: () => store.close() };
}
