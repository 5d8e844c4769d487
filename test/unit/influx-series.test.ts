// The InfluxDB series contract: every field is folded the way partial points must be (counts and sums added,
// minima and maxima kept), and identifiers and strings are quoted so no value can change a statement's shape.
import { describe, expect, it } from 'vitest';
import { type FIELDS, FOLD_SELECT, TOTAL_SELECT, influxIdent, influxString, qualifiedMeasurement, seriesIs } from '../../shared/contracts/influx-series.js';

describe('InfluxDB series contract', () => {
  it('folds every field of a point: sum(count), sum(sum), min(min), max(max)', () => {
    const fold: Record<keyof typeof FIELDS, string> = { count: 'sum', sum: 'sum', min: 'min', max: 'max' };
    expect(FOLD_SELECT).toBe(
      Object.entries(fold)
        .map(([f, fn]) => `${fn}("${f}") AS "${f}"`)
        .join(', '),
    );
    expect(FOLD_SELECT.startsWith(TOTAL_SELECT)).toBe(true);
  });

  it('quotes identifiers and strings', () => {
    expect(influxIdent('a"b')).toBe('"a\\"b"');
    expect(influxString("it's \\")).toBe("'it\\'s \\\\'");
    expect(qualifiedMeasurement('db', 'sluice_1d', 'events_1d')).toBe('"db"."sluice_1d"."events_1d"');
    expect(seriesIs("x' OR 1=1", 'view')).toBe(`"entity_id" = 'x\\' OR 1=1' AND "event_type" = 'view'`);
  });
});
