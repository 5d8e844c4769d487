import { describe, expect, it } from 'vitest';
import { PermanentError, TransientError } from '../../shared/errors.js';
import { MAX_RELEASE_DELAY_S, failedOutcome, failureKind, releaseDelaySeconds } from '../../workers/outcome.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';

describe('batch outcome', () => {
  it('rejects permanent failures and retries transient ones', () => {
    expect(failureKind(new PermanentError('bad', 'checksum_mismatch'))).toBe('rejected');
    expect(failureKind(new TransientError('down', 'influx_unavailable'))).toBe('retry');
    expect(failureKind(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' }))).toBe('retry');
    expect(failureKind({ name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } })).toBe('retry');
    expect(failureKind({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } })).toBe('rejected');
  });

  it('dead-letters an unknown manifest version with its code', () => {
    let err: unknown;
    try {
      decodeManifest(JSON.stringify({ manifestVersion: '9.0' }));
    } catch (e) {
      err = e;
    }
    const o = failedOutcome(err, 1, 1000);
    expect(o.kind).toBe('rejected');
    expect(o.error.code).toBe('manifest_version_unsupported');
  });

  it('releases transient failures with a delay that grows with receives and is capped', () => {
    const o = failedOutcome(new TransientError('down', 'topk_unavailable'), 3, 10_000);
    expect(o.kind).toBe('retry');
    // receive 3: base·2² = 40 s, equal jitter → 20–40 s
    expect(releaseDelaySeconds(3, 10_000, 0)).toBe(20);
    expect(releaseDelaySeconds(3, 10_000, 1)).toBe(40);
    expect(releaseDelaySeconds(1, 10_000, 0.5)).toBe(8);
    expect(releaseDelaySeconds(40, 10_000, 1)).toBe(MAX_RELEASE_DELAY_S);
    expect(releaseDelaySeconds(0, 0, 1)).toBe(0);
  });
});
