// Reads the rows of a raw batch a worker does not count (contract breaks, events of refused points) back from the
// file with every field of the event, for the quarantine (workers/quarantine-sink.ts). Never on the hot path.
import { sqlString, type DuckDBConnection } from '../shared/parquet.js';
import type { QuarantineRow } from './batch-scan-types.js';

/**
 * The rows of `file` listed by `selected` (columns row_no, reason as `<code>[:<field>]`, detail), joined with the
 * file on its row number, in file order.
 */
export async function readQuarantineRows(c: DuckDBConnection, file: string, selected: string): Promise<QuarantineRow[]> {
  const rows = (
    await c.runAndReadAll(`
    SELECT q.row_no::DOUBLE, q.reason, q.detail, f.event_id, f.entity_id, f.event_type, epoch_ms(f.event_time)::DOUBLE, f.value,
           CASE WHEN f.dims IS NULL THEN NULL ELSE to_json(f.dims)::VARCHAR END, epoch_ms(f.ingest_time)::DOUBLE, f.producer
    FROM (${selected}) q
    JOIN read_parquet(${sqlString(file)}, file_row_number = true) f ON f.file_row_number = q.row_no
    ORDER BY q.row_no`)
  ).getRowsJS();
  return rows.map(([rowNo, reason, detail, eventId, entityId, eventType, ts, value, dims, it, producer]) => {
    const [code, field] = String(reason).split(':');
    return {
      rowNo: Number(rowNo),
      reason: code!,
      ...(detail === null ? { field } : { detail: detail as string }),
      eventId: eventId as string | null,
      entityId: entityId as string | null,
      eventType: eventType as string | null,
      timestampMs: ts as number | null,
      value: value as number | null,
      dimsJson: dims as string | null,
      ingestTimeMs: it as number | null,
      producer: producer as string | null,
    };
  });
}
