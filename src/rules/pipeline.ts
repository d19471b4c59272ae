/**
 * The rule pipeline: whether an automation's message is sent now, deferred, or skipped. Pure: the caller supplies the
 * clock, the contact, whether a message for this automation + object already exists, and the contact's recent sends.
 *
 * Rules run in this order ({@link RULE_ORDER}); the first that says skip or defer decides, the rest are reported as
 * `not_reached` in the trace:
 *
 *  1. consent        marketing: `subscribed` and not opted out; transactional: not opted out. Needs a phone.
 *  2. enabled        the automation is switched on.
 *  3. conditions     the automation's JSON condition holds for the event context (see ./conditions.ts).
 *  4. dedupe         no message exists yet for this automation and object (order id, checkout token, fulfillment id).
 *  5. frequency_cap  marketing only: fewer than `max` sends to this contact in the window (default 1 per 24 h).
 *                    Transactional automations are exempt.
 *  6. quiet_hours    inside the window (default 21:00–08:00 in the recipient's zone: address, phone area code, all
 *                    zones of a multi-zone country, else the shop's) a message is deferred to the window's end, never
 *                    dropped. Transactional automations bypass by default
 *                    (`quietHoursBypass`).
 *
 * Consent first, so a merchant sees "opted out" rather than a less telling reason. The cap is checked before quiet
 * hours so a capped message is skipped now instead of being deferred only to be skipped later; a deferred message
 * runs the whole pipeline again when it wakes. The cap here is advisory: on `send` the caller still reserves the slot
 * atomically (two concurrent evaluations can both see a free slot) and treats a failed reservation as
 * `frequency_capped`.
 *
 * Invalid settings are meant to be rejected when an automation is saved (`parseCondition`, `assertValidCap`,
 * `isValidWindow`). Here a broken stored condition becomes a `conditions_invalid` skip; a malformed cap or quiet-hours
 * window throws AppError VALIDATION_FAILED.
 */
import { checkConsent, type ConsentContact, type ConsentKind, type ConsentReason } from './consent.js';
import { evaluateCondition, type Condition } from './conditions.js';
import { capDecision, DEFAULT_FREQUENCY_CAP, type FrequencyCap } from './frequencyCap.js';
import { DEFAULT_QUIET_HOURS, quietHoursDecisionAll, recipientZones, type QuietHoursWindow } from './quietHours.js';

export const RULE_ORDER = ['consent', 'enabled', 'conditions', 'dedupe', 'frequency_cap', 'quiet_hours'] as const;
export type RuleName = (typeof RULE_ORDER)[number];

/**
 * Why a message was skipped; stored with every decision not to send. Stable: add, never rename. Includes every
 * {@link ConsentReason} (the compiler checks it where consent verdicts are built).
 */
