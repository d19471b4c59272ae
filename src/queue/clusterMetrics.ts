/**
 * Prometheus metrics of a service run as several processes (`PROCESSES`, src/supervisor.ts). The processes share one
 * port, so a scrape reaches whichever took the connection; its counters and histograms alone would be a fraction of the
 * service's, and a different fraction at each scrape. Instead the process that takes the scrape asks the supervisor,
 * which gathers the per-process metrics of every process that serves, over IPC, and sums them (prom-client's
 * `AggregatorRegistry.aggregate`: counters and histograms summed, each metric by its own aggregator); the gauges read
 * from Redis and the database at scrape time are already the whole service's and are added by that process, once.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

/** One process's metrics as `Registry.getMetricsAsJSON()` gives them. */
type MetricJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/** A process asks the supervisor for the service's metrics; the supervisor answers with RESULT. */
const REQUEST = 'smsblossom:metrics';
const RESULT = 'smsblossom:metrics-result';
/** The supervisor asks each serving process for its own metrics; each answers with OWN. */
const GATHER = 'smsblossom:metrics-gather';
const OWN = 'smsblossom:metrics-own';

/** How long the supervisor waits for every process's metrics. */
const GATHER_TIMEOUT_MS = 5000;
/** How long a process waits for the supervisor's answer. */
const ANSWER_TIMEOUT_MS = GATHER_TIMEOUT_MS + 1000;

type Message =
  | { type: typeof REQUEST; id: number }
  | { type: typeof RESULT; id: number; body?: string; error?: string }
  | { type: typeof GATHER; id: number }
  | { type: typeof OWN; id: number; metrics?: MetricJson[]; error?: string };

function messageOf<T extends Message['type']>(m: unknown, type: T): Extract<Message, { type: T }> | undefined {
  return typeof m === 'object' && m !== null && (m as Message).type === type ? (m as Extract<Message, { type: T }>) : undefined;
}

/** A send to a process that has just died fails; its absence is the gathering's timeout to report. */
const tell = (worker: Worker, message: Message) => worker.send(message, () => undefined);

/**
 * In the supervisor: answers each process's request with the summed metrics of `serving()` (the processes that have
 * started; one starting again has no metrics worth waiting for).
 */
export function serveClusterMetrics(serving: () => Worker[]): void {
  let nextGather = 0;
  const gatherings = new Map<number, { left: Set<number>; got: MetricJson[][]; done: (err: Error | null) => void }>();

  cluster.on('message', (worker: Worker, raw: unknown) => {
    const own = messageOf(raw, OWN);
    if (own) {
      const g = gatherings.get(own.id);
      if (!g || !g.left.delete(worker.id)) return;
      if (own.error !== undefined || !own.metrics) return g.done(new Error(`process ${worker.process.pid}: ${own.error ?? 'no metrics'}`));
      g.got.push(own.metrics);
      if (g.left.size === 0) g.done(null);
      return;
    }
    const request = messageOf(raw, REQUEST);
    if (!request) return;
    const workers = serving();
    const id = nextGather++;
    const got: MetricJson[][] = [];
    const timer = setTimeout(() => done(new Error(`${gatherings.get(id)?.left.size ?? 0} process(es) did not answer within ${GATHER_TIMEOUT_MS} ms`)), GATHER_TIMEOUT_MS);
    const done = (err: Error | null) => {
      if (!gatherings.delete(id)) return;
      clearTimeout(timer);
      if (err) return tell(worker, { type: RESULT, id: request.id, error: err.message });
      AggregatorRegistry.aggregate(got)
        .metrics()
        .then(
          (body) => tell(worker, { type: RESULT, id: request.id, body }),
          (e: Error) => tell(worker, { type: RESULT, id: request.id, error: e.message }),
        );
    };
    gatherings.set(id, { left: new Set(workers.map((w) => w.id)), got, done });
    if (workers.length === 0) return done(null);
    for (const w of workers) tell(w, { type: GATHER, id });
  });
}

/** Whether this process is one of a supervisor's, whose metrics the supervisor sums. */
export const metricsAreAggregated = (): boolean => cluster.isWorker;

const waiting = new Map<number, { resolve: (body: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
let nextRequest = 0;
let shared: Registry | undefined;

/**
 * In a supervised process: `registry` (this process's counters, histograms and runtime) is what it gives the
 * supervisor's gatherings. Call once, before the process reports that it serves.
 */
export function shareProcessMetrics(registry: Registry): void {
  if (!cluster.isWorker) return;
  const first = shared === undefined;
  shared = registry;
  if (!first) return;
  process.on('message', (raw: unknown) => {
    const gather = messageOf(raw, GATHER);
    if (gather) {
      shared!.getMetricsAsJSON().then(
        (metrics) => process.send!({ type: OWN, id: gather.id, metrics } satisfies Message),
        (err: Error) => process.send!({ type: OWN, id: gather.id, error: err.message } satisfies Message),
      );
      return;
    }
    const result = messageOf(raw, RESULT);
    const entry = result && waiting.get(result.id);
    if (!result || !entry) return;
    waiting.delete(result.id);
    clearTimeout(entry.timer);
    if (result.error !== undefined || result.body === undefined) entry.reject(new Error(result.error ?? 'no metrics in the answer'));
    else entry.resolve(result.body);
  });
}

/** In a supervised process: the per-process metrics of every serving process, summed by the supervisor. */
export function aggregatedMetrics(): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const id = nextRequest++;
    const timer = setTimeout(() => {
      waiting.delete(id);
      reject(new Error(`the supervisor did not answer within ${ANSWER_TIMEOUT_MS} ms`));
    }, ANSWER_TIMEOUT_MS);
    waiting.set(id, { resolve, reject, timer });
    process.send!({ type: REQUEST, id } satisfies Message, undefined, {}, (err: Error | null) => {
      if (!err || !waiting.delete(id)) return;
      clearTimeout(timer);
      reject(err);
    });
  });
}
