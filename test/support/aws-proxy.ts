// An HTTP proxy in front of the S3+SQS emulator that can take S3 or SQS down on its own (connections of the failed
// service are reset), so a test can fail one dependency of a real ingest node while the other keeps working.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type ProxyMode = 'up' | 's3-down' | 'sqs-down' | 'all-down';

export interface AwsProxy {
  url: string;
  mode: ProxyMode;
  close(): Promise<void>;
}

/** SQS requests are POSTs to the queue API (JSON protocol: x-amz-target AmazonSQS.*; query protocol: Action=…). */
const isSqs = (req: http.IncomingMessage) => String(req.headers['x-amz-target'] ?? '').startsWith('AmazonSQS') || /[?&]Action=/.test(req.url ?? '');

export async function startAwsProxy(target: string): Promise<AwsProxy> {
  const t = new URL(target);
  const proxy: AwsProxy = { url: '', mode: 'up', close: async () => undefined };
  const server = http.createServer((req, res) => {
    const sqs = isSqs(req);
    if (proxy.mode === 'all-down' || (sqs && proxy.mode === 'sqs-down') || (!sqs && proxy.mode === 's3-down')) {
      req.socket.destroy();
      return;
    }
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return proxy;
}
