// Sluice dashboard: polls the query API and keeps the last minutes of operational numbers in memory, drawn with
// uPlot. Every number shown is an API answer as received (counters become rates between two polls); nothing is
// estimated in the page. URL parameters: entity, eventType (preselect an entity), refresh (poll period in ms).
// Operators see internal URLs and error texts after storing their key in this browser:
// localStorage.setItem('sluice.operatorKey', '<one of SLUICE_OPERATOR_KEYS>').
// With SLUICE_QUERY_API_KEYS set, the API answers 401 until the browser signs in (/dashboard/login keeps the key in an
// HttpOnly cookie this script never sees); the header then names the key and offers to sign out.
'use strict';
(() => {
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.max(250, Number(params.get('refresh')) || 2000);
  const HISTORY = 300;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const fmt = (n, digits = 0) => (n === null || n === undefined || Number.isNaN(n) ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, useGrouping: false }));

  // ---- errors: one line per failing source, cleared when it answers again ------------------
  const errors = new Map();
  const showErrors = () => { $('errors').textContent = [...errors.values()].filter(Boolean).join('\n'); };
  async function getJson(path, source, headers = {}) {
    try {
      const res = await fetch(path, { cache: 'no-store', headers });
      if (res.status === 401) location.assign('/dashboard/login'); // signed out, or the key was revoked
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error || body.message || `HTTP ${res.status}`);
      errors.delete(source);
      return body;
    } catch (err) {
      errors.set(source, `${path}: ${err.message}`);
      return undefined;
    } finally {
      showErrors();
    }
  }

  // ---- charts ------------------------------------------------------------------------------
  const charts = [];
  function makeChart(el, series, axes) {
    const opts = {
      width: Math.max(300, el.clientWidth), height: 220,
      scales: { x: { time: true } },
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, scale: s.scale || 'y', spanGaps: true, points: { show: false } }))],
      axes: [{}, ...(axes || [{ scale: 'y' }])],
      legend: { live: false },
    };
    const chart = new uPlot(opts, [[], ...series.map(() => [])], el);
    charts.push({ chart, el });
    return chart;
  }
  window.addEventListener('resize', () => { for (const { chart, el } of charts) chart.setSize({ width: Math.max(300, el.clientWidth), height: 220 }); });

  const throughput = makeChart($('chart-throughput'), [{ label: 'ingest', color: '#5b8def' }, { label: 'processed', color: '#2e7d32' }]);
  const queue = makeChart($('chart-queue'), [
    { label: 'visible', color: '#f59e0b', scale: 'msgs' },
    { label: 'in flight', color: '#8b5cf6', scale: 'msgs' },
    { label: 'workers', color: '#1d2330', scale: 'workers' },
    { label: 'desired', color: '#94a3b8', scale: 'workers' },
  ], [{ scale: 'msgs' }, { scale: 'workers', side: 1, grid: { show: false } }]);
  const freshness = makeChart($('chart-freshness'), [{ label: 'freshness', color: '#0ea5e9' }, { label: 'oldest message', color: '#f97316' }]);
  const entityChart = makeChart($('chart-entity'), [{ label: 'count', color: '#5b8def' }]);

  // ---- operations: /v1/ops/summary --------------------------------------------------------
  const hist = { t: [], ingest: [], processed: [], visible: [], inFlight: [], workers: [], desired: [], freshness: [], oldest: [] };
  let prev;
  const rate = (now, before, dt) => (now === null || before === null || before === undefined || now < before || dt <= 0 ? null : (now - before) / dt);

  async function pollOps() {
    let operatorKey = null;
    try { operatorKey = localStorage.getItem('sluice.operatorKey'); } catch { /* storage disabled: public view */ }
    const s = await getJson('/v1/ops/summary', 'ops', operatorKey ? { authorization: `Bearer ${operatorKey}` } : {});
    if (!s) return;
    const t = Date.parse(s.time) / 1000;
    if (prev && t <= prev.t) return; // the same cached summary as last time
    const dt = prev ? t - prev.t : 0;
    const ingestRate = prev ? rate(s.ingest.eventsAccepted, prev.ingest, dt) : null;
    const processRate = prev ? rate(s.fleet.eventsProcessed, prev.processed, dt) : null;
    prev = { t, ingest: s.ingest.eventsAccepted, processed: s.fleet.eventsProcessed };
    const w = s.fleet.workers;
    const row = {
      t, ingest: ingestRate, processed: processRate,
      visible: s.queue ? s.queue.visible : null, inFlight: s.queue ? s.queue.inFlight : null,
      workers: w ? w.running : null, desired: s.fleet.desiredWorkers,
      freshness: s.fleet.freshnessSeconds, oldest: s.fleet.oldestMessageAgeSeconds,
    };
    for (const k of Object.keys(hist)) { hist[k].push(row[k]); if (hist[k].length > HISTORY) hist[k].shift(); }
    throughput.setData([hist.t, hist.ingest, hist.processed]);
    queue.setData([hist.t, hist.visible, hist.inFlight, hist.workers, hist.desired]);
    freshness.setData([hist.t, hist.freshness, hist.oldest]);

    if (ingestRate !== null) $('ingest-rate').textContent = fmt(ingestRate);
    if (processRate !== null) $('process-rate').textContent = fmt(processRate);
    $('queue-visible').textContent = fmt(row.visible);
    $('queue-inflight').textContent = fmt(row.inFlight);
    $('workers').textContent = fmt(row.workers);
    $('workers-desired').textContent = fmt(row.desired);
    $('freshness').textContent = fmt(row.freshness, 1);
    $('oldest-age').textContent = fmt(row.oldest, 1);
    const dead = s.deadLetters ? s.deadLetters.visible + s.deadLetters.inFlight : null;
    $('dead-letters').textContent = fmt(dead);
    $('dead-letters-tile').classList.toggle('alert', dead > 0);
    $('ingest-503').textContent = fmt(s.ingest.requests503);
    errors.set('ops-parts', s.errors.join('\n'));
    showErrors();
    const st = $('updated');
    st.textContent = `updated ${new Date(s.time).toLocaleTimeString()}` + (s.ingest.up ? '' : ' · ingest unreachable') + (s.fleet.up ? '' : ' · fleet unreachable');
    st.classList.toggle('bad', !s.ingest.up || !s.fleet.up);
  }

  // ---- heavy hitters: /v1/topk ------------------------------------------------------------
  async function pollTopK() {
    const type = $('topk-type').value.trim() || 'view';
    const r = await getJson(`/v1/topk?eventType=${enc(type)}&window=${enc($('topk-window').value)}&k=${enc($('topk-k').value || '10')}`, 'topk');
    if (!r) return;
    const top = r.items.length ? r.items[0].count : 1;
    const body = $('topk-table').tBodies[0];
    body.replaceChildren(...r.items.map((item, i) => {
      const tr = document.createElement('tr');
      tr.dataset.entity = item.entityId;
      const cells = [String(i + 1), item.entityId, fmt(item.count)];
      ['rank', 'entity', 'count'].forEach((cls, j) => { const td = document.createElement('td'); td.className = cls; td.textContent = cells[j]; tr.append(td); });
      const barCell = document.createElement('td');
      const bar = document.createElement('div');
      bar.className = 'bar';
      bar.style.width = `${Math.max(1, (100 * item.count) / top)}%`;
      barCell.append(bar);
      tr.append(barCell);
      tr.addEventListener('click', () => { $('entity-id').value = item.entityId; $('entity-type').value = type; void pollEntity(); });
      return tr;
    }));
  }

  // ---- one entity: /v1/stats + /v1/entities/:id/total -------------------------------------
  async function pollEntity() {
    const id = $('entity-id').value.trim();
    if (!id) return;
    const type = $('entity-type').value.trim() || 'view';
    const fn = $('entity-fn').value;
    const to = Date.now();
    const from = to - Number($('entity-range').value);
    const [st, total] = await Promise.all([
      getJson(`/v1/stats?entityId=${enc(id)}&eventType=${enc(type)}&fn=${enc(fn)}&from=${from}&to=${to}`, 'stats'),
      getJson(`/v1/entities/${enc(id)}/total?eventType=${enc(type)}`, 'total'),
    ]);
    if (st) {
      // The chosen range end to end (empty ends), so a single minute of data is not stretched across the chart.
      const xs = [Date.parse(st.from) / 1000, ...st.points.map((p) => Date.parse(p.t) / 1000), Date.parse(st.to) / 1000];
      entityChart.setData([xs, [null, ...st.points.map((p) => p.value), null]]);
      $('entity-range-total').textContent = fmt(st.total, 3);
    }
    if (total) $('entity-total').textContent = fmt(total.count);
  }

  // ---- signed-in key (only while the API requires keys; 404 otherwise) ----------------------
  fetch('/dashboard/session', { cache: 'no-store' })
    .then((res) => (res.ok ? res.json() : undefined))
    .then((s) => {
      if (!s || !s.key) return;
      $('signed-in').textContent = `key ${s.key}` + (s.entityPrefixes ? ` · entities ${s.entityPrefixes.join(', ')}…` : '');
      $('signout').hidden = false;
    })
    .catch(() => { /* not signed in: the data calls redirect */ });

  // ---- wiring ------------------------------------------------------------------------------
  if (params.get('entity')) $('entity-id').value = params.get('entity');
  if (params.get('eventType')) { $('entity-type').value = params.get('eventType'); $('topk-type').value = params.get('eventType'); }
  $('entity-form').addEventListener('submit', (e) => { e.preventDefault(); void pollEntity(); });
  $('topk-form').addEventListener('change', () => void pollTopK());
  $('topk-form').addEventListener('submit', (e) => { e.preventDefault(); void pollTopK(); });

  function every(ms, fn) {
    const run = async () => { try { await fn(); } finally { setTimeout(run, ms); } };
    void run();
  }
  every(REFRESH_MS, pollOps);
  every(REFRESH_MS, pollTopK);
  every(REFRESH_MS, pollEntity);
})();
