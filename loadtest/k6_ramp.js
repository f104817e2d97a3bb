// Ramping single-event load against Telemetron's POST /ingest, on loopback only.
//
//     k6 run -e TARGET=http://127.0.0.1:8080 loadtest/k6_ramp.js
//
// The arrival rate climbs from START_RATE to PEAK_RATE requests/s over RAMP_DURATION, then
// stays at PEAK_RATE for HOLD_DURATION. Each request carries one event. `bash
// loadtest/k6_ramp.sh` starts a server, runs this script and compares the 202 count with
// GET /stats. Every setting below is read from the environment (`-e NAME=value` or an
// exported variable):
//
//   TARGET             base URL; its host must be 127.0.0.1, localhost or [::1]  (http://127.0.0.1:8080)
//   START_RATE         requests/s at the start                                   (1000)
//   PEAK_RATE          requests/s at the end of the ramp and during the hold     (20000)
//   RAMP_DURATION      duration of the ramp, such as 30s, 500ms or 1m            (30s)
//   HOLD_DURATION      duration at PEAK_RATE                                     (30s)
//   PRE_ALLOCATED_VUS  VUs created before the start                              (50)
//   MAX_VUS            most VUs, and so most requests in flight                  (200)
//   P99_MS             threshold on the p99 latency of 202 responses, in ms      (50)
//   SUMMARY_JSON       file that receives the end-of-test summary as JSON        (k6-summary.json)
//
// When k6 cannot start an iteration on time because every VU is busy, it skips it and counts
// it in `dropped_iterations`. On a small machine k6 itself may be what limits the rate, so
// read the achieved `http_reqs` rate next to the planned one.

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

// Both counters are read by k6_ramp.sh from the summary JSON.
const accepted202 = new Counter('accepted_202');
const overloaded503 = new Counter('overloaded_503');

const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '[::1]'];
const DEFAULT_TARGET = 'http://127.0.0.1:8080';
const CUSTOM_TYPES = ['Login', 'DiskFull', 'ConfigChanged'];

// Upper bounds that keep a mistyped variable from starting an unbounded or runaway run.
const MAX_TOTAL_SECONDS = 600;
const MAX_RATE = 200000;
const MAX_VUS_LIMIT = 2000;

// k6 lets every iteration still running at the end of the stages finish within this
// time, so k6 counts the response to every request that the server accepted.
const GRACEFUL_STOP = '10s';
const REQUEST_TIMEOUT = '5s';

function readInteger(name, fallback, min, max) {
  const text = __ENV[name];
  if (text === undefined || text === '') {
    return fallback;
  }
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new Error(`${name}=${text} is invalid: expected an integer from ${min} to ${max}`);
  }
  return Number(text);
}

// Returns [text for k6, length in seconds] for values such as 30s, 500ms or 2m.
function readDuration(name, fallback) {
  const text = __ENV[name] || fallback;
  const match = /^(\d+)(ms|s|m)$/.exec(text);
  if (match === null) {
    throw new Error(`${name}=${text} is invalid: expected a duration such as 30s, 500ms or 2m`);
  }
  const scale = { ms: 0.001, s: 1, m: 60 }[match[2]];
  return [text, Number(match[1]) * scale];
}

const startRate = readInteger('START_RATE', 1000, 1, MAX_RATE);
const peakRate = readInteger('PEAK_RATE', 20000, 1, MAX_RATE);
const [rampDuration, rampSeconds] = readDuration('RAMP_DURATION', '30s');
const [holdDuration, holdSeconds] = readDuration('HOLD_DURATION', '30s');
const maxVUs = readInteger('MAX_VUS', 200, 1, MAX_VUS_LIMIT);
const preAllocatedVUs = readInteger('PRE_ALLOCATED_VUS', Math.min(50, maxVUs), 1, maxVUs);
const p99Ms = readInteger('P99_MS', 50, 1, 60000);
const summaryJson = __ENV.SUMMARY_JSON || 'k6-summary.json';

if (rampSeconds + holdSeconds > MAX_TOTAL_SECONDS) {
  throw new Error(
    `RAMP_DURATION + HOLD_DURATION is ${rampSeconds + holdSeconds} s, over the maximum of ${MAX_TOTAL_SECONDS} s`,
  );
}

