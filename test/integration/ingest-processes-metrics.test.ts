// /metrics of `sluice ingest --processes 2` as a real process tree: whichever process takes a scrape answers with the
// sum over both (asked of the primary over IPC), so sluice_ingest_requests_total equals the requests sent on every
// scrape and never goes back; when the primary cannot answer (stopped) or a process is restarting, the answering
// process gives its own metrics, marked sluice_metrics_aggregated 0 with a header saying why, and sums again after.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeEntry } from '../../localstack/services.js';
import { METRICS_FALLBACK_HEADER, METRICS_PROCESS_HEADER, METRICS_SCOPE_HEADER } from '../../shared/metrics.js';
import { waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';

type TestConfig = Awaited<ReturnType<typeof testConfig>>;

const primaries: ChildProcess[] = [];
afterEach(async () => {
  for (const p of primaries.splice(0)) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGCONT');
      p.kill('SIGKILL'); // its processes exit with it (their IPC channel closes)
      await new Promise((r) => p.once('exit', r));
    }
  }
});

/** `sluice ingest --processes 2`, its output in <data>/primary.log; resolves with its URL once it reports ready. */
function startPrimary(cfg: TestConfig): Promise<{ proc: ChildProcess; url: string; exited: Promise<number | null> }> {
  const [cmd, ...rest] = nodeEntry('cli/sluice.ts');
  const fd = openSync(path.join(cfg.SLUICE_DATA_DIR, 'primary.log'), 'a');
  const proc = spawn(cmd!, [...rest, 'ingest', '--processes', '2'], { env: { ...process.env, ...cfg.env }, stdio: ['ignore', fd, fd, 'ipc'] });
  primaries.push(proc);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('sluice ingest --processes 2 did not report ready within 120s')), 120_000);
    proc.once('message', (m: { url?: string }) => {
      clearTimeout(timer);
      resolve({ proc, url: m.url ?? '', exited });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`sluice ingest exited with ${code} while starting`));
    });
  });
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request; `agent: false` opens a connection of its own, so consecutive requests spread over the processes. */
function request(
  url: string,
  pathname: string,
  opts: { method?: string; body?: string; agent?: http.Agent | false; timeoutMs?: number } = {},
): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: pathname,
        method: opts.method ?? 'GET',
        agent: opts.agent ?? false,
        headers: opts.body ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    const timeoutMs = opts.timeoutMs ?? 15_000;
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${opts.method ?? 'GET'} ${pathname} got no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Sends `requests` requests of 10 events (ids `<prefix>-<r>-<k>`), 4 new connections at a time; all must be acknowledged. */
async function send(url: string, prefix: string, requests: number): Promise<void> {
  const now = Date.now();
  for (let r = 0; r < requests; r += 4) {
    const answers = await Promise.all(
      Array.from({ length: Math.min(4, requests - r) }, (_, j) => {
        const events = Array.from({ length: 10 }, (_, k) => ({
          eventId: `${prefix}-${r + j}-${k}`,
          entityId: `e-${k % 3}`,
          eventType: 'view',
          timestamp: now,
        }));
        return request(url, '/v1/events', { method: 'POST', body: JSON.stringify(events) });
      }),
    );
    for (const a of answers) expect(a.status, a.body).toBe(202);
  }
}

