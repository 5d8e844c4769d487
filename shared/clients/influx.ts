// InfluxDB 1.x client of Sluice, configured with the series layout of contracts/influx-series.ts (measurements,
// tags, field types). Shared by workers (writes) and the query API (reads); the layout itself lives in the contract.
// Also the one line-protocol write (InfluxLineWriter): the request to /write, its auth and its error classification.
import { InfluxDB, FieldType } from 'influx';
import type { Config } from '../config.js';
import { TransientError, classifyInfluxError, errorMessage } from '../errors.js';
import { FIELDS, MEASUREMENTS, TAGS, influxIdent } from '../contracts/influx-series.js';

const FIELD_TYPE = { integer: FieldType.INTEGER, float: FieldType.FLOAT } as const;
const fields = Object.fromEntries(Object.entries(FIELDS).map(([name, kind]) => [name, FIELD_TYPE[kind]]));

export function createInflux(cfg: Pick<Config, 'SLUICE_INFLUX_URL' | 'SLUICE_INFLUX_DB'>): InfluxDB {
  const u = new URL(cfg.SLUICE_INFLUX_URL);
  return new InfluxDB({
    host: u.hostname,
    port: Number(u.port || (u.protocol === 'https:' ? 443 : 8086)),
    protocol: u.protocol === 'https:' ? 'https' : 'http',
    username: decodeURIComponent(u.username) || undefined,
    password: decodeURIComponent(u.password) || undefined,
    database: cfg.SLUICE_INFLUX_DB,
    schema: MEASUREMENTS.map((measurement) => ({ measurement, tags: [...TAGS], fields })),
  });
}

/** One series of an InfluxDB /query answer (queryRaw): its tags when grouped by tag, columns and rows. */
export interface InfluxRawSeries {
  tags?: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

/** The body InfluxDB 1.x answers to /query (queryRaw): per statement, its series or its error. */
export interface InfluxRawResponse {
  error?: string;
  results?: { error?: string; series?: InfluxRawSeries[] }[];
}

/** Creates the database if missing (idempotent). */
export async function ensureDatabase(influx: InfluxDB, name: string): Promise<void> {
  await influx.query(`CREATE DATABASE ${influxIdent(name)}`);
}

export interface InfluxLineWriterOptions {
  /** InfluxDB HTTP API base URL (credentials in the URL are sent as basic auth). */
  url: string;
  database: string;
  /** Retention policy written into (default: the database's default policy). */
  retentionPolicy?: string;
  /** Observes each request's latency in seconds. */
  observeLatency?: (seconds: number) => void;
}

/**
 * Posts line protocol to InfluxDB's /write (nanosecond precision) in one request. Resolves undefined on 204 and
 * with InfluxDB's answer (first 500 characters) on 400, when it refused some lines; throws a classified
 * SluiceError (classifyInfluxError) on anything else.
 */
export class InfluxLineWriter {
  private readonly endpoint: string;
  private readonly origin: string;
  private readonly auth: Record<string, string> | undefined;

  constructor(private readonly o: InfluxLineWriterOptions) {
    const u = new URL(o.url);
    this.origin = u.origin;
    this.auth = u.username
      ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` }
      : undefined;
    this.endpoint = `${u.origin}/write?db=${encodeURIComponent(o.database)}&precision=n${o.retentionPolicy ? `&rp=${encodeURIComponent(o.retentionPolicy)}` : ''}`;
  }

  async write(body: string): Promise<string | undefined> {
    const t0 = performance.now();
    let res: Response;
    try {
      res = await fetch(this.endpoint, {
        method: 'POST',
        body,
        headers: { 'content-type': 'text/plain; charset=utf-8', ...this.auth },
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      throw new TransientError(`InfluxDB unavailable at ${this.origin}: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
    } finally {
      this.o.observeLatency?.((performance.now() - t0) / 1000);
    }
    if (res.status === 204) return undefined;
    const text = (await res.text()).slice(0, 500);
    if (res.status === 400) return text;
    throw classifyInfluxError(Object.assign(new Error(`HTTP ${res.status} from ${this.origin}: ${text}`), { res: { statusCode: res.status } }));
  }
}