export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate',
      startRate,
      timeUnit: '1s',
      preAllocatedVUs,
      maxVUs,
      stages: [
        { target: peakRate, duration: rampDuration },
        { target: peakRate, duration: holdDuration },
      ],
      gracefulStop: GRACEFUL_STOP,
    },
  },
  thresholds: {
    // 503 is outside k6's expected range (200-399), so this latency covers 202 responses
    // only, and overload shows up in http_req_failed.
    'http_req_duration{expected_response:true}': [`p(99)<${p99Ms}`],
    http_req_failed: ['rate<0.01'],
    // The check passes for 202, and for 503 with Retry-After. Any other status is a defect.
    checks: ['rate==1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

// Returns the URL without a trailing slash, or throws when its host is not a loopback name or address.
function requireLoopback(target) {
  const match = /^http:\/\/(\[[^\]]*\]|[^/:?#]*)(:\d+)?\/?$/i.exec(target);
  if (match === null) {
    throw new Error(`TARGET=${target} is invalid: expected http://HOST[:PORT] with no path`);
  }
  const host = match[1].toLowerCase();
  if (!LOOPBACK_HOSTS.includes(host)) {
    throw new Error(
      `TARGET=${target} is rejected because its host ${host} is not one of ` +
        `${LOOPBACK_HOSTS.join(', ')}: this load test sends requests only to loopback`,
    );
  }
  return target.replace(/\/+$/, '');
}

export function setup() {
  const target = requireLoopback(__ENV.TARGET || DEFAULT_TARGET);

  const health = http.get(`${target}/healthz`, { timeout: '2s', tags: { name: 'healthz' } });
  if (health.status !== 200) {
    throw new Error(`GET ${target}/healthz returned status ${health.status}: start Telemetron first`);
  }
  return { target };
}

function randomEvent() {
  const sourceId = 1 + Math.floor(Math.random() * 1000);
  const type =
    Math.random() < 0.7 ? 'Heartbeat' : CUSTOM_TYPES[Math.floor(Math.random() * CUSTOM_TYPES.length)];
  return {
    sourceId,
    type,
    timestamp: new Date().toISOString(),
    data: { cpu: Math.round(Math.random() * 1000) / 1000, vu: __VU, iteration: __ITER },
  };
}

export default function (data) {
  const response = http.post(`${data.target}/ingest`, JSON.stringify(randomEvent()), {
    headers: { 'Content-Type': 'application/json' },
    timeout: REQUEST_TIMEOUT,
    // The checks need only the status and headers, so k6 skips storing the body.
    responseType: 'none',
    tags: { name: 'ingest' },
  });

  if (response.status === 202) {
    accepted202.add(1);
  } else if (response.status === 503) {
    overloaded503.add(1);
  }
  check(response, {
    'status is 202, or 503 with Retry-After': (r) =>
      r.status === 202 || (r.status === 503 && r.headers['Retry-After'] !== undefined),
  });
}

// k6 prints its own text summary only when no handleSummary is exported, and its
// textSummary helper is a remote jslib module, which this offline script does not load.
// So the summary is rendered here, in k6's order: thresholds, checks, then every metric.
function formatValue(metric, stat, value) {
  if (metric.type === 'rate') {
    return `${(value * 100).toFixed(2)}%`;
  }
  if (metric.contains === 'data') {
    return `${(value / 1000).toFixed(2)} kB${stat === 'rate' ? '/s' : ''}`;
  }
  if (metric.contains === 'time') {
    if (value < 1) {
      return `${(value * 1000).toFixed(2)}µs`;
    }
    if (value < 1000) {
      return `${value.toFixed(2)}ms`;
    }
    return `${(value / 1000).toFixed(2)}s`;
  }
  if (stat === 'rate') {
    return `${value.toFixed(2)}/s`;
  }
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function describeValues(metric, trendStats) {
  const values = metric.values;
  if (metric.type === 'trend') {
    return trendStats
      .filter((stat) => values[stat] !== undefined)
      .map((stat) => `${stat}=${formatValue(metric, stat, values[stat])}`)
      .join(' ');
  }
  if (metric.type === 'counter') {
    return `${values.count} ${formatValue(metric, 'rate', values.rate)}`;
  }
  if (metric.type === 'rate') {
    return `${formatValue(metric, 'rate', values.rate)} ${values.passes} out of ${values.passes + values.fails}`;
  }
  return `${formatValue(metric, 'value', values.value)} min=${formatValue(metric, 'min', values.min)} max=${formatValue(metric, 'max', values.max)}`;
}

function textSummary(data) {
  const trendStats = data.options.summaryTrendStats;
  const names = Object.keys(data.metrics).sort();
  const width = Math.max(...names.map((name) => name.length)) + 2;
  const lines = ['', '  THRESHOLDS', ''];

  for (const name of names) {
    const metric = data.metrics[name];
    if (!metric.thresholds) {
      continue;
    }
    lines.push(`    ${name}`);
    for (const [expression, result] of Object.entries(metric.thresholds)) {
      const stat = /^([a-z]+(?:\([\d.]+\))?)/.exec(expression)[1];
      const current = metric.values[stat] === undefined ? '' : ` ${stat}=${formatValue(metric, stat, metric.values[stat])}`;
      lines.push(`    ${result.ok ? '✓' : '✗'} '${expression}'${current}`);
    }
    lines.push('');
  }

  lines.push('  CHECKS', '');
  for (const item of data.root_group.checks) {
    lines.push(`    ${item.fails === 0 ? '✓' : '✗'} ${item.name}: ${item.passes} passed, ${item.fails} failed`);
  }

  lines.push('', '  METRICS', '');
  for (const name of names) {
    const metric = data.metrics[name];
    lines.push(`    ${name.padEnd(width, '.')}: ${describeValues(metric, trendStats)}`);
  }
  lines.push('');
  return lines.join('\n') + '\n';
}

export function handleSummary(data) {
  return {
    stdout: textSummary(data),
    [summaryJson]: JSON.stringify(data, null, 2),
  };
}
