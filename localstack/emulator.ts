// The local stack's AWS endpoint on loopback: objects in s3rver on disk (s3-server.ts, under SLUICE_EMULATOR_DIR),
// queues in fauxqs (in memory: a restart empties them, and `sluice reconcile` re-announces what they held), both
// behind one port (s3-sqs-router.ts). Used by `npm start` and the test run when no S3/SQS endpoint is answering.
import net from 'node:net';
import path from 'node:path';
import { startFauxqs } from 'fauxqs';
import { startS3Server } from './s3-server.js';
import { startRouter } from './s3-sqs-router.js';

// fauxqs itself listens on every interface; keep it on loopback (the router, on SLUICE_EMULATOR_HOST, reaches it there).
const host = process.env.SLUICE_EMULATOR_HOST ?? '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(this: net.Server, ...args: unknown[]) {
  const opts = args[0];
  if (opts && typeof opts === 'object' && (opts as net.ListenOptions).host === '0.0.0.0') {
    args[0] = { ...(opts as net.ListenOptions), host: '127.0.0.1' };
  }
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof net.Server.prototype.listen;

const port = Number(process.env.SLUICE_EMULATOR_PORT ?? 4566);
const directory = path.resolve(process.env.SLUICE_EMULATOR_DIR ?? '.data/s3');
const sqs = await startFauxqs({ port: 0, logger: false, host: '127.0.0.1' });
const s3 = await startS3Server({ directory, host: '127.0.0.1', port: 0 });
const router = await startRouter(host, port, { sqsPort: sqs.port, s3Port: s3.port });
process.stdout.write(`S3 (s3rver, data in ${directory}) and SQS (fauxqs) listening on http://${host}:${port}\n`);
const stop = () => {
  router.close();
  void Promise.allSettled([sqs.stop(), s3.close()]).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