export const REASON_CODES = [
  'redacted',
  'opted_out',
  'no_phone',
  'not_subscribed',
  'disabled',
  'conditions_not_met',
  'conditions_invalid',
  'duplicate',
  'frequency_capped',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

export type TraceOutcome = 'pass' | 'skip' | 'defer' | 'exempt' | 'not_reached';

export interface TraceEntry {
  rule: RuleName;
  outcome: TraceOutcome;
  detail?: string;
}

export type Decision = (
  | { action: 'send' }
  | { action: 'defer'; until: Date; reason: 'quiet_hours' }
  | { action: 'skip'; reason: ReasonCode; detail?: string }
) & { trace: TraceEntry[] };

/** The rule settings of one automation. */
export interface AutomationRules {
  enabled: boolean;
  /** Order confirmations, shipping updates: "not opted out" consent, no frequency cap, quiet-hours bypass by default. */
  transactional: boolean;
  /** Consent the message needs. Default: `transactional` when the automation is, else `marketing`. */
  consent?: ConsentKind;
  /** Absent or null: no conditions. */
  conditions?: Condition | null;
  /** Marketing cap. Absent: {@link DEFAULT_FREQUENCY_CAP}; null: no cap. Ignored for transactional automations. */
  frequencyCap?: FrequencyCap | null;
  /** Absent: enabled with {@link DEFAULT_QUIET_HOURS}. */
  quietHours?: { enabled?: boolean; window?: QuietHoursWindow };
  /** Send inside quiet hours anyway. Default: `transactional`. */
  quietHoursBypass?: boolean;
}

export interface RuleContact extends ConsentContact {
  /** IANA zone stored for the contact, if any. */
  timezone?: string | null;
  /** Used to derive a zone when `timezone` is absent. */
  countryCode?: string | null;
  provinceCode?: string | null;
}

export interface RuleInput {
  now: Date;
  automation: AutomationRules;
  contact: RuleContact;
  shopTimezone?: string | null;
  /** What conditions see: usually the normalised event context plus shop/contact fields. */
  context: unknown;
  /** A message for this automation and object already exists. */
  duplicate: boolean;
  /** Send times (ms) of recent marketing messages to this contact in this shop. */
  recentSends: readonly number[];
}

type Verdict =
  | { outcome: 'pass' | 'exempt'; detail?: string }
  | { outcome: 'skip'; reason: ReasonCode; detail?: string }
  | { outcome: 'defer'; until: Date; detail?: string };

const RULES: Record<RuleName, (input: RuleInput) => Verdict> = {
  consent(input) {
    const kind = consentKind(input.automation);
    const r = checkConsent(input.contact, kind);
    if (r.allowed) return { outcome: 'pass', detail: `${kind} consent` };
    return { outcome: 'skip', reason: r.reason, detail: r.detail ?? `${kind} consent` };
  },

  enabled(input) {
    return input.automation.enabled ? { outcome: 'pass' } : { outcome: 'skip', reason: 'disabled' };
  },

  conditions(input) {
    const cond = input.automation.conditions;
    if (cond === undefined || cond === null) return { outcome: 'pass', detail: 'no conditions' };
    let ok: boolean;
    try {
      ok = evaluateCondition(cond, input.context);
    } catch (err) {
      // A stored condition that no longer validates: skip with a reason rather than fail the job over and over.
      return { outcome: 'skip', reason: 'conditions_invalid', detail: err instanceof Error ? err.message : String(err) };
    }
    return ok ? { outcome: 'pass' } : { outcome: 'skip', reason: 'conditions_not_met' };
  },

  dedupe(input) {
    return input.duplicate
      ? { outcome: 'skip', reason: 'duplicate', detail: 'a message for this automation and object already exists' }
      : { outcome: 'pass' };
  },

  frequency_cap(input) {
    if (input.automation.transactional) return { outcome: 'exempt', detail: 'transactional' };
    const cap = input.automation.frequencyCap === undefined ? DEFAULT_FREQUENCY_CAP : input.automation.frequencyCap;
    if (cap === null) return { outcome: 'pass', detail: 'no cap' };
    const d = capDecision(input.recentSends, input.now.getTime(), cap);
    const summary = `${d.count} of ${cap.max} in ${cap.windowHours}h`;
    if (d.allowed) return { outcome: 'pass', detail: summary };
    return {
      outcome: 'skip',
      reason: 'frequency_capped',
      detail: `${summary}; next slot at ${new Date(d.retryAt).toISOString()}`,
    };
  },

  quiet_hours(input) {
    const a = input.automation;
    const bypass = a.quietHoursBypass ?? a.transactional;
    if (bypass) return { outcome: 'exempt', detail: a.quietHoursBypass === undefined ? 'transactional' : 'bypass' };
    const enabled = a.quietHours?.enabled ?? true;
    const window = a.quietHours?.window ?? DEFAULT_QUIET_HOURS;
    if (!enabled) return { outcome: 'pass', detail: 'quiet hours off' };
    const tz = recipientZones(input.contact, input.shopTimezone, input.now);
    const d = quietHoursDecisionAll({ now: input.now, zones: tz.zones, window, enabled });
    const where = `${window.start}-${window.end} ${d.timezone} (${d.timezoneFallback ? 'invalid zone, UTC' : tz.source})`;
    if (d.allowed) return { outcome: 'pass', detail: `outside ${where}` };
    return { outcome: 'defer', until: d.deferUntil, detail: `inside ${where}; until ${d.deferUntil.toISOString()}` };
  },
};

function consentKind(a: AutomationRules): ConsentKind {
  return a.consent ?? (a.transactional ? 'transactional' : 'marketing');
}

function entry(rule: RuleName, outcome: TraceOutcome, detail: string | undefined): TraceEntry {
  return detail === undefined ? { rule, outcome } : { rule, outcome, detail };
}

/** Runs the rules in {@link RULE_ORDER}; see the file header for what each one does. */
export function evaluateRules(input: RuleInput): Decision {
  const trace: TraceEntry[] = [];
  for (const [i, rule] of RULE_ORDER.entries()) {
    const v = RULES[rule](input);
    trace.push(entry(rule, v.outcome, v.detail));
    if (v.outcome !== 'skip' && v.outcome !== 'defer') continue;
    for (const rest of RULE_ORDER.slice(i + 1)) trace.push({ rule: rest, outcome: 'not_reached' });
    if (v.outcome === 'defer') return { action: 'defer', until: v.until, reason: 'quiet_hours', trace };
    return v.detail === undefined
      ? { action: 'skip', reason: v.reason, trace }
      : { action: 'skip', reason: v.reason, detail: v.detail, trace };
  }
  return { action: 'send', trace };
}
