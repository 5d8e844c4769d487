// The live operations dashboard at GET /: a static page (query/dashboard/) that polls the query API — /v1/ops/summary
// for throughput, queue, workers, freshness and dead letters, /v1/topk and /v1/stats for the data — and draws it with
// uPlot, served from node_modules (no CDN, no build step). Files are read once at start-up.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { PROJECT_ROOT, type Config } from '../shared/config.js';
import type { prom } from '../shared/metrics.js';
import { registerOpsSummaryRoute } from './ops-summary.js';

export interface DashboardDeps {
  cfg: Config;
  registry: prom.Registry;
}

const PAGE_DIR = path.join(PROJECT_ROOT, 'query', 'dashboard');
const UPLOT_DIST = path.join(path.dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');

/** URL path → file and content type. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: path.join(PAGE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: path.join(PAGE_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard/vendor/uPlot.iife.min.js': { file: path.join(UPLOT_DIST, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard/vendor/uPlot.min.css': { file: path.join(UPLOT_DIST, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

export function registerDashboard(app: FastifyInstance, deps: DashboardDeps): void {
  for (const [route, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(file);
    app.get(route, async (_req, reply) => reply.header('content-type', type).header('cache-control', 'no-cache').send(body));
  }
  registerOpsSummaryRoute(app, deps);
}
