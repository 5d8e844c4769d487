// The clients of one worker process: SQS, S3, Redis and InfluxDB (queries and pings through `influx`; the batch's
// line-protocol writes through shared/clients/influx.ts InfluxLineWriter, made by the caller). A lost Redis connection
// is logged once, not on every reconnect attempt. close() ends them in order, each guarded.
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { InfluxDB } from 'influx';
import { createS3, createSqs } from '../shared/clients/aws.js';
import { createInflux } from '../shared/clients/influx.js';
import { createRedis, type RedisClient } from '../shared/clients/redis.js';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';

export interface WorkerClients {
  sqs: SQSClient;
  s3: S3Client;
  redis: RedisClient;
  influx: InfluxDB;
  close(): Promise<void>;
}

export function createWorkerClients(cfg: Config, log: Logger): WorkerClients {
  const sqs = createSqs(cfg);
  const s3 = createS3(cfg);
  const redis = createRedis(cfg);
  let redisDown = false;
  redis.on('error', (err: Error) => {
    if (!redisDown) log.warn({ err: err.message }, 'Redis connection lost');
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) log.info('Redis connection restored');
    redisDown = false;
  });
  const influx = createInflux(cfg);
  return {
    sqs,
    s3,
    redis,
    influx,
    async close() {
      await redis.quit().catch(() => redis.disconnect());
      sqs.destroy();
      s3.destroy();
    },
  };
}
