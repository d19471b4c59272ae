/**
 * Delivery reports settled in batches: one arrives for every message sent, and each was an UPDATE of its own. Reports
 * that arrive while a batch is being written wait for it and go together in the next one (group commit): alone, a
 * report is written at once; under load, one statement settles many. A report's HTTP answer waits for its batch, so
 * a report answered 200 is stored, as before.
 *
 * A batch that fails is applied again report by report, so one report the database refuses fails alone.
 */
import { applyDeliveryReport, applyDeliveryReports, type DeliveryReportUpdate } from '../db/messages.js';
import type { Db } from '../db/client.js';

type Result = Awaited<ReturnType<typeof applyDeliveryReport>>;

export interface ReportBatcher {
  /** Resolves once the report is stored (or matched no message: undefined). */
  apply(report: DeliveryReportUpdate): Promise<Result>;
}

interface Waiting {
  report: DeliveryReportUpdate;
  resolve: (r: Result) => void;
  reject: (err: unknown) => void;
}

export function createReportBatcher(db: Db, provider: string, options: { maxBatch?: number } = {}): ReportBatcher {
  const maxBatch = options.maxBatch ?? 500;
  let waiting: Waiting[] = [];
  let writing = false;

  async function write(): Promise<void> {
    writing = true;
    try {
      while (waiting.length > 0) {
        const batch = waiting.slice(0, maxBatch);
        waiting = waiting.slice(batch.length);
        try {
          const results = await applyDeliveryReports(db, provider, batch.map((w) => w.report));
          batch.forEach((w, i) => w.resolve(results[i]));
        } catch {
          await Promise.all(batch.map((w) => applyDeliveryReport(db, provider, w.report).then(w.resolve, w.reject)));
        }
      }
    } finally {
      writing = false;
    }
  }

  return {
    apply(report) {
      return new Promise<Result>((resolve, reject) => {
        waiting.push({ report, resolve, reject });
        // After this turn's I/O callbacks: reports read from sockets in the same turn start the batch together.
        if (!writing && waiting.length === 1) setImmediate(() => void write());
      });
    },
  };
}
