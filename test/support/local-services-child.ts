// A stand-in for `npm start` in a terminal (test/integration/local-services-ctrl-c.test.ts): starts a local Redis and
// the S3+SQS emulator on the given ports, with or without process groups of their own (argv: redis port, emulator
// port, data folder, "own" or "shared"), prints their pids as one JSON line, and waits to be stopped.
import { ensureEmulator, ensureRedis } from '../../localstack/services.js';
import { createLogger } from '../../shared/logger.js';

const [redisPort, emulatorPort, dir, groups] = process.argv.slice(2);
const log = createLogger('local-services-child', 'warn');
const o = { ownProcessGroup: groups === 'own' };
const [redis, emulator] = await Promise.all([
  ensureRedis(`redis://127.0.0.1:${redisPort}`, dir!, log, 0, o),
  ensureEmulator(`http://127.0.0.1:${emulatorPort}`, dir!, log, o),
]);
process.stdout.write(`${JSON.stringify({ redis: redis.pid, emulator: emulator.pid })}\n`);
setInterval(() => undefined, 1 << 30);
