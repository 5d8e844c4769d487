// Reads the Prometheus text exposition format (what every Sluice /metrics serves) into samples, so the fleet
// can total its workers' counters and the dashboard can read ingest and fleet numbers without a Prometheus.
// Comments, blank and malformed lines are skipped; label values are unescaped.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePromText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (!Number.isNaN(value) || m[3] === 'NaN') out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include every pair of `match`; undefined when there is none. */
export function sumOf(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const s of samples) {
    if (s.name !== name || !Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    total = (total ?? 0) + s.value;
  }
  return total;
}

/** Largest value of the samples named `name`; undefined when there is none. */
export function maxOf(samples: readonly Sample[], name: string): number | undefined {
  let best: number | undefined;
  for (const s of samples) if (s.name === name && (best === undefined || s.value > best)) best = s.value;
  return best;
}

/** GETs `${baseUrl}/metrics` and parses it; rejects on a non-200 answer or after `timeoutMs`. */
export async function scrapeMetrics(baseUrl: string, timeoutMs = 1_000): Promise<Sample[]> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${baseUrl}/metrics answered ${res.status}`);
  return parsePromText(await res.text());
}
