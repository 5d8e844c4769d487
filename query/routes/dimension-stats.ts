// GET /v1/stats?dimension=<attribute>&value=<value>&eventType=…&fn=…: the attribute series (SLUICE_DIMENSIONS) — all
// events of entities whose dimension-table attribute had that value when their batch was counted — per time bucket
// and over the range, answered like the entity series: minutes, hourly and daily rollups in InfluxDB and the cold
// rollups, stitched (query/federated-reader.ts over the attribute layout). registerStatsRoute hands requests that name
// `dimension` here. The answer covers every entity, so a key limited to some entities (SLUICE_QUERY_KEY_SCOPES) is refused.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../shared/config.js';
import {
  ATTRIBUTE_ROLLUP_COLUMNS,
  ATTRIBUTE_VALUE_MAX,
  type AttributeRollupRow,
  attributeRollupPrefix,
  parseAttributeRollupKey,
} from '../../shared/contracts/dimensions.js';
import { EVENT_TYPE_PATTERN, parseTimestamp } from '../../shared/contracts/event.js';
import { attributeMeasurement, attributeSeriesIs } from '../../shared/contracts/influx-series.js';
import type { ColdStorage } from '../../shared/clients/cold-storage.js';
import type { RollupResolution } from '../../shared/contracts/cold-layout.js';
import { parquetFiles, queryParquet, readColumns, sqlString } from '../../shared/parquet.js';
import type { EntityScope } from '../auth.js';
import { cacheKey, type QueryCache } from '../cache.js';
import { ColdRollupReader, type ColdRollupLayout } from '../cold-reader.js';
import { FederatedReader, type FederatedSeries } from '../federated-reader.js';
import type { InfluxReader } from '../influx-reader.js';
import { cachedStats } from './stats.js';
import {
  DEFAULT_RANGE_MS,
  InvalidParamsError,
  MAX_POINTS,
  type ParamProblem,
  STAT_FNS,
  STEP_MS,
  STEPS,
  type StatFn,
  type Step,
  autoStep,
  bucketCount,
  ceilToMinute,
  textProblem,
} from '../params.js';

/** One attribute series: the attribute's value and the event type. */
export interface AttributeKey {
  value: string;
  eventType: string;
}

export interface DimensionStatsRequest extends AttributeKey {
  dimension: string;
  fn: StatFn;
  fromMs: number;
  toMs: number;
  step: Step;
}

const PARAMS = ['dimension', 'value', 'eventType', 'fn', 'from', 'to', 'step'] as const;
const TIME_ACCEPTS = 'an ISO-8601 time such as 2026-01-31T12:00:00Z, or epoch milliseconds';

/** The accepted values of `dimension`, as a 400 names them. */
export function dimensionAccepts(configured: readonly string[]): string {
  return configured.length
    ? `one of ${configured.join(', ')} (SLUICE_DIMENSIONS)`
    : 'an attribute of SLUICE_DIMENSIONS, which is empty here: no attribute is counted';
}

/** Validates the parameters of an attribute /v1/stats request against the configured attributes. */
export function parseDimensionStatsParams(raw: unknown, nowMs: number, configured: readonly string[]): DimensionStatsRequest {
  const q = (raw ?? {}) as Record<string, unknown>;
  const problems: ParamProblem[] = [];
  const str = (name: string): string | undefined => {
    const v = q[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      problems.push({ param: name, message: 'must be given once' });
      return undefined;
    }
    return v;
  };
  for (const k of Object.keys(q))
    if (!(PARAMS as readonly string[]).includes(k))
      problems.push({ param: k === '' ? '(empty name)' : k, message: `is not a parameter of /v1/stats with dimension; accepted: ${PARAMS.join(', ')}` });
  const dimension = str('dimension');
  if (dimension !== undefined && !configured.includes(dimension))
    problems.push({ param: 'dimension', message: `must be ${dimensionAccepts(configured)}, got ${JSON.stringify(dimension.slice(0, 60))}` });
  const value = str('value');
  if (value === undefined)
    problems.push({ param: 'value', message: `is required with dimension: the attribute value, a string of 1–${ATTRIBUTE_VALUE_MAX} characters` });
  else if (value.length === 0 || value.length > ATTRIBUTE_VALUE_MAX)
    problems.push({ param: 'value', message: `must be a string of 1–${ATTRIBUTE_VALUE_MAX} characters, got ${value.length}` });
  else {
    const p = textProblem(value);
    if (p) problems.push({ param: 'value', message: p });
  }
  const eventType = str('eventType');
  const eventTypeAccepts = `an event type matching ${EVENT_TYPE_PATTERN.source}`;
  if (eventType === undefined) problems.push({ param: 'eventType', message: `is required: ${eventTypeAccepts}` });
  else if (!EVENT_TYPE_PATTERN.test(eventType))
    problems.push({ param: 'eventType', message: `must be ${eventTypeAccepts}, got ${JSON.stringify(eventType.slice(0, 60))}` });
  const fn = z.enum(STAT_FNS).safeParse(str('fn'));
  if (!fn.success)
    problems.push({
      param: 'fn',
      message: `${q.fn === undefined ? 'is required:' : 'must be'} one of ${STAT_FNS.join(', ')}${q.fn === undefined ? '' : `, got ${JSON.stringify(q.fn)}`}`,
    });
  const time = (name: string): number | undefined => {
    const v = str(name);
    if (v === undefined) return undefined;
    const t = parseTimestamp(/^\d{1,15}$/.test(v) ? Number(v) : v);
    if (typeof t === 'number') return t;
    problems.push({ param: name, message: `must be ${TIME_ACCEPTS}, got ${JSON.stringify(v.slice(0, 60))}` });
    return undefined;
  };
  const from = time('from');
  const to = time('to');
  const stepRaw = str('step');
  if (stepRaw !== undefined && !(STEPS as string[]).includes(stepRaw))
    problems.push({ param: 'step', message: `must be one of ${STEPS.join(', ')}, got ${JSON.stringify(stepRaw.slice(0, 60))}` });
  if (problems.length) throw new InvalidParamsError(problems);
  const requestedTo = to ?? nowMs;
  const requestedFrom = from ?? requestedTo - DEFAULT_RANGE_MS;
  if (requestedFrom > requestedTo)
    throw new InvalidParamsError([
      { param: 'from', message: `must not be after to (from ${new Date(requestedFrom).toISOString()}, to ${new Date(requestedTo).toISOString()})` },
    ]);
  const fromMs = ceilToMinute(requestedFrom);
  const toMs = ceilToMinute(requestedTo);
  const step = (stepRaw as Step | undefined) ?? autoStep(toMs - fromMs);
  const points = bucketCount(fromMs, toMs, step);
  if (points > MAX_POINTS) {
    const larger = STEPS.filter((s) => STEP_MS[s] > STEP_MS[step] && bucketCount(fromMs, toMs, s) <= MAX_POINTS);
    throw new InvalidParamsError([
      {
        param: 'step',
        message: `gives ${points} points for this range, more than the limit of ${MAX_POINTS}; ${larger.length ? `use a larger step (${larger.join(' or ')})` : 'use a larger step or a shorter range'}`,
      },
    ]);
  }
  return { dimension: dimension!, value: value!, eventType: eventType!, fn: fn.data!, fromMs, toMs, step };
}

