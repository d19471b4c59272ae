/**
 * `automations:evaluate`: thin. Unpacks the job and runs {@link evaluateAutomation} (src/automations/evaluate.ts),
 * giving it the two queue operations it needs as plain functions: a `delivery:send` job per queued message (id
 * `msg-<message id>`, so a retry adds nothing), and the delayed abandoned-checkout evaluation, deduplicated per
 * checkout so that a later update replaces the waiting job and restarts its delay. The outcomes are the job's return
 * value; a permanent error is mapped to `UnrecoverableError` by the worker (src/queue/worker.ts).
 */
import {
  ABANDONED_CHECKOUT_DUE,
  evaluateAutomation,
  type AutomationDeps,
  type AutomationDispatch,
  type AutomationOutcome,
} from '../../automations/evaluate.js';
import { jobIdFrom, type JobData, type QueueRegistry } from '../queues.js';

export interface AutomationsJobDeps extends Omit<AutomationDeps, 'dispatch'> {
  queues: QueueRegistry;
}

export function processAutomation(data: JobData<'automations'>, deps: AutomationsJobDeps): Promise<AutomationOutcome[]> {
  const { queues, ...rest } = deps;
  return evaluateAutomation(
    { shopDomain: data.shopId, trigger: data.trigger, context: data.context, requestId: data.requestId },
    { ...rest, dispatch: dispatchFor(data, queues) },
  );
}

function dispatchFor(data: JobData<'automations'>, queues: QueueRegistry): AutomationDispatch {
  return {
    async deliver(m, delayMs) {
      await queues.enqueueJob(
        'delivery',
        'send',
        {
          shopId: m.shopDomain,
          messageId: m.messageId,
          contactId: m.contactId,
          automationId: m.automationId,
          ...(m.checkoutToken ? { checkoutToken: m.checkoutToken } : {}),
          requestId: m.requestId,
        },
        { jobId: jobIdFrom('msg', m.messageId), delay: delayMs },
      );
    },
    async evaluateCheckoutLater(checkout, delayMs) {
      await queues.enqueueJob(
        'automations',
        'evaluate',
        { ...data, trigger: ABANDONED_CHECKOUT_DUE },
        // A later update of the same checkout replaces the waiting job and restarts its delay.
        { delay: delayMs, deduplication: { id: jobIdFrom('ac', checkout.shopId, checkout.token), ttl: Math.max(delayMs, 1), extend: true, replace: true } },
      );
    },
  };
}
