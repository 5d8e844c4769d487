// S3 and SQS clients built from config: one place that knows endpoints, region and path style,
// so fauxqs, LocalStack, MinIO and AWS differ only by environment variables.
import { S3Client } from '@aws-sdk/client-s3';
import { GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Config } from '../config.js';
import { classify } from '../errors.js';

// Sluice supports Node 20 (see README); the SDK's notice about its future Node 22 requirement is printed once in
// the README instead of by every process. Set the variable to "false" to see it again.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

function common(cfg: Pick<Config, 'AWS_ENDPOINT_URL' | 'AWS_REGION'>) {
  const endpoint = cfg.AWS_ENDPOINT_URL || undefined;
  // Local emulators accept any credentials; real AWS uses the SDK's default provider chain.
  const credentials = endpoint && !process.env.AWS_ACCESS_KEY_ID ? { accessKeyId: 'test', secretAccessKey: 'test' } : undefined;
  return { region: cfg.AWS_REGION, endpoint, credentials, maxAttempts: 3 };
}

export function createS3(cfg: Pick<Config, 'AWS_ENDPOINT_URL' | 'AWS_REGION' | 'SLUICE_S3_FORCE_PATH_STYLE'>): S3Client {
  return new S3Client({ ...common(cfg), forcePathStyle: cfg.SLUICE_S3_FORCE_PATH_STYLE });
}

export function createSqs(cfg: Pick<Config, 'AWS_ENDPOINT_URL' | 'AWS_REGION'>): SQSClient {
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
