// S3 and SQS clients built from config: one place that knows endpoints, region and path style,
// so fauxqs, LocalStack, MinIO and AWS differ only by environment variables.
import { S3Client } from '@aws-sdk/client-s3';
import { GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Config } from '../config.js';
import { classify } from '../errors.js';

// Sluice supports Node 20 (see README); the SDK's notice about its future Node 22 requirement is printed once in
// the README instead of by every process. This sets the SDK's own switch (not a Sluice setting, so not read
// through shared/config.ts); set the variable to "false" to see the notice again.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export type AwsConfig = Pick<Config, 'AWS_ENDPOINT_URL' | 'AWS_REGION' | 'AWS_ACCESS_KEY_ID' | 'AWS_SECRET_ACCESS_KEY' | 'AWS_SESSION_TOKEN'>;

/**
 * Credentials from the configuration: explicit keys when AWS_ACCESS_KEY_ID is set; else test keys for a local
 * endpoint (emulators accept any); else undefined, so real AWS uses the SDK's default provider chain.
 */
export function awsCredentials(cfg: AwsConfig, endpoint: string): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined {
  if (cfg.AWS_ACCESS_KEY_ID)
    return {
      accessKeyId: cfg.AWS_ACCESS_KEY_ID,
      secretAccessKey: cfg.AWS_SECRET_ACCESS_KEY,
      ...(cfg.AWS_SESSION_TOKEN ? { sessionToken: cfg.AWS_SESSION_TOKEN } : {}),
    };
  return endpoint ? { accessKeyId: 'test', secretAccessKey: 'test' } : undefined;
}

/**
 * Socket timeouts of every S3 and SQS request (the SDK's defaults wait forever): a connection not made within 5 s,
 * or one silent for 60 s (longer than SQS' 20 s long poll; a large upload or download keeps its socket busy, so
 * this is idle time, not a bound on a transfer), fails, and the SDK retries it like any other transient error.
 */
export const AWS_SOCKET_TIMEOUTS = { connectionTimeout: 5_000, requestTimeout: 60_000 } as const;

function common(cfg: AwsConfig) {
  const endpoint = cfg.AWS_ENDPOINT_URL || undefined;
  return {
    region: cfg.AWS_REGION,
    endpoint,
    credentials: awsCredentials(cfg, cfg.AWS_ENDPOINT_URL),
    maxAttempts: 3,
    requestHandler: AWS_SOCKET_TIMEOUTS,
  };
}

export function createS3(cfg: AwsConfig & Pick<Config, 'SLUICE_S3_FORCE_PATH_STYLE'>): S3Client {
  return new S3Client({ ...common(cfg), forcePathStyle: cfg.SLUICE_S3_FORCE_PATH_STYLE });
}

export function createSqs(cfg: AwsConfig): SQSClient {
  return new SQSClient(common(cfg));
}

const urlCache = new Map<string, Promise<string>>();
/** Resolves a queue name to its URL (cached; failures are not cached). */
export function queueUrl(sqs: SQSClient, name: string): Promise<string> {
  let p = urlCache.get(name);
  if (!p) {
    p = sqs.send(new GetQueueUrlCommand({ QueueName: name })).then(
      (r) => r.QueueUrl ?? Promise.reject(new Error(`queue ${name} has no URL`)),
      (err) => {
        urlCache.delete(name);
        throw classify(err, `SQS queue ${name}`);
      },
    );
    urlCache.set(name, p);
  }
  return p;
}
