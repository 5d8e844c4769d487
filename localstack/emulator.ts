// Runs the fauxqs S3+SQS emulator bound to loopback only (fauxqs itself listens on every interface).
// Used by `sluice start` and the test run when no S3/SQS endpoint is answering. State is in memory.
import net from 'node:net';
import { startFauxqs } from 'fauxqs';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(this: net.Server, ...args: unknown[]) {
  const opts = args[0];
  if (opts && typeof opts === 'object' && (opts as net.ListenOptions).host === '0.0.0.0') {
    args[0] = { ...(opts as net.ListenOptions), host: process.env.SLUICE_EMULATOR_HOST ?? '127.0.0.1' };
  }
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof net.Server.prototype.listen;

const port = Number(process.env.SLUICE_EMULATOR_PORT ?? 4566);
const server = await startFauxqs({ port, logger: false, host: '127.0.0.1' });
process.stdout.write(`fauxqs listening on ${server.address}\n`);
const stop = () => {
  void server.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
