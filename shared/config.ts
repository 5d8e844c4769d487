// Every Sluice setting, read once from the environment and validated at start-up.
// A wrong value stops the process with a message naming the variable and what it accepts;
// the README's configuration table is generated from this list (`sluice config --markdown`).
import os from 'node:os';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';
import {
  type Field,
  type ValueOf,
  apiKeys,
  bool,
  duration,
  durationBetween,
  field,
  int,
  keyList,
  maskUrl,
  nodeId,
  oneOf,
  optStr,
  port,
  queryApiKeys,
  retention,
  secret,
  shownRaw,
  size,
  str,
  redisUrls,
  splitRedisUrls,
  url,
} from './config-fields.js';
import { keyScopes, unknownScopedNames, type KeyScopes } from './key-scopes.js';
import { ATTRIBUTE_NAME_ACCEPTS, ATTRIBUTE_NAME_PATTERN, MAX_ATTRIBUTES, TABLE_NAME_ACCEPTS, TABLE_NAME_PATTERN } from './contracts/dimensions.js';

/** "channel,category" → the attribute names, each listed once (empty = none). */
const attributeList = field(`comma-separated attribute names (at most ${MAX_ATTRIBUTES}, each ${ATTRIBUTE_NAME_ACCEPTS}, listed once; empty = none)`, (r) => {
  const names = r
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  return names.length <= MAX_ATTRIBUTES && new Set(names).size === names.length && names.every((n) => ATTRIBUTE_NAME_PATTERN.test(n)) ? names : undefined;
});

function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}
/** The repository root (works from sources and from dist/). */
export const PROJECT_ROOT = findRoot();

// ---- the settings --------------------------------------------------------------------------

