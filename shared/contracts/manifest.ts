// The batch manifest: the SQS message body that announces one Parquet batch from ingest to workers.
// Versioned "major.minor": workers accept any minor of a major they know and reject other majors
// with a permanent error before touching anything else.
import { z } from 'zod';
import { PermanentError } from '../errors.js';
import { READABLE_SCHEMA_VERSIONS } from './parquet-schema.js';

export const MANIFEST_VERSION = '1.0';
export const SUPPORTED_MANIFEST_MAJORS: readonly number[] = [1];

const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 time');

export const manifestSchemaV1 = z.object({
  manifestVersion: z.string().regex(/^\d+\.\d+$/),
  bucket: z.string().min(3),
  key: z.string().min(1),
  eventCount: z.number().int().positive(),
  minEventTime: isoTime,
  maxEventTime: isoTime,
  byteSize: z.number().int().positive(),
  checksum: z.object({ algorithm: z.literal('sha256'), value: z.string().regex(/^[0-9a-f]{64}$/) }),
  schemaVersion: z.number().int().positive(),
  producer: z.string().min(1),
  createdAt: isoTime,
});

export type BatchManifest = z.infer<typeof manifestSchemaV1>;

export function encodeManifest(m: Omit<BatchManifest, 'manifestVersion'>): string {
  return JSON.stringify({ manifestVersion: MANIFEST_VERSION, ...m });
}

/** Decodes an SQS body. Throws PermanentError (code manifest_invalid | manifest_version_unsupported). */
export function decodeManifest(body: string | undefined): BatchManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(body ?? '');
  } catch (err) {
    throw new PermanentError(`manifest is not JSON: ${(err as Error).message}`, 'manifest_invalid');
  }
  const version = (raw as { manifestVersion?: unknown } | null)?.manifestVersion;
  const major = typeof version === 'string' ? Number(version.split('.')[0]) : NaN;
  if (!SUPPORTED_MANIFEST_MAJORS.includes(major)) {
    throw new PermanentError(
      `manifest version ${JSON.stringify(version)} is not supported (this worker reads majors ${SUPPORTED_MANIFEST_MAJORS.join(', ')})`,
      'manifest_version_unsupported',
    );
  }
  const parsed = manifestSchemaV1.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new PermanentError(`manifest is invalid: ${issues}`, 'manifest_invalid');
  }
  if (!READABLE_SCHEMA_VERSIONS.includes(parsed.data.schemaVersion)) {
    throw new PermanentError(
      `Parquet schema version ${parsed.data.schemaVersion} of s3://${parsed.data.bucket}/${parsed.data.key} is not supported (readable: ${READABLE_SCHEMA_VERSIONS.join(', ')})`,
      'schema_version_unsupported',
    );
  }
  return parsed.data;
}
