/**
 * A message's final content: the text the customer gets (opt-out footer included where the rules want it), its
 * encoding, billed parts and estimated cost. Pure. Every path that creates a message — automations, their simulation
 * and preview, campaign pages and test sends, replies to HELP/STOP/START — composes it here, so the text stored is the
 * text priced.
 */
import { analyzeSms, estimateCost, type SmsEncoding } from './encoding.js';
import { appendOptOutFooter } from './render.js';

export interface ComposeOptions {
  /**
   * Marketing content (campaigns and their test sends, marketing automations) ends with the opt-out footer;
   * transactional content (order and shipping updates, replies) goes as written.
   */
  marketing: boolean;
  /** The shop's settings; `optOutFooter` unset means the default footer (`DEFAULT_OPT_OUT_FOOTER`). */
  shop?: { optOutFooter?: string };
  /** Price of one part (SMS_COST_PER_SEGMENT). */
  costPerSegment: number;
}

export interface ComposedSms {
  text: string;
  encoding: SmsEncoding;
  /** Billed parts; 0 for empty text. */
  segments: number;
  costEstimate: number;
}

/** The final text of a rendered (or plain) message, with its encoding, parts and cost. */
export function composeSms(text: string, options: ComposeOptions): ComposedSms {
  const final = options.marketing ? appendOptOutFooter(text, options.shop?.optOutFooter) : text;
  const sms = analyzeSms(final);
  return { text: final, encoding: sms.encoding, segments: sms.segments, costEstimate: estimateCost(sms.segments, options.costPerSegment) };
}

/** The content columns of a message row, from its composed content. */
export function contentColumns(sms: ComposedSms): { body: string; encoding: SmsEncoding; segments: number; costEstimate: number } {
  return { body: sms.text, encoding: sms.encoding, segments: sms.segments, costEstimate: sms.costEstimate };
}
