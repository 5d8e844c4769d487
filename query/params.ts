// Validates the query API's parameters and turns them into typed requests. Every rejection names the
// parameter and what it accepts; the messages are generated from the same constants the checks use.
import { z } from 'zod';
import { ENTITY_ID_MAX, EVENT_TYPE_PATTERN, parseTimestamp } from '../shared/contracts/event.js';
import { PermanentError } from '../shared/errors.js';
import { TOPK_RESOLUTIONS, type TopKWindow } from '../shared/topk-store.js';

export const STAT_FNS = ['count', 'sum', 'avg', 'min', 'max'] as const;
export type StatFn = (typeof STAT_FNS)[number];

/** Bucket widths of /v1/stats, in milliseconds; the keys are also the InfluxQL durations. */
export const STEP_MS = { '1m': 60_000, '1h': 3_600_000, '1d': 86_400_000 } as const;
export type Step = keyof typeof STEP_MS;
export const STEPS = Object.keys(STEP_MS) as Step[];

/** Windows of /v1/topk: the ones the top-K store keeps. */
export const TOPK_WINDOWS = Object.keys(TOPK_RESOLUTIONS) as [TopKWindow, ...TopKWindow[]];
export type { TopKWindow };
export const TOPK_K_MIN = 1;
export const TOPK_K_MAX = 100;
export const TOPK_K_DEFAULT = 10;

/** Most buckets one /v1/stats answer may hold. */
export const MAX_POINTS = 10_000;
/** Range used when `from` is absent. */
export const DEFAULT_RANGE_MS = 3_600_000;
/** When `step` is absent: 1m up to this range… */
export const AUTO_STEP_1M_MAX_MS = 6 * 3_600_000;
/** …1h up to this one, 1d beyond. */
export const AUTO_STEP_1H_MAX_MS = 14 * 86_400_000;

export interface ParamProblem {
  param: string;
  message: string;
}

/** One or more query parameters are wrong; answered with 400 and the list of problems. */
export class InvalidParamsError extends PermanentError {
  constructor(readonly details: ParamProblem[]) {
    super(`invalid parameters: ${details.map((d) => `${d.param} ${d.message}`).join('; ')}`, 'invalid_params');
  }
}

/**
 * A validated /v1/stats request. The range [fromMs, toMs) is snapped to whole minutes — a minute belongs
 * to it when the minute's start does — because the series hold per-minute aggregates whose points sit at
 * arbitrary offsets inside their minute.
 */
export interface StatsRequest {
  entityId: string;
  eventType: string;
  fn: StatFn;
  fromMs: number;
  toMs: number;
  step: Step;
}

const MINUTE_MS = 60_000;
/** The start of the first whole minute at or after `ms`. */
export const ceilToMinute = (ms: number): number => Math.ceil(ms / MINUTE_MS) * MINUTE_MS;

export interface TotalRequest {
  entityId: string;
  eventType: string;
}

export interface TopKRequest {
  eventType: string;
  window: TopKWindow;
  k: number;
}

// ---- field schemas -----------------------------------------------------------------------

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'the parameter more than once';
  if (typeof v === 'string') return v.length > 40 ? `a value of ${v.length} characters` : JSON.stringify(v);
  return String(v);
}

/** zod error option: "is required …" when absent, "must be … got …" otherwise. */
const says = (accepts: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? `is required: ${accepts}` : `must be ${accepts}, got ${describe(issue.input)}`),
});

const ENTITY_ACCEPTS = `a string of 1–${ENTITY_ID_MAX} characters`;
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why a parameter value is not text an identifier can hold (a control character or a lone UTF-16 surrogate, which no
 * event can carry and InfluxDB or Redis cannot take), or undefined when it is fine.
 */