export const SETTINGS = {
  SLUICE_DATA_DIR: str('.data', 'Folder for all local state: WAL segments, InfluxDB and Redis data of the local stack, temporary Parquet files.'),
  SLUICE_LOG_LEVEL: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const)('info', 'Minimum level of the structured (JSON) log lines.'),
  SLUICE_NODE_ID: nodeId(
    os.hostname().replace(/[^A-Za-z0-9_-]/g, '-') || 'node',
    'Name of this ingest node and of its WAL folder (SLUICE_DATA_DIR/ingest/<id>/wal, locked while the node runs); part of every batch key. A folder left by a node that does not come back is adopted by another node on the same data directory (SLUICE_WAL_ADOPT_INTERVAL).',
  ),
  AWS_ENDPOINT_URL: optStr(
    'http://127.0.0.1:4566',
    'S3 and SQS endpoint (the local emulator — s3rver and fauxqs behind one port — or LocalStack). Empty = the real AWS endpoints of AWS_REGION.',
  ),
  AWS_REGION: str('us-east-1', 'AWS region of the bucket and queues.'),
  SLUICE_S3_FORCE_PATH_STYLE: bool('true', 'Use path-style S3 URLs (needed by the local emulator, LocalStack and MinIO).'),
  SLUICE_RAW_BUCKET: str('sluice-raw', 'Bucket of the raw Parquet archive (events/dt=…/hour=…/).'),
  SLUICE_COLD_BUCKET: str('sluice-cold', 'Bucket of the cold tier (rollups and compacted day files).'),
  SLUICE_QUEUE_NAME: str('sluice-batches', 'SQS queue that carries batch manifests from ingest to workers.'),
  SLUICE_DLQ_NAME: str('sluice-batches-dlq', 'Dead-letter queue for batches that can never be processed.'),
  SLUICE_QUEUE_RETENTION: durationBetween(60_000, 1_209_600_000)(
    '14d',
    'How long SQS keeps a batch manifest no worker has deleted (MessageRetentionPeriod of SLUICE_QUEUE_NAME, set by `sluice setup`).',
  ),
  SLUICE_DLQ_RETENTION: durationBetween(60_000, 1_209_600_000)(
    '14d',
    'How long the dead-letter queue keeps a batch for `sluice dlq` to inspect or re-drive (set by `sluice setup`).',
  ),
  SLUICE_MAX_RECEIVE_COUNT: int(1, 1000)(
    '50',
    'Receives after which SQS moves a batch to the dead-letter queue (redrive maxReceiveCount, set by `sluice setup`): a batch that keeps failing transiently ends there.',
  ),
  AWS_ACCESS_KEY_ID: optStr(
    '',
    'AWS credentials (with AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Empty = the SDK default chain; with a local AWS_ENDPOINT_URL, test credentials.',
  ),
  AWS_SECRET_ACCESS_KEY: secret(optStr('', 'Secret of AWS_ACCESS_KEY_ID.')),
  AWS_SESSION_TOKEN: secret(optStr('', 'Session token of temporary AWS credentials.')),
  SLUICE_INFLUX_URL: url('http://127.0.0.1:8086', 'InfluxDB 1.x HTTP API.'),
  SLUICE_INFLUX_DB: str('sluice', 'InfluxDB database holding the per-minute series.'),
  SLUICE_REDIS_URL: redisUrls(
    'redis://127.0.0.1:6379',
    'Redis used for the event-id reservations (dedup), rate limits, top-K, totals and the query cache; with SLUICE_REDIS_CLUSTER=true the seed nodes of a Redis Cluster (any reachable one is enough, the client discovers the rest).',
  ),
  SLUICE_REDIS_CLUSTER: bool(
    'false',
    'SLUICE_REDIS_URL is a Redis Cluster: commands go to the master that owns their slot (every Sluice script keeps its keys under one hash tag), and `npm start` uses or starts that cluster instead of a single Redis.',
  ),
  SLUICE_REDIS_PREFIX: str('sluice:', 'Prefix of every Redis key Sluice writes (lets several pipelines share one Redis).'),
  SLUICE_REDIS_MAXMEMORY: size(
    '1GiB',
    'maxmemory of the Redis the local stack starts, of each node of a Redis Cluster it starts (policy noeviction: past it writes fail loudly, dedup reservations and per-batch done keys are never evicted; 0 = no limit).',
  ),

  SLUICE_INGEST_HOST: str('127.0.0.1', 'Address the ingest HTTP server listens on (0.0.0.0 to accept remote producers).'),
  SLUICE_INGEST_PORT: port('8080', 'Port of the ingest HTTP server.'),
  SLUICE_INGEST_PROCESSES: int(1, 1024)(
    String(Math.min(1024, os.availableParallelism())),
    'Processes `sluice ingest` runs on its one port (`--processes` overrides it; `sluice start` runs each node so), connections spread round-robin among them; process i has its own node id and WAL folder <SLUICE_NODE_ID>-p<i>, and is restarted under that id when it crashes. 1 = one process under SLUICE_NODE_ID itself. The default counts the CPUs this process may run on, not a container CPU limit: set it to that limit in a container.',
  ),
  SLUICE_INGEST_NODES: int(1, 64)(
    '1',
    '`npm start` only: ingest nodes to run (ingest-1 … ingest-N, each on its own loopback port with its own WAL folder and SLUICE_INGEST_PROCESSES processes) behind a local haproxy on SLUICE_INGEST_HOST:SLUICE_INGEST_PORT that health-checks their /readyz; 1 = one node on that port, no load balancer. `sluice start` alone has no load balancer and refuses more than 1.',
  ),
  SLUICE_MAX_BODY_BYTES: size('16MiB', 'Largest accepted request body after decompression; bigger requests get 413.'),
  SLUICE_MAX_INFLIGHT_BYTES: size(
    '64MiB',
    'Request bodies an ingest node reads and parses at once; beyond it new requests get 503 with Retry-After, so memory stays bounded whatever the load.',
  ),
  SLUICE_MAX_EVENT_AGE: duration('7d', 'Events older than this (by their timestamp) are rejected.'),
  SLUICE_FLUSH_MAX_EVENTS: int(1, 50_000_000)(
    '250000',
    'A batch is flushed to S3 when it holds this many events (smaller batches spread over more worker slots: fresher counts, smaller raw files until compaction)…',
  ),
  SLUICE_FLUSH_MAX_BYTES: size('128MiB', '…or when its WAL segment reaches this size…'),
  SLUICE_FLUSH_MAX_AGE: duration('10s', '…or when its oldest event has waited this long, even if no more traffic arrives.'),
  SLUICE_WAL_FSYNC: bool('true', 'fsync the WAL before acknowledging (turn off only for throwaway benchmarks).'),
  SLUICE_BACKLOG_MAX_BYTES: size('1GiB', 'When sealed-but-undelivered WAL segments exceed this size, ingest answers 503 with Retry-After.'),
  SLUICE_WAL_MAX_BYTES: size(
    '4GiB',
    'Hard cap on the bytes of WAL segments on disk not yet delivered (open, sealed, left by a previous run): an append beyond it is refused and the request answered 503 with Retry-After, so a long S3/SQS outage cannot fill the disk. Appends that fail on the disk itself (ENOSPC, EIO) are answered the same way; nothing is acknowledged that is not fsynced.',
  ),
  SLUICE_WAL_ADOPT_INTERVAL: duration(
    '30s',
    'How often an ingest node looks for WAL folders of other nodes under SLUICE_DATA_DIR/ingest/ whose lock is free (their node died, e.g. restarted under another SLUICE_NODE_ID) and delivers their segments under the original node id; also once at start (0 = only at start).',
  ),
  SLUICE_API_KEYS: secret(
    apiKeys(
      '',
      'Producer API keys (secret: never shown in errors or `sluice config`). When set, POST /v1/events requires Authorization: Bearer <key>; keys are compared in constant time.',
    ),
  ),
  SLUICE_ALLOW_ANONYMOUS: bool(
    'false',
    'Let ingest listen on a non-loopback address without SLUICE_API_KEYS, and the query API without SLUICE_QUERY_API_KEYS. Without it such a start is refused.',
  ),
  SLUICE_MAX_EVENTS_PER_REQUEST: int(1, 1_000_000)(
    '10000',
    'Most events one POST /v1/events may hold; counted while the body is read (before parsing), beyond it the request gets 413 telling the client to split it.',
  ),
  SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER: int(0, 100_000)(
    '16',
    'Requests one producer (API key, or client address when anonymous) may have in progress on one ingest node; beyond it 429 with Retry-After (0 = unlimited).',
  ),
  SLUICE_INGEST_REQUEST_TIMEOUT: duration(
    '30s',
    'A request (headers and body) must arrive completely within this time, or the connection is answered 408 and closed: a slow upload cannot hold a connection or memory (0 = off).',
  ),
  SLUICE_INGEST_IDLE_TIMEOUT: duration(
    '10s',
    'A connection that sends nothing for this long before or during a request is closed (0 = off); between requests SLUICE_INGEST_KEEPALIVE_TIMEOUT applies.',
  ),
  SLUICE_INGEST_KEEPALIVE_TIMEOUT: duration(
    '72s',
    'How long an idle keep-alive connection stays open between requests; keep it above the idle timeout of a load balancer in front of ingest.',
  ),
  SLUICE_RATE_LIMIT_EVENTS: int(0, 1_000_000_000)('0', 'Per-producer sustained rate in events/s, shared across ingest nodes through Redis (0 = unlimited).'),
  SLUICE_RATE_LIMIT_BURST: int(0, 1_000_000_000)('0', 'Per-producer burst size in events (0 = 10 × SLUICE_RATE_LIMIT_EVENTS).'),
  SLUICE_DEDUP_WINDOW: duration(
    '10m',
    'An eventId a producer sends again within this window is answered as a duplicate and never stored twice: ingest reserves each id in Redis before its WAL append (0 = no dedup).',
  ),
  SLUICE_DEDUP_LEASE: durationBetween(1_000, 600_000)(
    '15s',
    'How long a request may hold its event-id reservations before it is durable; a retry of ids held longer (the node died or stalled) takes them over. Retries of ids still in flight get 503 meanwhile.',
  ),
  SLUICE_DEDUP_SHARDS: int(0, 1024)(
    '0',
    'Shards of the event-id reservations, each its own Redis Cluster hash slot (a request costs one reserve and one confirm call per shard it touches); 0 = 16 with SLUICE_REDIS_CLUSTER=true, 1 on a single Redis. Must be equal on every ingest node; changing it forgets the reservations of the current window.',
  ),
  SLUICE_UPLOAD_CONCURRENCY: int(1, 64)(
    '2',
    'Sealed WAL segments delivered in parallel (uploads and manifests; their Parquet conversions run one at a time, within the engine memory limit).',
  ),
  SLUICE_MAX_NEW_SERIES_PER_MIN: int(0, 100_000_000)(
    '10000',
    'New series (entityId × eventType) one producer may create per minute, shared across ingest nodes through Redis; events of further new series are rejected with a reason, known series are always accepted (0 = unlimited).',
  ),

  SLUICE_WORKER_CONCURRENCY: int(1, 256)('4', 'Batches processed in parallel by one worker process.'),
  SLUICE_WORKER_HOST: str('127.0.0.1', "Address a worker's /healthz, /readyz and /metrics listen on (0.0.0.0 in a cluster, for probes and scraping)."),
  SLUICE_WORKER_PORT: port('9100', "Port of a worker's /healthz, /readyz and /metrics (0 = any free port)."),
  SLUICE_VISIBILITY_TIMEOUT: duration('60s', 'How long a received batch stays invisible to other workers; extended by a heartbeat while it is processed.'),
  SLUICE_MAX_TRANSIENT_RETRY: duration('5m', 'How long a worker retries a batch through transient faults before releasing it to the queue for later.'),
  SLUICE_INFLUX_BATCH_POINTS: int(100, 100_000)('10000', 'Points per InfluxDB write request.'),
  SLUICE_TOPK_CAPACITY: int(10, 100_000)('1000', 'Entities kept per top-K bucket; counts are exact while a bucket holds fewer distinct entities.'),
  SLUICE_WORKER_POLL_WAIT: durationBetween(1_000, 20_000)(
    '20s',
    'Long-poll wait of each SQS receive (whole seconds); shorter makes idle workers poll more often, longer makes shutdown wait longer for the last poll.',
  ),
  SLUICE_RELEASE_BACKOFF: duration(
    '10s',
    'Delay before a batch released after transient faults becomes visible again; doubles with each receive, up to 15 minutes.',
  ),
  SLUICE_WORKER_SHUTDOWN_GRACE: duration('10s', 'On SIGTERM, how long in-flight batches may run to completion before they are released to other workers.'),
  SLUICE_DIMENSIONS: attributeList(
    '',
    'Attributes of the dimension table (SLUICE_DIMENSIONS_TABLE) that workers count by: per batch, per-minute aggregates of each as its own InfluxDB series (events_1m_by_<attribute>, tags value and event_type), answered by GET /v1/stats?dimension=… and /v1/topk?dimension=… (empty = no enrichment: no join, no extra query).',
  ),
  SLUICE_DIMENSIONS_TABLE: field(TABLE_NAME_ACCEPTS, (r) => (TABLE_NAME_PATTERN.test(r.trim()) ? r.trim() : undefined))(
    'entities',
    'The dimension table (`sluice dimensions load FILE --name NAME`, stored under dimensions/<name>/ in SLUICE_RAW_BUCKET) whose current version workers and the query API enrich entities with.',
  ),
  SLUICE_DIMENSIONS_POLL: durationBetween(1_000, 86_400_000)(
    '30s',
    "How often workers and the query API read the dimension table's pointer; a new version is downloaded, built into a local database under SLUICE_DATA_DIR and swapped in without a restart (batches already running keep the version they started with).",
  ),

  SLUICE_LEDGER_RETENTION: duration(
    '14d',
    'How long the ledger in Redis remembers that a batch was delivered (one key of ~150 bytes per batch, expiring after this); `sluice reconcile` trusts it, so keep it above SLUICE_RECONCILE_LOOKBACK.',
  ),
  SLUICE_RECONCILE_INTERVAL: duration(
    '5m',
    'How often `sluice start` reconciles the raw archive with the ledger, re-announcing batches no worker delivered; also once at start (0 = never; `sluice reconcile` runs it by hand, e.g. from a CronJob).',
  ),
  SLUICE_RECONCILE_GRACE: duration(
    '5m',
    'Reconcile leaves alone batch objects written less than this long ago (their manifest may still be on its way); the scheduled run also waits while the queue holds any message.',
  ),
  SLUICE_RECONCILE_LOOKBACK: duration(
    '8d',
    'Event-time range (back from now) the scheduled reconcile lists; keep it above SLUICE_MAX_EVENT_AGE so late batches are covered.',
  ),
  SLUICE_ICEBERG_COMMIT_INTERVAL: duration(
    '5m',
    'How often `sluice start` commits new archive batches to the Iceberg table sluice.events (batches delivered or older than SLUICE_RECONCILE_GRACE) and new rollup files to sluice.rollups, then expires old snapshots; also once at start (0 = never; `sluice iceberg commit` runs it by hand, e.g. from a CronJob).',
  ),
  SLUICE_ICEBERG_SNAPSHOT_RETENTION: retention(
    '120h',
    "Snapshots of the Iceberg tables older than this are expired after each commit run: dropped from the metadata, with the manifest lists and manifests only they used, so time travel reaches back this far (inf = keep every snapshot). S3 Tables' default.",
  ),
  SLUICE_ICEBERG_MIN_SNAPSHOTS: int(1, 100_000)('1', "Snapshots of each Iceberg table's history kept whatever their age (the current one always counts)."),
  SLUICE_ICEBERG_ORPHAN_GRACE: retention(
    '3d',
    "Files in an Iceberg table's metadata folder that no kept version references (lost commit attempts, leftovers of an interrupted expiry) are deleted once this much older than the oldest kept snapshot; data files are never touched (inf = never delete). S3 Tables' default.",
  ),

  SLUICE_FLEET_MIN: int(0, 1000)('1', 'Fewest worker processes `sluice fleet` keeps running, even when the queue is empty.'),
  SLUICE_FLEET_MAX: int(1, 1000)('8', 'Most worker processes `sluice fleet` runs, however deep the queue (must be at least SLUICE_FLEET_MIN).'),
  SLUICE_FLEET_TARGET_PER_WORKER: int(1, 100_000)(
    '4',
    "Queued + in-flight batches one worker is expected to absorb: desired workers = ceil((visible + in flight) / this), the formula of KEDA's aws-sqs-queue trigger (its queueLength). Keep it equal to the ScaledObject in deploy/k8s.",
  ),
  SLUICE_FLEET_COOLDOWN: duration(
    '60s',
    'The queue must have wanted fewer workers for this long before the fleet stops one; each further step down waits as long again. Scaling up is immediate.',
  ),
  SLUICE_FLEET_MAX_AGE: duration(
    '1m',
    'Target age of the oldest unprocessed batch: besides what the depth asks for, the fleet wants ceil(running workers × oldest age / this) workers, and while the oldest is older than this never fewer than are active — the rule of a KEDA Prometheus trigger with metricType Value, whose threshold must equal this (deploy/k8s). 0 = scale on depth only.',
  ),
  SLUICE_FLEET_POLL_INTERVAL: duration('5s', "How often the fleet reads the queue depth and its workers' metrics and decides how many workers to run."),
  SLUICE_FLEET_DRAIN_GRACE: duration(
    '2m',
    'A worker being stopped (scale-down or shutdown) gets SIGTERM and this long to finish or release its batches before SIGKILL; keep it above SLUICE_WORKER_SHUTDOWN_GRACE.',
  ),
  SLUICE_FLEET_PORT: port('9100', "Port of the fleet supervisor's /healthz, /readyz, /metrics and /v1/fleet (0 = any free port); its workers take free ports."),

  SLUICE_QUERY_HOST: str('127.0.0.1', 'Address the query API listens on.'),
  SLUICE_QUERY_PORT: port('8081', 'Port of the query API and dashboard.'),
  SLUICE_QUERY_API_KEYS: secret(
    queryApiKeys(
      '',
      'Read keys of the query API (secret: never shown in errors, logs or `sluice config`). When set, every /v1/* route and the dashboard require Authorization: Bearer <key> (the dashboard: its sign-in form, which keeps the key in an HttpOnly cookie): 401 without a key, 403 for a wrong one; keys are compared in constant time. /healthz, /readyz and /metrics stay open. Metrics count requests per key name, never the key.',
    ),
  ),
  SLUICE_QUERY_KEY_SCOPES: keyScopes(
    '',
    'Restricts keys of SLUICE_QUERY_API_KEYS, by name, to entities whose id starts with one of the prefixes: other entities answer 403, /v1/topk holds only their entities and says so (`filtered`). Producer scopes are refused (the series carry no producer).',
  ),
  SLUICE_OPERATOR_KEYS: secret(
    keyList(
      '',
      'Secret keys of operators. GET /v1/ops/summary shows internal URLs and error texts only with Authorization: Bearer <operator key>; without one it shows health states and numbers only.',
    ),
  ),
  SLUICE_QUERY_TIMEOUT: duration(
    '10s',
    'Longest one InfluxDB query of the query API may run; a slower one is abandoned and the request answers 503 with Retry-After.',
  ),

  SLUICE_COLD_ENDPOINT: optStr(
    '',
    'S3-compatible endpoint of the cold bucket (e.g. a separate MinIO). Empty = AWS_ENDPOINT_URL; when that is empty too, AWS S3 of AWS_REGION.',
  ),
  SLUICE_RETENTION_1M: retention(
    '7d',
    "How long InfluxDB keeps per-minute points (events_1m): the rollup job sets it on the database's default retention policy. Must exceed SLUICE_ROLLUP_LATE_WINDOW_1D.",
  ),
  SLUICE_RETENTION_1H: retention(
    '90d',
    'How long InfluxDB keeps hourly rollups (events_1h, retention policy sluice_1h). Older hours are answered from the cold bucket.',
  ),
  SLUICE_RETENTION_1D: retention(
    'inf',
    'How long InfluxDB keeps daily rollups (events_1d, retention policy sluice_1d). Older days are answered from the cold bucket.',
  ),
  SLUICE_ROLLUP_LATE_WINDOW_1H: duration(
    '2h',
    'Every rollup run recomputes the hours that ended within this window, so late events reach the hourly rollups; later arrivals need `sluice rollup --from --to`.',
  ),
  SLUICE_ROLLUP_LATE_WINDOW_1D: duration(
    '2d',
    'Every rollup run recomputes the days that ended within this window (same rule as SLUICE_ROLLUP_LATE_WINDOW_1H, for events_1d).',
  ),
  SLUICE_COMPACT_AFTER: duration('2d', 'Raw batch files of an event-time day are merged into one cold file once the day ended this long ago.'),
  SLUICE_COMPACTION_DELETE_GRACE: duration(
    '1h',
    "Raw batch files a compaction replaced are deleted by a later compaction run once the table's replace snapshot (or, without one, the compaction manifest) is this old, so readers of the previous snapshots finish (0 = delete right after the replace).",
  ),
  SLUICE_QUERY_URL: url('http://127.0.0.1:8081', 'Query API that `sluice audit` and the canary check against.'),
  SLUICE_CANARY_ENABLED: bool(
    'false',
    'Let `sluice canary` run: it sends a known event to SLUICE_INGEST_URL every SLUICE_CANARY_INTERVAL and checks that the query API counts it (a weak, continuous audit).',
  ),
  SLUICE_CANARY_INTERVAL: duration('30s', 'How often the canary sends one event.'),
  SLUICE_CANARY_MAX_DELAY: duration('2m', 'A canary event not counted by the query API within this delay counts as a failure (sluice_canary_failures_total).'),
  SLUICE_CANARY_PORT: port('9102', "Port of the canary's /healthz and /metrics (0 = any free port)."),
  SLUICE_INGEST_URL: url(
    'http://127.0.0.1:8080',
    'Base URL of an ingest node as other processes reach it: the dashboard (GET /v1/ops/summary) scrapes its /metrics for ingest throughput and errors.',
  ),
  SLUICE_FLEET_URL: url(
    'http://127.0.0.1:9100',
    "Where the dashboard scrapes the fleet supervisor's /metrics for worker count, processing throughput and message age.",
  ),
} as const;

