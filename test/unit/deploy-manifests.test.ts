// The Kubernetes manifests, the KEDA ScaledObject and the Prometheus alerts, checked without a cluster: they parse,
// every pod has probes on a declared port and the settings it needs, ingest keeps a WAL volume and a stable node id,
// workers outlive the visibility timeout on shutdown, KEDA scales with the fleet's formulas (queue depth, oldest
// message age) and defaults, and every alert reads a metric that Sluice exports.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT, SETTINGS, loadConfig, RESOURCES } from '../../shared/config.js';
import { parseDuration } from '../../shared/config-fields.js';

/** Free-form YAML objects. */
type Obj = Record<string, any>;
const K8S = path.join(PROJECT_ROOT, 'deploy', 'k8s');
const docs: Obj[] = readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) =>
    parseAllDocuments(readFileSync(path.join(K8S, f), 'utf8')).map((d) => {
      if (d.errors.length) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as Obj;
    }),
  );
const find = (kind: string, name: string): Obj => {
  const o = docs.find((d) => d.kind === kind && d.metadata?.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return o;
};
const workloads = docs.filter((d) => ['Deployment', 'StatefulSet'].includes(d.kind));
const configMap = find('ConfigMap', 'sluice-config');
const seconds = (name: keyof typeof SETTINGS) => parseDuration(String(configMap.data[name] ?? SETTINGS[name].fallback))! / 1000;

describe('Kubernetes manifests', () => {
  it('declare every object with apiVersion, kind and name', () => {
    expect(docs.length).toBeGreaterThanOrEqual(9);
    for (const d of docs) expect(d).toMatchObject({ apiVersion: expect.any(String), kind: expect.any(String), metadata: { name: expect.any(String) } });
    expect(workloads.map((w) => `${w.kind}/${w.metadata.name}`).sort()).toEqual([
      'Deployment/sluice-query',
      'Deployment/sluice-worker',
      'StatefulSet/sluice-ingest',
    ]);
  });

  it('hold a ConfigMap that Sluice accepts as its configuration', () => {
    for (const key of Object.keys(configMap.data)) expect(Object.keys(SETTINGS)).toContain(key);
    expect(() => loadConfig({ ...configMap.data, SLUICE_NODE_ID: 'sluice-ingest-0' })).not.toThrow();
  });

  it('run each role with the config, liveness on /healthz and readiness on /readyz of a declared port', () => {
    for (const w of workloads) {
      const spec = w.spec.template.spec;
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels)) expect(w.spec.template.metadata.labels[k], `${w.metadata.name} selector`).toBe(v);
      expect(spec.containers).toHaveLength(1);
      const c = spec.containers[0];
      expect(['ingest', 'worker', 'query']).toContain(c.args[0]);
      expect(c.envFrom).toContainEqual({ configMapRef: { name: 'sluice-config' } });
      const ports = (c.ports as Obj[]).map((p) => p.name);
      expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz' });
      expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz' });
      expect(ports).toContain(c.livenessProbe.httpGet.port);
      expect(ports).toContain(c.readinessProbe.httpGet.port);
      expect(docs.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === spec.serviceAccountName)).toBe(true);
    }
  });

  it('give each ingest pod its own WAL volume at SLUICE_DATA_DIR and its pod name as node id', () => {
    const ingest = find('StatefulSet', 'sluice-ingest');
    const c = ingest.spec.template.spec.containers[0];
    const claim = ingest.spec.volumeClaimTemplates[0];
    expect(claim.spec.accessModes).toContain('ReadWriteOnce');
    expect(c.volumeMounts).toContainEqual({ name: claim.metadata.name, mountPath: configMap.data.SLUICE_DATA_DIR });
    expect(c.env).toContainEqual({ name: 'SLUICE_NODE_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    expect(find('Service', ingest.spec.serviceName).spec.clusterIP).toBe('None');
    expect(configMap.data.SLUICE_INGEST_HOST).toBe('0.0.0.0');
  });

  it('run one ingest process per pod (scaled by replicas), not one per CPU of the host the pod lands on', () => {
    const c = find('StatefulSet', 'sluice-ingest').spec.template.spec.containers[0];
    expect(configMap.data.SLUICE_INGEST_PROCESSES).toBe('1');
    expect(c.args).toEqual(['ingest']); // no --processes overriding it
    expect((c.env as Obj[]).map((e) => e.name)).not.toContain('SLUICE_INGEST_PROCESSES');
    expect(loadConfig({ ...configMap.data, SLUICE_NODE_ID: 'sluice-ingest-0' }).SLUICE_INGEST_PROCESSES).toBe(1);
  });

  it('let a worker outlive the visibility timeout and its own shutdown grace when stopped', () => {
    const grace = find('Deployment', 'sluice-worker').spec.template.spec.terminationGracePeriodSeconds;
    expect(grace).toBeGreaterThanOrEqual(seconds('SLUICE_VISIBILITY_TIMEOUT'));
    expect(grace).toBeGreaterThan(seconds('SLUICE_WORKER_SHUTDOWN_GRACE'));
    expect(seconds('SLUICE_VISIBILITY_TIMEOUT')).toBe(RESOURCES.queues.batches.visibilityTimeoutSeconds);
  });

  it('expose the query API through a Service that selects its pods', () => {
    const svc = find('Service', 'sluice-query');
    const pods = find('Deployment', 'sluice-query').spec.template;
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(pods.metadata.labels[k]).toBe(v);
    expect(pods.spec.containers[0].ports.map((p: Obj) => p.name)).toContain(svc.spec.ports[0].targetPort);
    expect(configMap.data.SLUICE_QUERY_HOST).toBe('0.0.0.0');
  });

  it('take the keys of ingest and the query API from Secrets, never starting either anonymously', () => {
    const envOf = (kind: string, name: string) => find(kind, name).spec.template.spec.containers[0].env as Obj[];
    for (const [kind, name, setting] of [
      ['StatefulSet', 'sluice-ingest', 'SLUICE_API_KEYS'],
      ['Deployment', 'sluice-query', 'SLUICE_QUERY_API_KEYS'],
    ] as const) {
      const env = envOf(kind, name);
      const keys = env.find((e) => e.name === setting);
      expect(keys, `${name} ${setting}`).toMatchObject({ valueFrom: { secretKeyRef: { name: expect.any(String), key: setting } } });
      expect(keys!.value, `${name} ${setting} is not written in the manifest`).toBeUndefined();
      expect(env.map((e) => e.name)).not.toContain('SLUICE_ALLOW_ANONYMOUS');
    }
    expect(configMap.data).not.toHaveProperty('SLUICE_ALLOW_ANONYMOUS');
    expect(configMap.data).not.toHaveProperty('SLUICE_API_KEYS');
    expect(configMap.data).not.toHaveProperty('SLUICE_QUERY_API_KEYS');
  });

  it('scale workers with KEDA by the same formula and defaults as `sluice fleet`', () => {
    const so = find('ScaledObject', 'sluice-worker');
    expect(so.apiVersion).toBe('keda.sh/v1alpha1');
    expect(so.spec.scaleTargetRef.name).toBe(find('Deployment', 'sluice-worker').metadata.name);
    expect(so.spec.minReplicaCount).toBe(Number(SETTINGS.SLUICE_FLEET_MIN.fallback));
    expect(so.spec.maxReplicaCount).toBe(Number(SETTINGS.SLUICE_FLEET_MAX.fallback));
    expect(so.spec.pollingInterval).toBe(parseDuration(SETTINGS.SLUICE_FLEET_POLL_INTERVAL.fallback)! / 1000);
    expect(so.spec.triggers.map((t: Obj) => t.type)).toEqual(['aws-sqs-queue', 'prometheus']);
    const [trigger] = so.spec.triggers;
    expect(trigger.type).toBe('aws-sqs-queue');
    expect(trigger.metadata).toMatchObject({
      queueLength: SETTINGS.SLUICE_FLEET_TARGET_PER_WORKER.fallback,
      scaleOnInFlight: 'true',
      awsRegion: configMap.data.AWS_REGION,
    });
    expect(trigger.metadata.queueURL).toMatch(new RegExp(`/${configMap.data.SLUICE_QUEUE_NAME}$`));
    expect(find('TriggerAuthentication', trigger.authenticationRef.name).spec.podIdentity.provider).toBe('aws');
    // Down: one pod per cooldown after a cooldown of low demand, like the fleet; up: at once.
    const cooldown = parseDuration(SETTINGS.SLUICE_FLEET_COOLDOWN.fallback)! / 1000;
    const behavior = so.spec.advanced.horizontalPodAutoscalerConfig.behavior;
    expect(behavior.scaleDown.stabilizationWindowSeconds).toBe(cooldown);
    expect(behavior.scaleDown.policies).toEqual([{ type: 'Pods', value: 1, periodSeconds: cooldown }]);
    expect(behavior.scaleUp.stabilizationWindowSeconds).toBe(0);
  });

  it('scale workers with KEDA on the oldest message age by the same rule and target as `sluice fleet`', () => {
    const age = find('ScaledObject', 'sluice-worker').spec.triggers.find((t: Obj) => t.type === 'prometheus');
    expect(age, 'a prometheus trigger on the oldest message age').toBeDefined();
    // Value, not the default AverageValue: desired = ceil(ready pods × age / threshold), the fleet's rule (ageWants).
    expect(age.metricType).toBe('Value');
    // The threshold is SLUICE_FLEET_MAX_AGE in seconds, as the manifests' config gives it (ConfigMap, else default).
    expect(typeof age.metadata.threshold).toBe('string');
    expect(Number(age.metadata.threshold)).toBe(seconds('SLUICE_FLEET_MAX_AGE'));
    expect(seconds('SLUICE_FLEET_MAX_AGE')).toBeGreaterThan(0);
    // The fleet's own gauge where one runs, else the workers' oldest batch; both are exported by Sluice.
    const query = String(age.metadata.query);
    expect(query).toMatch(/\bsluice_queue_oldest_message_age_seconds\b/);
    expect(query).toMatch(/\bsluice_worker_oldest_message_age_seconds\b/);
    const sources = ['workers/fleet/fleet-metrics.ts', 'workers/worker-metrics.ts'].map((f) => readFileSync(path.join(PROJECT_ROOT, f), 'utf8')).join('\n');
    for (const [name] of query.matchAll(/\bsluice_[a-z0-9_]+/g)) expect(sources, `${name} is not defined in the code`).toContain(`name: '${name}'`);
    // No data (no fleet, no worker scraped yet) reads as 0: the depth alone decides, as in the fleet.
    expect(age.metadata.ignoreNullValues).toBe('true');
    expect(age.metadata.serverAddress).toMatch(/^https?:\/\/\S+$/);
  });

  it('ship the dashboard files in the image', () => {
    expect(readFileSync(path.join(PROJECT_ROOT, 'deploy', 'Dockerfile'), 'utf8')).toMatch(/COPY --from=build \/app\/query\/dashboard \.\/query\/dashboard/);
  });
});

