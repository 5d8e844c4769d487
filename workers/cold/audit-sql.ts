// The audit's engine work: recomputes count and sum per series from archive files the way workers count
// (workers/batch-scan-rules.ts), so any difference with what the query API answers is a real mismatch.
import { queryParquet, sqlString } from '../../shared/parquet.js';
import type { EntityTotal } from '../batch-scan-types.js';
import { DEDUP_ID_SQL, FIRST_OF_IDENTITY_SQL, UNSTORABLE_REASON_SQL } from '../batch-scan-rules.js';
import { eventFiles } from './archive-sql.js';

/** Count and sum of one (entity, event type) from the archive, each event id once: what a worker's scan counts. */
export type ArchiveTotal = EntityTotal;

/**
 * Totals per (entity, event type) over event times in [fromMs, toMs) from event files of any schema version:
 * rows that cannot be stored left out, each (producer, event id) once — the row workers keep (DEDUP_ORDER_SQL).
 */
export async function archiveTotals(
  files: readonly string[],
  q: { fromMs: number; toMs: number; entityId?: string; eventType?: string },
): Promise<ArchiveTotal[]> {
  if (!files.length) return [];
  const filters = [
    `epoch_ms(event_time) >= ${Math.trunc(q.fromMs)}`,
    `epoch_ms(event_time) < ${Math.trunc(q.toMs)}`,
    ...(q.entityId !== undefined ? [`entity_id = ${sqlString(q.entityId)}`] : []),
    ...(q.eventType !== undefined ? [`event_type = ${sqlString(q.eventType)}`] : []),
  ].join(' AND ');
  const rows = await queryParquet(`
    WITH unique_events AS (
      SELECT ${DEDUP_ID_SQL} AS uid, entity_id, event_type, epoch_ms(event_time) AS ts, value
      FROM ${eventFiles(files)} WHERE ${filters} AND (${UNSTORABLE_REASON_SQL}) IS NULL
      ${FIRST_OF_IDENTITY_SQL}
    )
    SELECT entity_id, event_type, count(*)::BIGINT AS c, sum(value) AS s FROM unique_events GROUP BY ALL ORDER BY entity_id, event_type`);
  return rows.map((r) => ({ entityId: String(r.entity_id), eventType: String(r.event_type), count: Number(r.c), sum: Number(r.s) }));
}
