import { describe, expect, it } from 'vitest';
import { composeSms } from '../../src/messages/compose.js';
import { DEFAULT_OPT_OUT_FOOTER } from '../../src/messages/render.js';

const PRICE = 0.05;

describe('composeSms', () => {
  it('marketing text gets the default footer on its own line when the shop has none', () => {
    const sms = composeSms('Sale today', { marketing: true, costPerSegment: PRICE });
    expect(sms).toEqual({ text: `Sale today\n${DEFAULT_OPT_OUT_FOOTER}`, encoding: 'GSM-7', segments: 1, costEstimate: 0.05 });
  });

  it("marketing text gets the shop's own footer", () => {
    const sms = composeSms('Sale today', { marketing: true, shop: { optOutFooter: 'Text STOP to opt out' }, costPerSegment: PRICE });
    expect(sms.text).toBe('Sale today\nText STOP to opt out');
  });

  it('a footer the text already carries is not added twice (case and spacing ignored)', () => {
    const text = 'Sale today. reply  stop to   UNSUBSCRIBE';
    expect(composeSms(text, { marketing: true, costPerSegment: PRICE }).text).toBe(text);
  });

  it('transactional text goes as written, whatever footer the shop has', () => {
    const sms = composeSms('Your order shipped', { marketing: false, shop: { optOutFooter: 'Text STOP to opt out' }, costPerSegment: PRICE });
    expect(sms).toEqual({ text: 'Your order shipped', encoding: 'GSM-7', segments: 1, costEstimate: 0.05 });
  });

  it('counts parts and cost on the final text: the footer can push a message into a second part', () => {
    const body = 'a'.repeat(160);
    expect(composeSms(body, { marketing: false, costPerSegment: PRICE })).toMatchObject({ segments: 1, costEstimate: 0.05 });
    const withFooter = composeSms(body, { marketing: true, costPerSegment: PRICE });
    expect(withFooter.text.length).toBe(160 + 1 + DEFAULT_OPT_OUT_FOOTER.length);
    expect(withFooter).toMatchObject({ encoding: 'GSM-7', segments: 2, costEstimate: 0.1 });
  });

  it('a character outside GSM-7 makes the whole message UCS-2, footer included', () => {
    const sms = composeSms('Merci ’ beaucoup', { marketing: true, costPerSegment: PRICE });
    expect(sms.encoding).toBe('UCS-2');
    expect(sms.segments).toBe(1);
    const long = composeSms('🌸'.repeat(40), { marketing: false, costPerSegment: PRICE });
    expect(long).toMatchObject({ encoding: 'UCS-2', segments: 2, costEstimate: 0.1 });
  });

  it('empty transactional text is no part and costs nothing; empty marketing text is the footer alone', () => {
    expect(composeSms('', { marketing: false, costPerSegment: PRICE })).toEqual({ text: '', encoding: 'GSM-7', segments: 0, costEstimate: 0 });
    expect(composeSms('', { marketing: true, costPerSegment: PRICE }).text).toBe(DEFAULT_OPT_OUT_FOOTER);
  });

  it('cost is rounded to 6 decimals at the configured price', () => {
    expect(composeSms('hi', { marketing: false, costPerSegment: 0.0123456789 }).costEstimate).toBe(0.012346);
  });
});