describe('Prometheus alerts', () => {
  const rules: Obj[] = (parse(readFileSync(path.join(PROJECT_ROOT, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as Obj).groups.flatMap((g: Obj) => g.rules);
  const sources = ['shared', 'ingest', 'workers', 'query']
    .flatMap((dir) =>
      readdirSync(path.join(PROJECT_ROOT, dir), { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.ts'))
        .map((f) => readFileSync(path.join(PROJECT_ROOT, dir, f), 'utf8')),
    )
    .join('\n');

  it('cover queue age, dead letters, freshness, ingest 503s and missing workers', () => {
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['SluiceQueueAgeHigh', 'SluiceDeadLettersPresent', 'SluiceFreshnessAboveTarget', 'SluiceIngestRejecting', 'SluiceNoWorkers']),
    );
  });

  it('are complete: expression, duration, severity, summary and description', () => {
    for (const r of rules) {
      expect(r, r.alert).toMatchObject({
        alert: expect.stringMatching(/^Sluice[A-Z]\w+$/),
        expr: expect.any(String),
        for: expect.stringMatching(/^\d+[smh]$/),
      });
      expect(['page', 'ticket']).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
      expect(r.annotations.description, r.alert).toBeTruthy();
    }
  });

  it('read only metrics that Sluice exports', () => {
    const used = new Set(rules.flatMap((r) => [...String(r.expr).matchAll(/\bsluice_[a-z0-9_]+/g)].map((m) => m[0])));
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(sources, `${name} is not defined in the code`).toContain(`name: '${name.replace(/_(bucket|sum|count)$/, '')}'`);
  });
});