/** The attribute series of one attribute, for the federated reader. */
export function attributeSeries(attribute: string): FederatedSeries<AttributeKey> {
  return {
    measurements: { '1m': attributeMeasurement(attribute, '1m'), '1h': attributeMeasurement(attribute, '1h'), '1d': attributeMeasurement(attribute, '1d') },
    where: (k) => attributeSeriesIs(k.value, k.eventType),
  };
}

/** The cold rollups of one attribute (contracts/dimensions.ts ATTRIBUTE_ROLLUP_COLUMNS). */
export function attributeRollups(attribute: string): ColdRollupLayout<AttributeKey, AttributeRollupRow> {
  return {
    prefix: (res: RollupResolution) => attributeRollupPrefix(attribute, res),
    parse: (key) => {
      const k = parseAttributeRollupKey(key);
      return k && k.attribute === attribute ? { res: k.res, startMs: k.startMs } : undefined;
    },
    read: async (files, q) => {
      if (!files.length) return [];
      const rows = await queryParquet(`SELECT ${readColumns(ATTRIBUTE_ROLLUP_COLUMNS)} FROM read_parquet(${parquetFiles(files)})
        WHERE value = ${sqlString(q.value)} AND event_type = ${sqlString(q.eventType)}
          AND epoch_ms(period_start) >= ${Math.trunc(q.fromMs)} AND epoch_ms(period_start) < ${Math.trunc(q.toMs)} ORDER BY period_start`);
      return rows.map((r) => Object.fromEntries(ATTRIBUTE_ROLLUP_COLUMNS.map((c) => [c.field, r[c.name]])) as unknown as AttributeRollupRow);
    },
  };
}

export interface DimensionStatsDeps {
  cfg: Pick<Config, 'SLUICE_DIMENSIONS' | 'SLUICE_INFLUX_DB' | 'SLUICE_RETENTION_1M' | 'SLUICE_RETENTION_1H' | 'SLUICE_RETENTION_1D' | 'SLUICE_REDIS_PREFIX'>;
  reader: InfluxReader;
  /** The cold bucket and a local folder for its files; without it only InfluxDB is read. */
  cold?: { storage: ColdStorage; cacheDir: string };
  cache: QueryCache;
  now: () => number;
  scopeOf?: (req: FastifyRequest) => EntityScope | undefined;
}

/** Bump when the cached bucket layout changes. */
const CACHE_VERSION = 1;

/** The handler of attribute /v1/stats requests (registerStatsRoute calls it for requests naming `dimension`). */
export function dimensionStatsHandler(deps: DimensionStatsDeps): (req: FastifyRequest, reply: FastifyReply) => Promise<unknown> {
  const readers = new Map<string, FederatedReader<AttributeKey>>();
  const readerOf = (attribute: string) => {
    let r = readers.get(attribute);
    if (!r) {
      const cold = deps.cold ? new ColdRollupReader(deps.cold.storage, deps.cold.cacheDir, deps.now, attributeRollups(attribute)) : undefined;
      r = new FederatedReader<AttributeKey>(deps.reader, cold, deps.cfg, deps.now, attributeSeries(attribute));
      readers.set(attribute, r);
    }
    return r;
  };
  return async (req, reply) => {
    const scope = deps.scopeOf?.(req);
    if (scope)
      return reply.code(403).send({
        error: `key "${scope.key}" is limited to entities starting with ${scope.entityPrefixes.join(', ')}, and /v1/stats with dimension counts every entity; use an unrestricted key`,
      });
    const nowMs = deps.now();
    const r = parseDimensionStatsParams(req.query, nowMs, deps.cfg.SLUICE_DIMENSIONS);
    const key = cacheKey(deps.cfg.SLUICE_REDIS_PREFIX, {
      v: CACHE_VERSION,
      kind: 'dimension-stats',
      dimension: r.dimension,
      value: r.value,
      eventType: r.eventType,
      from: r.fromMs,
      to: r.toMs,
      step: r.step,
    });
    const answer = await cachedStats(req, reply, deps.cache, key, { ...r, nowMs }, () => readerOf(r.dimension).stats(r));
    return { dimension: r.dimension, value: r.value, eventType: r.eventType, ...answer };
  };
}
