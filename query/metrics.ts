// The query API's Prometheus metrics: request latency by route and status, cache outcomes, InfluxDB query
// latency, and requests and refusals per read-key name (never the key). Created once per service on its own registry.
import type { Counter, Histogram, Registry } from 'prom-client';
import { prom } from '../shared/metrics.js';

export type CacheKind = 'stats' | 'total';
/** hit / miss, or error when Redis failed and the answer was computed without the cache. */
export type CacheResult = 'hit' | 'miss' | 'error';
export type InfluxQueryKind = 'stats' | 'total';

export interface QueryMetrics {
  httpDuration: Histogram<'route' | 'method' | 'status'>;
  cacheRequests: Counter<'kind' | 'result'>;
  cacheErrors: Counter<'op'>;
  influxDuration: Histogram<'query' | 'outcome'>;
  /** Requests to a protected route by key name (query/auth.ts: a configured name, or a placeholder in parentheses). */
  keyRequests: Counter<'key'>;
  keyRefusals: Counter<'key' | 'reason'>;
}

export function createQueryMetrics(registry: Registry): QueryMetrics {
  return {
    httpDuration: new prom.Histogram({
      name: 'sluice_query_http_request_duration_seconds',
      help: 'Query API request latency by route template, method and HTTP status.',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    cacheRequests: new prom.Counter({
      name: 'sluice_query_cache_requests_total',
      help: 'Query cache lookups by kind (stats, total) and result (hit, miss, error = Redis unavailable, served uncached).',
      labelNames: ['kind', 'result'],
      registers: [registry],
    }),
    cacheErrors: new prom.Counter({
      name: 'sluice_query_cache_errors_total',
      help: 'Failed query cache operations (get, set); the query is still answered from InfluxDB.',
      labelNames: ['op'],
      registers: [registry],
    }),
    influxDuration: new prom.Histogram({
      name: 'sluice_query_influx_duration_seconds',
      help: 'InfluxDB query latency by query kind and outcome (ok, error).',
      labelNames: ['query', 'outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    keyRequests: new prom.Counter({
      name: 'sluice_query_key_requests_total',
      help: 'Requests to protected query API routes while SLUICE_QUERY_API_KEYS is set, by key name ((none) = no key, (unrecognised) = a wrong key, (operator) = an operator key on /v1/ops/summary); refused ones included.',
      labelNames: ['key'],
      registers: [registry],
    }),
    keyRefusals: new prom.Counter({
      name: 'sluice_query_key_refusals_total',
      help: 'Requests refused by key name and reason: missing_key (401), unknown_key, outside_scope (an entity outside the key scope), route_not_scoped (a route that cannot apply a key scope), cross_site_sign_in (a sign-in form posted from another site) (403).',
      labelNames: ['key', 'reason'],
      registers: [registry],
    }),
  };
}
