import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, configMarkdown, SETTINGS, PROJECT_ROOT } from '../../shared/config.js';
import { parseDuration, parseSize } from '../../shared/config-fields.js';

describe('config', () => {
  it('has a default for every setting that passes its own validation', () => {
    const cfg = loadConfig({});
    expect(cfg.SLUICE_INGEST_PORT).toBe(8080);
    expect(cfg.SLUICE_QUERY_PORT).toBe(8081);
    expect(cfg.SLUICE_FLUSH_MAX_BYTES).toBe(128 * 1024 * 1024);
    expect(cfg.SLUICE_DEDUP_WINDOW).toBe(600_000);
  });
  it('parses durations and sizes', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('soon')).toBeUndefined();
    expect(parseSize('64MiB')).toBe(67_108_864);
    expect(parseSize('1GB')).toBe(1e9);
    expect(parseSize('lots')).toBeUndefined();
  });
  it('names every wrong variable and what it accepts', () => {
    expect(() => loadConfig({ SLUICE_FLUSH_MAX_BYTES: 'lots', SLUICE_INGEST_PORT: '70000', SLUICE_LOG_LEVEL: 'loud' })).toThrow(
      /SLUICE_LOG_LEVEL must be trace \| debug.*got "loud"[\s\S]*SLUICE_INGEST_PORT must be an integer from 0 to 65535, got "70000"[\s\S]*SLUICE_FLUSH_MAX_BYTES must be a size like 512KiB, 64MiB or 1GB, got "lots"/,
    );
  });
  it('parses API keys into key → producer', () => {
    expect(loadConfig({ SLUICE_API_KEYS: 'web:k1, app:k2' }).SLUICE_API_KEYS.get('k2')).toBe('app');
    expect(() => loadConfig({ SLUICE_API_KEYS: 'nokey' })).toThrow(/SLUICE_API_KEYS must be comma-separated producer:key pairs/);
  });
  it('refuses one producer key listed under two producer names, naming the entries and never the key', () => {
    const load = () => loadConfig({ SLUICE_API_KEYS: 'web:k3y-shared,app:k3y-other,mobile:k3y-shared' });
    expect(load).toThrow(/SLUICE_API_KEYS must be comma-separated producer:key pairs.*each key listed once/);
    expect(load).toThrow(/: entry 3 of 3 repeats the key of entry 1: each key belongs to one name/);
    expect(load).not.toThrow(/k3y-shared/);
    // Two keys of one producer (a rotation) stay allowed.
    expect([...loadConfig({ SLUICE_API_KEYS: 'web:old-key,web:new-key' }).SLUICE_API_KEYS.values()]).toEqual(['web', 'web']);
  });
  it('takes a Redis Cluster seed list only with SLUICE_REDIS_CLUSTER, naming a bad entry without its password', () => {
    const seeds = 'redis://127.0.0.1:7000, redis://127.0.0.1:7001';
    const cluster = loadConfig({ SLUICE_REDIS_URL: seeds, SLUICE_REDIS_CLUSTER: 'true' });
    expect([cluster.SLUICE_REDIS_URL, cluster.SLUICE_REDIS_CLUSTER]).toEqual(['redis://127.0.0.1:7000,redis://127.0.0.1:7001', true]);
    expect(loadConfig({}).SLUICE_REDIS_CLUSTER).toBe(false);
    expect(() => loadConfig({ SLUICE_REDIS_URL: seeds })).toThrow(
      'SLUICE_REDIS_URL holds 2 comma-separated URLs, a list of seed nodes that only a Redis Cluster takes: set SLUICE_REDIS_CLUSTER=true, or give one URL',
    );
    const bad = (url: string) => () => loadConfig({ SLUICE_REDIS_URL: url, SLUICE_REDIS_CLUSTER: 'true' });
    expect(bad('redis://127.0.0.1:7000,127.0.0.1:7001')).toThrow(
      /SLUICE_REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL.*: entry 2 "127.0.0.1:7001" is not a URL$/,
    );
    expect(bad('redis://127.0.0.1:7000,,redis://127.0.0.1:7002')).toThrow(/: entry 2 is empty$/);
    expect(bad('redis://:pw1@127.0.0.1:7000,http://u:pw2@127.0.0.1:7001')).toThrow(
      /got "redis:\/\/\*\*\*@127.0.0.1:7000,http:\/\/\*\*\*@127.0.0.1:7001": entry 2 "http:\/\/\*\*\*@127.0.0.1:7001" is http:\/\/, not redis:\/\/ or rediss:\/\/$/,
    );
    expect(() => loadConfig({ SLUICE_REDIS_URL: 'http://127.0.0.1:6379' })).toThrow(/: it is http:\/\/, not redis:\/\/ or rediss:\/\/$/);
    expect(() => loadConfig({ SLUICE_REDIS_CLUSTER: 'maybe' })).toThrow('SLUICE_REDIS_CLUSTER must be true or false, got "maybe"');
  });
  it('documents every setting in the generated table, and the README carries that table', () => {
    const md = configMarkdown();
    for (const name of Object.keys(SETTINGS)) expect(md).toContain(`\`${name}\``);
    // Regenerate with: npx sluice config --markdown
    expect(readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8')).toContain(md);
  });
});
