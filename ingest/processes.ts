// One ingest node on every core: `sluice ingest --processes N` runs N ingest processes on one port, each a whole node
// with its own node id `<node>-p<i>` and WAL folder (so batch keys stay deterministic and a restarted process replays
// its own WAL), restarted under the same id when it crashes. Guarantee: a stop drains every process (each finishes its
// requests, seals and delivers its WAL, as a single node does) before it resolves.
//
// How N processes share one port. Node 20's net.Server has no SO_REUSEPORT (`reusePort` arrived in Node 22.12/23.1;
// on 20.20 a second listen on the port fails with EADDRINUSE), so the processes are `node:cluster` workers and this
// primary distributes connections round-robin (SCHED_RR): it accepts each connection and hands it to the next
// process. Measured on this 2-core machine, 2 processes: 400 new connections split 203/197 and 201/199 under SCHED_RR;
// with SCHED_NONE (the kernel wakes one of the processes blocked in accept) 228/172 and 215/185, and 4 keep-alive
// connections of one client once landed all on one process (2000/0 requests). The primary's cost is one accept and
// one handle transfer per connection, not per request; producers keep their connections alive (ingest/client).
// A connection handed to a process in the instant it crashes stays unanswered: Node's round-robin neither closes nor
// passes on a handle whose process died before taking it. The client's timeout ends it; nothing on it was acknowledged.
//
// /metrics. Whichever process takes a scrape answers it with the sum over all processes: it asks this primary over
// IPC, which collects every process's registry (prom-client's AggregatorRegistry, shared/metrics.ts) and sums each
// metric by its aggregator (counters and histograms summed, gauges as ingest/metrics.ts declares). While a process is
// (re)starting there is no complete sum: the answering process then gives its own metrics, marked as such
// (`sluice_metrics_aggregated 0`), rather than a sum that would drop and jump back.
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { ConfigError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { serveClusterMetrics } from '../shared/metrics.js';
import { BACKOFF, backoffMs } from '../shared/retry.js';
import type { RestartPolicy } from '../shared/supervised-service.js';

/** The node id of process `i` of node `node`: its WAL folder and the prefix of its batch keys. */
export const processNodeId = (node: string, i: number): string => `${node}-p${i}`;

/** A crashed process is restarted after BACKOFF.serviceRestart; 5 crashes of one within 2 minutes stop them all. */
export const PROCESS_RESTARTS: RestartPolicy = { backoff: BACKOFF.serviceRestart, maxCrashes: 5, windowMs: 120_000 };

/** Longest node id (shared/config-fields.ts `nodeId`). */
const NODE_ID_MAX = 64;

export interface IngestProcessesOptions {
  /** How many processes (at least 2; one process runs in `sluice ingest` itself). */
  processes: number;
  /** The node id the processes' ids are derived from (SLUICE_NODE_ID). */
  node: string;
  /** Where all processes listen (SLUICE_INGEST_HOST, SLUICE_INGEST_PORT; port 0 = a free port, chosen once and kept). */
  host: string;
  port: number;
  /** Arguments of the entry file that make one process a single node (`['ingest']`). */
  args: string[];
  /** Restart backoff and crash loop limit, per process (default PROCESS_RESTARTS). */
  policy?: RestartPolicy;
  readyTimeoutMs?: number;
  log: Logger;
  /**
   * Called once when the processes cannot go on: one crash-looped, or was refused at start (exit code 2, e.g. its WAL
   * folder is held by a live process). The caller stops the others (stop()) and exits with `exitCode`.
   */
  onFatal(reason: string, exitCode: number): void;
}

interface Slot {
  index: number;
  node: string;
  worker: Worker | undefined;
  exited: Promise<number | null> | undefined;
  crashes: number[];
  restarts: number;
  /** Reported ready at least once: from then on its exits are crashes to restart (before, start() reports them). */
  started: boolean;
  /** The process that reported ready, while it runs (a restart in progress leaves it undefined). */
  serving: Worker | undefined;
  restartTimer: NodeJS.Timeout | undefined;
}

const isReady = (m: unknown): m is { ready: true; url?: string } => typeof m === 'object' && m !== null && (m as { ready?: unknown }).ready === true;

/** The primary of `sluice ingest --processes N`: starts, restarts and stops its processes. */
export class IngestProcesses {
  private readonly slots: Slot[];
  private port: number;
  private stopping = false;
  private fatal = false;
  private stopMetrics: (() => void) | undefined;
  url = '';

  constructor(private readonly o: IngestProcessesOptions) {
    if (!Number.isInteger(o.processes) || o.processes < 2) throw new ConfigError(`--processes must be an integer of at least 2 here, got ${o.processes}`);
    const longest = processNodeId(o.node, o.processes - 1);
    if (longest.length > NODE_ID_MAX) {
      throw new ConfigError(
        `SLUICE_NODE_ID "${o.node}" is too long for ${o.processes} processes: their node ids (${longest}) must have at most ${NODE_ID_MAX} characters; shorten it`,
      );
    }
    this.port = o.port;
    this.slots = Array.from({ length: o.processes }, (_, index) => ({
      index,
      node: processNodeId(o.node, index),
      worker: undefined,
      exited: undefined,
      crashes: [],
      restarts: 0,
      started: false,
      serving: undefined,
      restartTimer: undefined,
    }));
  }

  /** The node ids of the processes, in order. */
  get nodes(): string[] {
    return this.slots.map((s) => s.node);
  }

  /**
   * Starts every process and resolves with the URL once all of them serve. When one cannot start, the others are
   * stopped and the error names it (a ConfigError when it refused to start: exit code 2).
   */
  async start(): Promise<string> {
    // Round-robin is Node's default on Linux unless NODE_CLUSTER_SCHED_POLICY says otherwise; see the file header.
    cluster.schedulingPolicy = cluster.SCHED_RR;
    cluster.setupPrimary({ exec: process.argv[1], args: this.o.args, execArgv: process.execArgv });
    this.stopMetrics ??= serveClusterMetrics({ unavailable: () => this.notSummable() });
    // Every process listens on the same concrete port, also after a restart: the primary keeps one listening handle
    // per address and port, and a restart asking for port 0 would not join the handle of a port chosen earlier.
    if (this.port === 0) this.port = await freePort(this.o.host);
    const started = await Promise.allSettled(this.slots.map((s) => this.spawn(s)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const urls = new Set(started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])));
    if (failed || urls.size !== 1) {
      await this.stop();
      if (failed) throw failed.reason;
      throw new Error(`the ingest processes listen on different addresses (${[...urls].join(', ')}); expected one shared port`);
    }
    this.url = [...urls][0]!;
    this.port = Number(new URL(this.url).port);
    return this.url;
  }

  /** Forks the process of `slot` and resolves with its URL once it reports ready. */
  private spawn(slot: Slot): Promise<string> {
    const worker = cluster.fork({ SLUICE_NODE_ID: slot.node, SLUICE_INGEST_PORT: String(this.port) });
    slot.worker = worker;
    slot.exited = new Promise((resolve) => worker.once('exit', (code) => resolve(code)));
    worker.once('exit', (code, signal) => {
      if (slot.serving === worker) slot.serving = undefined;
      this.onExit(slot, worker, code, signal);
    });
    const timeoutMs = this.o.readyTimeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done(new Error(`ingest process ${slot.node} did not report ready within ${timeoutMs / 1000}s`));
        worker.process.kill('SIGKILL');
      }, timeoutMs);
      const onMessage = (m: unknown) => {
        if (isReady(m)) done(undefined, m.url ?? '');
      };
      const onExit = (code: number | null, signal: string | null) => {
        const how = signal ?? `code ${code}`;
        done(
          code === 2
            ? new ConfigError(`ingest process ${slot.node} refused to start (${how}); its reason is printed above`)
            : new Error(`ingest process ${slot.node} exited (${how}) while starting`),
        );
      };
      const done = (err?: Error, url?: string) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        if (err) reject(err);
        else {
          slot.started = true;
          slot.serving = worker;
          this.o.log.info({ node: slot.node, childPid: worker.process.pid, url, restarts: slot.restarts }, `ingest process ${slot.node} started`);
          resolve(url!);
        }
      };
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });
  }

  private onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (this.stopping || this.fatal || slot.worker !== worker || !slot.started) return;
    slot.worker = undefined;
    const how = signal ?? `code ${code}`;
    if (code === 2) {
      this.giveUp(`ingest process ${slot.node} refused to start again (${how}); its reason is printed above`, 2);
      return;
    }
    const policy = this.o.policy ?? PROCESS_RESTARTS;
    const now = Date.now();
    slot.crashes = [...slot.crashes.filter((at) => now - at < policy.windowMs), now];
    if (slot.crashes.length >= policy.maxCrashes) {
      this.giveUp(`ingest process ${slot.node} crashed ${slot.crashes.length} times within ${policy.windowMs / 1000}s`, 1);
      return;
    }
    const delayMs = backoffMs(slot.crashes.length - 1, policy.backoff);
    slot.restarts++;
    this.o.log.error(
      { node: slot.node, childPid: worker.process.pid, code, signal, restarts: slot.restarts, restartInMs: Math.round(delayMs) },
      `ingest process ${slot.node} exited unexpectedly (${how}); restarting it under the same id in ${Math.round(delayMs)} ms`,
    );
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopping || this.fatal) return;
      // A restart that fails exits, and that exit counts as one more crash (above), logged there.
      this.spawn(slot).catch(() => undefined);
    }, delayMs);
  }

  /** Why the processes' metrics cannot be summed now (one is not serving: it would not answer), or undefined. */
  private notSummable(): string | undefined {
    if (this.stopping || this.fatal) return 'the ingest processes are stopping';
    const missing = this.slots.find((s) => s.serving === undefined || !s.serving.isConnected());
    return missing ? `ingest process ${missing.node} is not serving (starting or restarting)` : undefined;
  }

  private giveUp(reason: string, exitCode: number): void {
    this.fatal = true;
    this.o.log.error({ reason }, `${reason}; stopping the other ingest processes`);
    this.o.onFatal(reason, exitCode);
  }

  /**
   * Stops every process: SIGTERM, so each stops accepting, finishes its requests, seals and delivers its WAL and
   * exits. Resolves once all exited: true when every one exited with code 0.
   */
  async stop(): Promise<boolean> {
    this.stopping = true;
    const running = this.slots.filter((s) => {
      clearTimeout(s.restartTimer);
      return s.worker !== undefined && s.worker.process.exitCode === null && s.worker.process.signalCode === null;
    });
    for (const s of running) s.worker!.process.kill('SIGTERM');
    const codes = await Promise.all(running.map((s) => s.exited!));
    this.stopMetrics?.();
    this.stopMetrics = undefined;
    return codes.every((c) => c === 0);
  }
}

/** A port free on `host` right now (for port 0: the processes must all ask for the same concrete port). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
