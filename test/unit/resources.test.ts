// localstack/resources.json is a copy of the resource defaults for tools outside Node; the config schema defines them.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, PROJECT_ROOT, RESOURCES, resourcesOf } from '../../shared/config.js';

describe('resources', () => {
  it('localstack/resources.json equals the defaults of the config schema', () => {
    const { $comment: _, ...file } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'localstack', 'resources.json'), 'utf8')) as Record<string, unknown>;
    expect(file).toEqual(RESOURCES);
  });
  it('follows the settings', () => {
    const r = resourcesOf(
      loadConfig({ SLUICE_QUEUE_NAME: 'q', SLUICE_QUEUE_RETENTION: '4d', SLUICE_MAX_RECEIVE_COUNT: '7', SLUICE_VISIBILITY_TIMEOUT: '90s' }),
    );
    expect(r.queues.batches).toEqual({ name: 'q', visibilityTimeoutSeconds: 90, messageRetentionSeconds: 345_600, maxReceiveCount: 7 });
  });
});
