// Trust defaults on real services: a service reachable from other machines refuses to start unauthenticated
// unless SLUICE_ALLOW_ANONYMOUS=true, API keys map to producers by a constant-time comparison, and secrets never
// appear in a configuration error or in `sluice config`.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { startIngest } from '../../ingest/main.js';
import { ApiKeys } from '../../ingest/api-keys.js';
import { startQuery } from '../../query/main.js';
import { isLoopback } from '../../shared/bind-policy.js';
import { loadConfig, PROJECT_ROOT } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import { createLogger } from '../../shared/logger.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', 'silent');

describe('bind policy', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'example.com', '::ffff:10.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('refuses an ingest node on 0.0.0.0 without API keys, and starts it with keys or SLUICE_ALLOW_ANONYMOUS=true', async () => {
    const open = await testConfig({ SLUICE_INGEST_HOST: '0.0.0.0' });
    const err = await startIngest(open, log).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(
      /ingest would listen on SLUICE_INGEST_HOST=0\.0\.0\.0, reachable from other machines, without authentication; set SLUICE_API_KEYS .* or set SLUICE_ALLOW_ANONYMOUS=true/,
    );
    for (const overrides of [{ SLUICE_API_KEYS: 'web:k' }, { SLUICE_ALLOW_ANONYMOUS: 'true' }] as Record<string, string>[]) {
      const ingest = await startIngest(await testConfig({ SLUICE_INGEST_HOST: '0.0.0.0', ...overrides }), log);
      expect((await fetch(`${ingest.url.replace('0.0.0.0', '127.0.0.1')}/healthz`)).status).toBe(200);
      await ingest.close();
    }
  });

  it('refuses the query API on 0.0.0.0 without SLUICE_QUERY_API_KEYS unless SLUICE_ALLOW_ANONYMOUS=true', async () => {
    const err = await startQuery(await testConfig({ SLUICE_QUERY_HOST: '0.0.0.0' }), log).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(
      /query would listen on SLUICE_QUERY_HOST=0\.0\.0\.0.*without authentication; set SLUICE_QUERY_API_KEYS .* or set SLUICE_ALLOW_ANONYMOUS=true/,
    );
    const query = await startQuery(await testConfig({ SLUICE_QUERY_HOST: '0.0.0.0', SLUICE_ALLOW_ANONYMOUS: 'true' }), log);
    expect((await fetch(`${query.url}/healthz`)).status).toBe(200);
    await query.close();
  });
});

describe('API keys', () => {
  it('maps each key to its producer and nothing else to anyone', () => {
    const keys = new ApiKeys(loadConfig({ SLUICE_API_KEYS: 'web:key-web, app:key-app-longer' }).SLUICE_API_KEYS);
    expect(keys.producerOf('key-web')).toBe('web');
    expect(keys.producerOf('key-app-longer')).toBe('app');
    for (const k of ['', 'key-we', 'key-web ', 'key-web-x', 'KEY-WEB', 'key-app']) expect(keys.producerOf(k), k).toBeUndefined();
    expect(new ApiKeys(new Map()).empty).toBe(true);
  });
});

describe('secrets in configuration', () => {
  it('never echoes a secret or a URL password in a configuration error', () => {
    let message = '';
    try {
      loadConfig({
        SLUICE_API_KEYS: 'web:s3cr3t-web,nocolon-s3cr3t',
        SLUICE_REDIS_URL: 'redis://:hunter2@cache:notaport',
        SLUICE_INFLUX_URL: 'http://admin:pa55@influx:8086:x',
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/SLUICE_API_KEYS must be comma-separated producer:key pairs.*got a value of 29 characters \(not shown: it holds secrets\)/);
    expect(message).toMatch(/SLUICE_REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL .*, got "redis:\/\/\*\*\*@cache:notaport": it is not a URL/);
    expect(message).toContain('SLUICE_INFLUX_URL must be a URL such as http://127.0.0.1:8086, got "http://***@influx:8086:x"');
    for (const secret of ['s3cr3t', 'hunter2', 'pa55', 'admin']) expect(message).not.toContain(secret);
  });

  it('masks secrets and URL passwords in `sluice config`', async () => {
    const env = {
      ...process.env,
      SLUICE_API_KEYS: 'web:s3cr3t-web,app:s3cr3t-app',
      SLUICE_OPERATOR_KEYS: 'op-s3cr3t',
      SLUICE_REDIS_URL: 'redis://user:hunter2@127.0.0.1:6379',
    };
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'cli', 'sluice.ts'), 'config'], {
      env,
      cwd: PROJECT_ROOT,
    });
    const shown = JSON.parse(stdout) as Record<string, unknown>;
    expect(shown.SLUICE_API_KEYS).toBe('2 key(s), not shown');
    expect(shown.SLUICE_OPERATOR_KEYS).toBe('1 key(s), not shown');
    expect(shown.SLUICE_REDIS_URL).toBe('redis://***@127.0.0.1:6379');
    expect(stdout).not.toMatch(/s3cr3t|hunter2/);
  });
});
