// The counting rules of Sluice as SQL over raw event rows: which rows can never be stored (and why), the dedup
// identity, and which row of a repeated identity counts. The worker's batch scan and the archive audit both count
// with these, so the audit recomputes exactly what workers stored.
import { EVENT_TYPE_PATTERN, VALUE_MAX_ABS } from '../shared/contracts/event.js';
import { sqlString } from '../shared/parquet.js';

// Rows a worker can never store, and why: the first broken rule as `<quarantine reason>:<field>` (NULL for a good
// row). Ingest enforces the same rules (contracts/event.ts); files written before those rules, or by another writer,
// still reach workers, and one such row must never stop its batch. Control characters break line-oriented formats;
// InfluxDB 1.x line protocol cannot carry a tag value that ends in a backslash (it reads `\ ` as an escaped space);
// values beyond ±VALUE_MAX_ABS (and NaN, ±Infinity) would let a sum overflow to a value InfluxDB cannot parse.
const CONTROL_SQL = `'[\\x00-\\x1f\\x7f]'`;
/**
 * The quarantine reason of a raw row (columns of contracts/parquet-schema.ts), or NULL when it can be stored. One
 * regular-expression pass over the three strings for every row; which field it was is worked out only for bad rows.
 */
export const UNSTORABLE_REASON_SQL = `CASE
    WHEN event_id IS NULL OR event_id = '' THEN 'not_an_event_line:event_id'
    WHEN producer IS NULL THEN 'not_an_event_line:producer'
    WHEN entity_id IS NULL OR entity_id = '' THEN 'not_an_event_line:entity_id'
    WHEN regexp_matches(event_id || producer || entity_id, ${CONTROL_SQL}) THEN CASE
      WHEN regexp_matches(event_id, ${CONTROL_SQL}) THEN 'control_character:event_id'
      WHEN regexp_matches(producer, ${CONTROL_SQL}) THEN 'control_character:producer'
      ELSE 'control_character:entity_id' END
    WHEN ends_with(entity_id, chr(92)) THEN 'unstorable_tag:entity_id'
    WHEN event_type IS NULL THEN 'not_an_event_line:event_type'
    WHEN NOT regexp_full_match(event_type, ${sqlString(EVENT_TYPE_PATTERN.source)}) THEN 'invalid_event_type:event_type'
    WHEN event_time IS NULL THEN 'not_an_event_line:event_time'
    WHEN NOT coalesce(abs(value) <= ${VALUE_MAX_ABS}, false) THEN 'value_out_of_range:value'
  END`;

/**
 * The identity dedup works on: an event id is unique per producer, so one producer's ids never suppress another's.
 * chr(31) cannot occur in either part (validated strings hold no control characters; rows that do are quarantined).
 */
export const DEDUP_ID_SQL = `coalesce(producer, '') || chr(31) || event_id`;

/**
 * Which row of an identity counts when a file repeats it: the first in this order — earliest `ts` (event_time in
 * epoch ms), then entity_id, event_type and value ascending. Rows equal in all four count the same whichever is
 * kept. Needs a `ts` column: `epoch_ms(event_time) AS ts`.
 */
export const DEDUP_ORDER_SQL = 'ts, entity_id, event_type, value';

/** Keeps, per dedup identity (column `uid`), only the row that counts (see DEDUP_ORDER_SQL). */
export const FIRST_OF_IDENTITY_SQL = `QUALIFY row_number() OVER (PARTITION BY uid ORDER BY ${DEDUP_ORDER_SQL}) = 1`;