export function textProblem(v: string): string | undefined {
  const bad = CONTROL_CHAR.exec(v);
  if (bad) return `must not contain control characters (found U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at position ${bad.index})`;
  if (LONE_SURROGATE.test(v)) return 'must be well-formed Unicode (it holds a lone UTF-16 surrogate)';
  return undefined;
}
const plainText = (schema: z.ZodString) =>
  schema.superRefine((v, ctx) => {
    const problem = textProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const EVENT_TYPE_ACCEPTS = `an event type matching ${EVENT_TYPE_PATTERN.source}`;
const TIME_ACCEPTS = 'an ISO-8601 time such as 2026-01-31T12:00:00Z, or epoch milliseconds';

const entityId = plainText(z.string(says(ENTITY_ACCEPTS)).min(1, says(ENTITY_ACCEPTS)).max(ENTITY_ID_MAX, says(ENTITY_ACCEPTS)));
const eventType = z.string(says(EVENT_TYPE_ACCEPTS)).regex(EVENT_TYPE_PATTERN, says(EVENT_TYPE_ACCEPTS));
const oneOf = <T extends readonly [string, ...string[]]>(values: T) => z.enum(values, says(`one of ${values.join(', ')}`));

/** Epoch milliseconds ("1767225600000") or an ISO-8601 time; undefined when absent. */
const time = z
  .string(says(TIME_ACCEPTS))
  .optional()
  .transform((raw, ctx) => {
    if (raw === undefined) return undefined;
    const parsed = parseTimestamp(/^\d{1,15}$/.test(raw) ? Number(raw) : raw);
    if (typeof parsed === 'number') return parsed;
    ctx.addIssue({ code: 'custom', message: `must be ${TIME_ACCEPTS}, got ${describe(raw)}` });
    return z.NEVER;
  });

const K_ACCEPTS = `an integer from ${TOPK_K_MIN} to ${TOPK_K_MAX}`;
const k = z
  .string(says(K_ACCEPTS))
  .optional()
  .transform((raw, ctx) => {
    if (raw === undefined) return TOPK_K_DEFAULT;
    const n = /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
    if (n >= TOPK_K_MIN && n <= TOPK_K_MAX) return n;
    ctx.addIssue({ code: 'custom', message: `must be ${K_ACCEPTS}, got ${describe(raw)}` });
    return z.NEVER;
  });

const statsSchema = z.strictObject({
  entityId,
  eventType,
  fn: oneOf(STAT_FNS),
  from: time,
  to: time,
  step: oneOf(STEPS as [Step, ...Step[]]).optional(),
});
const totalSchema = z.strictObject({ entityId, eventType });
const topKSchema = z.strictObject({ eventType, window: oneOf(TOPK_WINDOWS), k });

/** Parses with `schema`; on failure throws one problem per wrong, missing or unknown parameter. */
function parseWith<S extends z.ZodObject>(schema: S, raw: unknown, queryParams: string[] = Object.keys(schema.shape)): z.output<S> {
  const res = schema.safeParse(raw ?? {});
  if (res.success) return res.data;
  const accepted = queryParams.join(', ');
  const details: ParamProblem[] = [];
  for (const issue of res.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        details.push({ param: key === '' ? '(empty name)' : key, message: `is not a parameter of this route; accepted: ${accepted}` });
    } else {
      details.push({ param: issue.path.map(String).join('.') || '(query)', message: issue.message });
    }
  }
  throw new InvalidParamsError(details);
}

// ---- requests ----------------------------------------------------------------------------

/** The step used when the caller gives none: the finest one that keeps the answer small. */
export function autoStep(rangeMs: number): Step {
  if (rangeMs <= AUTO_STEP_1M_MAX_MS) return '1m';
  if (rangeMs <= AUTO_STEP_1H_MAX_MS) return '1h';
  return '1d';
}

/** Buckets a range spans once aligned to UTC step boundaries (what GROUP BY time() returns at most). */
export function bucketCount(fromMs: number, toMs: number, step: Step): number {
  if (toMs <= fromMs) return 0;
  const w = STEP_MS[step];
  return Math.ceil(toMs / w) - Math.floor(fromMs / w);
}

/**
 * Validates /v1/stats parameters: defaults `to` to now and `from` to one hour before `to`, snaps both to
 * minute starts (see StatsRequest) and picks a step when none is given.
 */
export function parseStatsParams(raw: unknown, nowMs: number): StatsRequest {
  const p = parseWith(statsSchema, raw);
  const requestedTo = p.to ?? nowMs;
  const requestedFrom = p.from ?? requestedTo - DEFAULT_RANGE_MS;
  if (requestedFrom > requestedTo) {
    throw new InvalidParamsError([
      { param: 'from', message: `must not be after to (from ${new Date(requestedFrom).toISOString()}, to ${new Date(requestedTo).toISOString()})` },
    ]);
  }
  const fromMs = ceilToMinute(requestedFrom);
  const toMs = ceilToMinute(requestedTo);
  const step = p.step ?? autoStep(toMs - fromMs);
  const points = bucketCount(fromMs, toMs, step);
  if (points > MAX_POINTS) {
    const larger = STEPS.filter((s) => STEP_MS[s] > STEP_MS[step] && bucketCount(fromMs, toMs, s) <= MAX_POINTS);
    const advice = larger.length ? `use a larger step (${larger.join(' or ')})` : 'use a larger step or a shorter range';
    throw new InvalidParamsError([{ param: 'step', message: `gives ${points} points for this range, more than the limit of ${MAX_POINTS}; ${advice}` }]);
  }
  return { entityId: p.entityId, eventType: p.eventType, fn: p.fn, fromMs, toMs, step };
}

/** Validates /v1/entities/:entityId/total (path and query parameters together). */
export function parseTotalParams(pathParams: unknown, query: unknown): TotalRequest {
  return parseWith(totalSchema, { ...(query as object | undefined), ...(pathParams as object | undefined) }, ['eventType']);
}

/** Validates /v1/topk parameters; k defaults to 10. */
export function parseTopKParams(raw: unknown): TopKRequest {
  return parseWith(topKSchema, raw);
}