export type SettingName = keyof typeof SETTINGS;
export type Config = { readonly [K in SettingName]: ValueOf<(typeof SETTINGS)[K]> };

/** The effective configuration with secrets hidden and URLs masked, as `sluice config` prints it. */
export function redactedConfig(cfg: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(SETTINGS) as [SettingName, Field<unknown>][]) {
    const v: unknown = cfg[name];
    const count = v instanceof Map ? v.size : Array.isArray(v) ? v.length : undefined;
    if (f.secret === 'value') out[name] = count === undefined ? (v === '' ? '' : '(set, not shown)') : `${count} key(s), not shown`;
    else if (f.secret === 'url' && typeof v === 'string') out[name] = maskUrl(v);
    else out[name] = v instanceof Map ? `${v.size} entries` : v;
  }
  return out;
}

/**
 * Reads and validates every setting. Collects all problems and throws one ConfigError
 * listing each variable with what it accepts.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, f] of Object.entries(SETTINGS) as [SettingName, Field<unknown>][]) {
    const raw = env[name] ?? f.fallback;
    const value = f.parse(raw);
    const why = value === undefined ? f.explain?.(raw) : undefined;
    if (value === undefined) problems.push(`${name} must be ${f.accepts}, got ${shownRaw(f, raw)}${why ? `: ${why}` : ''}`);
    else out[name] = value;
  }
  if (!problems.length && !out.SLUICE_REDIS_CLUSTER && splitRedisUrls(out.SLUICE_REDIS_URL as string).length > 1) {
    problems.push(
      `SLUICE_REDIS_URL holds ${splitRedisUrls(out.SLUICE_REDIS_URL as string).length} comma-separated URLs, a list of seed nodes that only a Redis Cluster takes: set SLUICE_REDIS_CLUSTER=true, or give one URL`,
    );
  }
  if (out.SLUICE_QUERY_KEY_SCOPES && out.SLUICE_QUERY_API_KEYS) {
    problems.push(...unknownScopedNames(out.SLUICE_QUERY_KEY_SCOPES as KeyScopes, out.SLUICE_QUERY_API_KEYS as Map<string, string>));
  }
  if (!problems.length && (out.SLUICE_FLEET_MIN as number) > (out.SLUICE_FLEET_MAX as number)) {
    problems.push(`SLUICE_FLEET_MIN must not exceed SLUICE_FLEET_MAX, got ${String(out.SLUICE_FLEET_MIN)} > ${String(out.SLUICE_FLEET_MAX)}`);
  }
  if (!problems.length && (out.SLUICE_LEDGER_RETENTION as number) <= (out.SLUICE_RECONCILE_LOOKBACK as number)) {
    problems.push(
      `SLUICE_LEDGER_RETENTION must exceed SLUICE_RECONCILE_LOOKBACK (reconcile would re-announce batches the ledger forgot), got ${String(env.SLUICE_LEDGER_RETENTION ?? SETTINGS.SLUICE_LEDGER_RETENTION.fallback)} ≤ ${String(env.SLUICE_RECONCILE_LOOKBACK ?? SETTINGS.SLUICE_RECONCILE_LOOKBACK.fallback)}`,
    );
  }
  if (problems.length) throw new ConfigError(problems.join('\n'));
  return out as Config;
}

/** Sluice's buckets and queues as `sluice setup` creates them (localstack/resources.json is checked equal to the defaults). */
export interface Resources {
  buckets: { raw: string; cold: string };
  queues: {
    batches: { name: string; visibilityTimeoutSeconds: number; messageRetentionSeconds: number; maxReceiveCount: number };
    deadLetter: { name: string; messageRetentionSeconds: number };
  };
}
export function resourcesOf(cfg: Config): Resources {
  const s = (ms: number) => Math.round(ms / 1000);
  return {
    buckets: { raw: cfg.SLUICE_RAW_BUCKET, cold: cfg.SLUICE_COLD_BUCKET },
    queues: {
      batches: {
        name: cfg.SLUICE_QUEUE_NAME,
        visibilityTimeoutSeconds: s(cfg.SLUICE_VISIBILITY_TIMEOUT),
        messageRetentionSeconds: s(cfg.SLUICE_QUEUE_RETENTION),
        maxReceiveCount: cfg.SLUICE_MAX_RECEIVE_COUNT,
      },
      deadLetter: { name: cfg.SLUICE_DLQ_NAME, messageRetentionSeconds: s(cfg.SLUICE_DLQ_RETENTION) },
    },
  };
}
/** The default resources (every setting at its default). */
export const RESOURCES: Resources = resourcesOf(loadConfig({}));

/** The configuration table of the README, generated from SETTINGS. */
export function configMarkdown(): string {
  const cell = (s: string) => s.replaceAll('|', '\\|');
  const computed: Record<string, string> = { SLUICE_NODE_ID: 'host name', SLUICE_INGEST_PROCESSES: 'number of CPUs' };
  const shown = (name: string, f: Field<unknown>) => computed[name] ?? (f.fallback || '(empty)');
  const rows = Object.entries(SETTINGS).map(
    ([name, f]) => `| \`${name}\` | \`${cell(shown(name, f as Field<unknown>))}\` | ${cell((f as Field<unknown>).accepts)} | ${cell(f.doc)} |`,
  );
  return ['| Variable | Default | Accepts | What it does |', '|---|---|---|---|', ...rows].join('\n');
}
