// One local endpoint for both AWS services: SQS requests (JSON protocol x-amz-target AmazonSQS.*, or the query
// protocol's Action=) and /health go to the queue emulator, everything else to the object store. Bodies are piped,
// never buffered, so a large upload or download costs this process a socket buffer, not the object's size.
import http from 'node:http';

export interface Upstreams {
  sqsPort: number;
  s3Port: number;
}

const isSqs = (req: http.IncomingMessage) =>
  String(req.headers['x-amz-target'] ?? '').startsWith('AmazonSQS') || /[?&]Action=/.test(req.url ?? '') || req.url === '/health';

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/**
 * s3rver does not implement ListMultipartUploads (GET /<bucket>?uploads), which the MinIO client calls before every
 * multipart upload to resume an unfinished one. s3rver keeps no listable unfinished uploads, so "none" is the truth.
 */
function listUploadsBucket(req: http.IncomingMessage): string | undefined {
  if (req.method !== 'GET') return undefined;
  const m = /^\/([^/?]+)\/?\?(.*)$/.exec(req.url ?? '');
  return m && new URLSearchParams(m[2]).has('uploads') ? decodeURIComponent(m[1]!) : undefined;
}

function noUploads(res: http.ServerResponse, bucket: string): void {
  res.writeHead(200, { 'content-type': 'application/xml' });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${bucket}</Bucket>` +
      '<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>',
  );
}

export function startRouter(host: string, port: number, up: Upstreams): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const uploadsOf = listUploadsBucket(req);
    if (uploadsOf !== undefined) {
      req.resume();
      noUploads(res, uploadsOf);
      return;
    }
    const target = isSqs(req) ? up.sqsPort : up.s3Port;
    const fwd = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    fwd.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`local ${target === up.sqsPort ? 'SQS' : 'S3'} emulator on port ${target} did not answer: ${err.message}\n`);
    });
    req.pipe(fwd);
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
