// InfluxDB 1.x client and the layout of Sluice's series: measurement `events_1m` (and rollups),
// tags entity_id and event_type, fields count/sum/min/max. Shared by workers (writes) and query (reads).
import { InfluxDB, FieldType } from 'influx';
import type { Config } from '../config.js';

export const MEASUREMENT_1M = 'events_1m';
export const TAG_ENTITY = 'entity_id';
export const TAG_TYPE = 'event_type';

export function createInflux(cfg: Pick<Config, 'SLUICE_INFLUX_URL' | 'SLUICE_INFLUX_DB'>): InfluxDB {
  const u = new URL(cfg.SLUICE_INFLUX_URL);
  return new InfluxDB({
    host: u.hostname,
    port: Number(u.port || (u.protocol === 'https:' ? 443 : 8086)),
    protocol: u.protocol === 'https:' ? 'https' : 'http',
    username: decodeURIComponent(u.username) || undefined,
    password: decodeURIComponent(u.password) || undefined,
    database: cfg.SLUICE_INFLUX_DB,
    schema: [{
      measurement: MEASUREMENT_1M,
      tags: [TAG_ENTITY, TAG_TYPE],
      fields: { count: FieldType.INTEGER, sum: FieldType.FLOAT, min: FieldType.FLOAT, max: FieldType.FLOAT },
    }],
  });
}

/** Creates the database if missing (idempotent). */
export async function ensureDatabase(influx: InfluxDB, name: string): Promise<void> {
  await influx.query(`CREATE DATABASE ${JSON.stringify(name)}`);
}

/** InfluxQL string literal. */
export function influxString(s: string): string {
  return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}
