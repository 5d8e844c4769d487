// Reads a CSV file (RFC 4180: comma-separated, fields optionally in double quotes, a quote inside doubled, CRLF or LF)
// record by record, streamed, each with the line it starts on, so a loader can say where a problem is. A malformed
// file stops with an error naming the file, line and field.
import { createReadStream } from 'node:fs';
import { PermanentError } from '../../shared/errors.js';

export interface CsvRecord {
  /** 1-based line of the file where the record starts. */
  line: number;
  fields: string[];
}

/** Parser states; QuoteInQuoted: a quote inside a quoted field (the closing quote, or the first of a doubled one). */
const S = { FieldStart: 0, Unquoted: 1, Quoted: 2, QuoteInQuoted: 3 } as const;
type State = (typeof S)[keyof typeof S];

/** The records of `file`; blank lines are skipped, a byte-order mark at the start is ignored. */
export async function* readCsv(file: string): AsyncGenerator<CsvRecord> {
  let state: State = S.FieldStart;
  let field = '';
  let fields: string[] = [];
  let line = 1;
  let recordLine = 1;
  let quoteLine = 1;
  let first = true;
  const fail = (what: string): never => {
    throw new PermanentError(`${file}:${line}, field ${fields.length + 1}: ${what}`, 'dimension_file_invalid');
  };
  const endRecord = function* (): Generator<CsvRecord> {
    fields.push(field);
    field = '';
    const r = fields;
    fields = [];
    state = S.FieldStart;
    if (!(r.length === 1 && r[0] === '')) yield { line: recordLine, fields: r };
  };
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    let text = chunk as string;
    if (first) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const n = text.length;
    let i = 0;
    while (i < n) {
      const ch = text[i]!;
      switch (state) {
        case S.FieldStart:
        case S.Unquoted: {
          if (state === S.FieldStart && ch === '"') {
            state = S.Quoted;
            quoteLine = line;
            i++;
            break;
          }
          // An unquoted run up to the next delimiter, end of line or quote, taken at once.
          let j = i;
          while (j < n) {
            const c = text.charCodeAt(j);
            if (c === 44 /* , */ || c === 10 /* \n */ || c === 13 /* \r */ || c === 34 /* " */) break;
            j++;
          }
          if (j > i) {
            field += text.slice(i, j);
            state = S.Unquoted;
            i = j;
            break;
          }
          if (ch === ',') {
            fields.push(field);
            field = '';
            state = S.FieldStart;
          } else if (ch === '\n') {
            yield* endRecord();
            line++;
            recordLine = line;
          } else if (ch === '\r') {
            // CR of a CRLF (a lone CR is dropped as well)
          } else fail('a double quote inside an unquoted field: put the whole field in double quotes and double the quote');
          i++;
          break;
        }
        case S.Quoted: {
          const q = text.indexOf('"', i);
          const end = q < 0 ? n : q;
          const part = text.slice(i, end);
          for (let k = part.indexOf('\n'); k >= 0; k = part.indexOf('\n', k + 1)) line++;
          field += part;
          if (q >= 0) {
            state = S.QuoteInQuoted;
            i = q + 1;
          } else i = n;
          break;
        }
        case S.QuoteInQuoted: {
          if (ch === '"') {
            field += '"';
            state = S.Quoted;
          } else if (ch === ',') {
            fields.push(field);
            field = '';
            state = S.FieldStart;
          } else if (ch === '\n') {
            yield* endRecord();
            line++;
            recordLine = line;
          } else if (ch !== '\r') fail(`characters after the closing quote of a quoted field (got ${JSON.stringify(ch)})`);
          i++;
          break;
        }
      }
    }
  }
  if (state === S.Quoted) {
    line = quoteLine;
    fail('a quoted field that is never closed (the file ends inside it)');
  }
  if (state !== S.FieldStart || field !== '' || fields.length > 0) yield* endRecord();
}
