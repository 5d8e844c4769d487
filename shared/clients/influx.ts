// InfluxDB 1.x client and the layout of Sluice's series: measurement `events_1m` (and rollups),
// tags entity_id and event_type, fields count/sum/min/max. Shared by workers (writes) and query (reads).
import { InfluxDB, FieldType } from 'influx';
import type { Config } from '../config.js';

export const MEASUREMENT_1M = 'events_1m';
/** Hourly and daily rollups (one point per series and period, at the period start), same tags and fields. */
export const MEASUREMENT_1H = 'events_1h';
export const MEASUREMENT_1D = 'events_1d';
/** Retention policies of the rollups (events_1m stays in the database's default policy). */
export const RP_1H = 'sluice_1h';
export const RP_1D = 'sluice_1d';
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
    schema: [MEASUREMENT_1M, MEASUREMENT_1H, MEASUREMENT_1D].map((measurement) => ({
      measurement,
      tags: [TAG_ENTITY, TAG_TYPE],
      fields: { count: FieldType.INTEGER, sum: FieldType.FLOAT, min: FieldType.FLOAT, max: FieldType.FLOAT },
    })),
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

/** InfluxQL identifier (double-quoted). */
export function influxIdent(name: string): string {
  return `"${name.replaceAll('"', '\\"')}"`;
}

/** A fully qualified measurement: "db"."rp"."measurement" (rollups live in their own retention policies). */
export function foldedSource(database: string, retentionPolicy: string, measurement: string): string {
  return `${influxIdent(database)}.${influxIdent(retentionPolicy)}.${influxIdent(measurement)}`;
}
