// The read side of the Iceberg REST catalog protocol for the tables Sluice keeps, `sluice.events` (the archive) and
// `sluice.rollups` (hourly and daily aggregates), under /iceberg/v1 (clients use http://<query API>/iceberg as their
// catalog URI): config, namespaces, tables, and the LoadTableResult (metadata location + metadata) of a table's
// current version. Engines then read the manifests and data files from S3 themselves, with their own credentials.
// Writes are not offered: the tables are committed only by Sluice (workers/iceberg/). With SLUICE_QUERY_API_KEYS
// set, these routes need a key like every other (query/auth.ts); a key limited to some entities is refused, since
// the tables hold every entity. Errors use the protocol's shape.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import type { RedisClient } from '../../shared/clients/redis.js';
import { ICEBERG_NAMESPACE, ICEBERG_TABLES, isIcebergTableName, type IcebergTableName } from '../../shared/contracts/iceberg-table.js';
import { SluiceError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { TableReader } from './table-reader.js';

export const ICEBERG_CATALOG_PREFIX = '/iceberg/v1';

/** The endpoints this catalog serves, as GET /v1/config announces them (clients call no others). */
export const CATALOG_ENDPOINTS = [
  'GET /v1/{prefix}/namespaces',
  'GET /v1/{prefix}/namespaces/{namespace}',
  'HEAD /v1/{prefix}/namespaces/{namespace}',
  'GET /v1/{prefix}/namespaces/{namespace}/tables',
  'GET /v1/{prefix}/namespaces/{namespace}/tables/{table}',
  'HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}',
];

export interface CatalogRouteDeps {
  cfg: Config;
  redis: RedisClient;
  log: Logger;
}

type ErrorType = 'NoSuchNamespaceException' | 'NoSuchTableException' | 'BadRequestException' | 'ServiceUnavailableException' | 'InternalServerError';

function fail(reply: FastifyReply, code: number, type: ErrorType, message: string): FastifyReply {
  return reply.code(code).send({ error: { message, type, code } });
}

/** Whether a namespace path parameter (levels joined by the unit separator, %1F) is Sluice's one namespace. */
const isOurNamespace = (ns: string): boolean => ns === ICEBERG_NAMESPACE;

/** FileIO properties for clients reading the table's files (the S3 endpoint of a local or MinIO store). */
function fileIoConfig(cfg: CatalogRouteDeps['cfg']): Record<string, string> {
  return {
    'client.region': cfg.AWS_REGION,
    ...(cfg.AWS_ENDPOINT_URL ? { 's3.endpoint': cfg.AWS_ENDPOINT_URL, 's3.path-style-access': String(cfg.SLUICE_S3_FORCE_PATH_STYLE) } : {}),
  };
}

/** Registers the catalog under ICEBERG_CATALOG_PREFIX; its S3 client is closed with the server. */
export function registerIcebergCatalogRoutes(app: FastifyInstance, deps: CatalogRouteDeps): void {
  const s3 = createS3(deps.cfg);
  app.addHook('onClose', async () => s3.destroy());
  const readers = Object.fromEntries(
    ICEBERG_TABLES.map((table) => [
      table,
      new TableReader({ s3, redis: deps.redis, rawBucket: deps.cfg.SLUICE_RAW_BUCKET, redisPrefix: deps.cfg.SLUICE_REDIS_PREFIX, log: deps.log, table }),
    ]),
  ) as Record<IcebergTableName, TableReader>;
  const tableList = ICEBERG_TABLES.map((t) => `${ICEBERG_NAMESPACE}.${t}`).join(' and ');
  const noNamespace = (reply: FastifyReply, ns: string) =>
    fail(reply, 404, 'NoSuchNamespaceException', `Namespace does not exist: ${ns}; this catalog holds the namespace ${ICEBERG_NAMESPACE}`);

  app.register(
    async (scope) => {
      scope.setErrorHandler((err, req, reply) => {
        if (err instanceof SluiceError && err.retryable) {
          req.log.warn({ code: err.code, reason: err.message }, 'Iceberg catalog: a store is unavailable; answering 503');
          return fail(reply.header('retry-after', '5'), 503, 'ServiceUnavailableException', 'the table metadata store is temporarily unavailable; retry later');
        }
        req.log.error({ err }, 'Iceberg catalog request failed');
        return fail(reply, 500, 'InternalServerError', 'internal error; the query service logged the details');
      });

      scope.get('/config', async () => ({ defaults: {}, overrides: {}, endpoints: CATALOG_ENDPOINTS }));

      scope.get<{ Querystring: { parent?: string } }>('/namespaces', async (req, reply) => {
        const parent = req.query.parent;
        if (parent === undefined) return { namespaces: [[ICEBERG_NAMESPACE]] };
        if (!isOurNamespace(parent)) return noNamespace(reply, parent);
        return { namespaces: [] };
      });

      scope.route<{ Params: { ns: string } }>({
        method: ['GET', 'HEAD'],
        url: '/namespaces/:ns',
        handler: async (req, reply) => {
          if (!isOurNamespace(req.params.ns)) return noNamespace(reply, req.params.ns);
          if (req.method === 'HEAD') return reply.code(204).send();
          return { namespace: [ICEBERG_NAMESPACE], properties: { comment: 'Sluice event archive' } };
        },
      });

      scope.get<{ Params: { ns: string } }>('/namespaces/:ns/tables', async (req, reply) => {
        if (!isOurNamespace(req.params.ns)) return noNamespace(reply, req.params.ns);
        const loaded = await Promise.all(ICEBERG_TABLES.map((t) => readers[t].load()));
        return { identifiers: ICEBERG_TABLES.filter((_, i) => loaded[i]).map((name) => ({ namespace: [ICEBERG_NAMESPACE], name })) };
      });

      scope.route<{ Params: { ns: string; table: string } }>({
        method: ['GET', 'HEAD'],
        url: '/namespaces/:ns/tables/:table',
        handler: async (req, reply) => {
          const { ns, table } = req.params;
          if (!isOurNamespace(ns)) return noNamespace(reply, ns);
          const loaded = isIcebergTableName(table) ? await readers[table].load() : undefined;
          if (!loaded)
            return fail(
              reply,
              404,
              'NoSuchTableException',
              isIcebergTableName(table)
                ? `Table does not exist: ${ICEBERG_NAMESPACE}.${table} (nothing committed yet: run sluice iceberg commit)`
                : `Table does not exist: ${ns}.${table}; this catalog holds ${tableList}`,
            );
          const etag = `"v${loaded.version}"`;
          void reply.header('etag', etag);
          if (req.method === 'HEAD') return reply.code(204).send();
          if (req.headers['if-none-match'] === etag) return reply.code(304).send();
          return { 'metadata-location': loaded.metadataLocation, metadata: loaded.metadata, config: fileIoConfig(deps.cfg) };
        },
      });

      scope.all('/*', async (req, reply) =>
        fail(
          reply,
          404,
          'BadRequestException',
          `no such catalog endpoint: ${req.method} ${req.url.split('?')[0]}; this catalog serves ${CATALOG_ENDPOINTS.join(', ')}`,
        ),
      );
    },
    { prefix: ICEBERG_CATALOG_PREFIX },
  );
}
