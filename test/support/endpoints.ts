// Endpoints of the services used by the test run (distinct from the defaults of `npm start`).
export const TEST_ENDPOINTS = {
  influxUrl: process.env.SLUICE_TEST_INFLUX_URL ?? 'http://127.0.0.1:18086',
  redisUrl: process.env.SLUICE_TEST_REDIS_URL ?? 'redis://127.0.0.1:16379',
  awsEndpoint: process.env.SLUICE_TEST_AWS_ENDPOINT ?? 'http://127.0.0.1:14566',
};