/** The sum of a metric's samples in a Prometheus text answer (0 when absent), optionally of one label value. */
function sample(text: string, name: string, label = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !(line.startsWith(`${name}{`) || line.startsWith(`${name} `))) continue;
    if (label && !line.includes(label)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface Scrape {
  scope: string | undefined;
  process: string | undefined;
  fallback: string | undefined;
  requests: number;
  aggregated: number;
  processes: number;
  text: string;
}

async function scrape(url: string, agent: http.Agent | false = false, timeoutMs?: number): Promise<Scrape> {
  const a = await request(url, '/metrics', { agent, timeoutMs });
  expect(a.status).toBe(200);
  const one = (h: string) => a.headers[h] as string | undefined;
  return {
    scope: one(METRICS_SCOPE_HEADER),
    process: one(METRICS_PROCESS_HEADER),
    fallback: one(METRICS_FALLBACK_HEADER),
    requests: sample(a.body, 'sluice_ingest_requests_total'),
    aggregated: sample(a.body, 'sluice_metrics_aggregated'),
    processes: sample(a.body, 'sluice_metrics_processes'),
    text: a.body,
  };
}

const lockPid = (cfg: TestConfig, node: string) =>
  (JSON.parse(readFileSync(path.join(cfg.SLUICE_DATA_DIR, 'ingest', node, 'wal.lock'), 'utf8')) as { pid: number }).pid;
const logLines = (cfg: TestConfig) =>
  readFileSync(path.join(cfg.SLUICE_DATA_DIR, 'primary.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('sluice ingest --processes 2: /metrics', () => {
  it('answers every scrape with the sum over both processes, whichever process takes it: the request count is exact and never goes back', async () => {
    const cfg = await testConfig({ SLUICE_NODE_ID: 'sum', SLUICE_LOG_LEVEL: 'info' });
    const primary = await startPrimary(cfg);
    const seen: number[] = [];
    const answeredBy = new Set<string>();
    let sent = 0;
    for (let round = 0; round < 6; round++) {
      await send(primary.url, `r${round}`, 8);
      sent += 8;
      for (let k = 0; k < 4; k++) {
        const s = await scrape(primary.url);
        expect(s, `scrape ${seen.length} (answered by ${s.process})`).toMatchObject({
          scope: 'node',
          fallback: undefined,
          requests: sent,
          aggregated: 1,
          processes: 2,
        });
        expect(sample(s.text, 'sluice_ingest_events_total', 'outcome="accepted"')).toBe(sent * 10);
        expect(sample(s.text, 'sluice_ingest_ack_seconds_count')).toBe(sent);
        seen.push(s.requests);
        answeredBy.add(s.process!);
      }
    }
    expect([...answeredBy].sort()).toEqual(['sum-p0', 'sum-p1']);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    // One sample per label set: the sum is one series, not one per process.
    expect(s1(await scrape(primary.url))).toEqual(['sluice_ingest_requests_total{status="202",service="ingest"} 48']);

    primary.proc.kill('SIGTERM');
    expect(await primary.exited).toBe(0);
  }, 240_000);

  it("answers with the process's own metrics, marked, while the primary cannot answer or a process restarts, and sums again after", async () => {
    const cfg = await testConfig({ SLUICE_NODE_ID: 'part', SLUICE_LOG_LEVEL: 'info' });
    const primary = await startPrimary(cfg);
    await send(primary.url, 'a', 16);
    const total = 16;

    // The primary stopped (SIGSTOP): a scrape on a connection a process already holds gets that process's metrics.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let own: Scrape | undefined;
    try {
      const before = await scrape(primary.url, agent);
      expect(before).toMatchObject({ scope: 'node', requests: total });
      primary.proc.kill('SIGSTOP');
      try {
        const t0 = Date.now();
        own = await scrape(primary.url, agent);
        expect(Date.now() - t0).toBeLessThan(5_000);
      } finally {
        primary.proc.kill('SIGCONT');
      }
      expect(own).toMatchObject({
        scope: 'process',
        process: before.process,
        fallback: 'the primary did not answer within 1000 ms',
        aggregated: 0,
        processes: 1,
      });
      // Its own share only: both processes took requests over the new connections.
      expect(own.requests).toBeGreaterThan(0);
      expect(own.requests).toBeLessThan(total);
      expect(await scrape(primary.url, agent)).toMatchObject({ scope: 'node', requests: total, aggregated: 1 });
    } finally {
      agent.destroy();
    }

    // Process 1 SIGKILLed: until the primary restarted it, scrapes (all on process 0) are process 0's own, marked.
    process.kill(lockPid(cfg, 'part-p1'), 'SIGKILL');
    // Scrapes start once the primary has seen the exit: a connection it accepted before hands to the dead process and
    // is never answered, and the restart (500 ms plus a start-up) can be over before a client's timeout.
    await waitUntil(
      'the primary saw part-p1 exit',
      () => logLines(cfg).some((l) => String(l.msg).startsWith('ingest process part-p1 exited unexpectedly')),
      30_000,
    );
    let partial: Scrape | undefined;
    await waitUntil(
      'a scrape answered while part-p1 restarts',
      async () => {
        // A connection the primary handed to process 1 just as it died is never answered (node:cluster leaves it
        // open); a client times out and tries again, as producers do.
        const s = await scrape(primary.url, false, 3_000).catch(() => undefined);
        if (s?.scope === 'process') partial = s;
        return partial !== undefined && /ingest process part-p1 is not serving \(starting or restarting\)/.test(partial.fallback ?? '');
      },
      30_000,
    );
    expect(partial).toMatchObject({ process: 'part-p0', aggregated: 0, processes: 1 });
    const p0Requests = partial!.requests;
    expect([p0Requests, total - p0Requests]).toContain(own!.requests);
    await waitUntil('the primary restarted part-p1', () => logLines(cfg).some((l) => l.msg === 'ingest process part-p1 started' && l.restarts === 1), 90_000);
    // Summed again: process 0's requests and the restarted process 1's (none yet; its counters start at 0).
    const again = await scrape(primary.url);
    expect(again).toMatchObject({ scope: 'node', aggregated: 1, processes: 2, requests: p0Requests });
    await send(primary.url, 'b', 8);
    for (let k = 0; k < 4; k++) expect(await scrape(primary.url)).toMatchObject({ scope: 'node', requests: p0Requests + 8 });

    primary.proc.kill('SIGTERM');
    expect(await primary.exited).toBe(0);
  }, 240_000);
});

/** The request-count samples of a scrape. */
const s1 = (s: Scrape) => s.text.split('\n').filter((l) => l.startsWith('sluice_ingest_requests_total'));
