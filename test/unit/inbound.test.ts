import { describe, expect, it } from 'vitest';
import { classifyInbound, countryOfNumber, customerNumber, parseInbound } from '../../src/messages/inbound.js';
import { isAppError } from '../../src/errors.js';

describe('classifyInbound', () => {
  it.each(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT'])('%s opts out', (word) => {
    expect(classifyInbound(word)).toBe('stop');
    expect(classifyInbound(word.toLowerCase())).toBe('stop');
  });

  it.each(['START', 'UNSTOP'])('%s opts back in', (word) => {
    expect(classifyInbound(word)).toBe('start');
    expect(classifyInbound(word.toLowerCase())).toBe('start');
  });

  it('YES alone confirms (a pending double opt-in), it is no opt-in', () => {
    expect(classifyInbound('YES')).toBe('yes');
    expect(classifyInbound(' yes. ')).toBe('yes');
  });

  it.each(['Yes, thanks! Got it', 'yes please send more', 'Start the order over?', 'start again tomorrow', 'unstop it'])(
    '%j is an ordinary reply, not an opt-in',
    (text) => {
      expect(classifyInbound(text)).toBeNull();
    },
  );

  it.each(['HELP', 'INFO'])('%s asks for help', (word) => {
    expect(classifyInbound(word)).toBe('help');
  });

  it.each([
    ['Stop', 'stop'],
    ['  stop  ', 'stop'],
    ['\n\tSTOP\r\n', 'stop'],
    ['STOP!', 'stop'],
    ['"stop."', 'stop'],
    ['...Stop...', 'stop'],
    ['sToP', 'stop'],
    ['stop please', 'stop'],
    ['STOP sending me these', 'stop'],
    ['Stop, thanks', 'stop'],
    ['STOP,thanks', 'stop'],
    ['ＳＴＯＰ', 'stop'],
    ['unstop', 'start'],
    ['Start!', 'start'],
    ['Yes!', 'yes'],
    ['help?', 'help'],
    ['Info me', 'help'],
  ] as const)('%j → %s', (text, expected) => {
    expect(classifyInbound(text)).toBe(expected);
  });

  it.each([
    '',
    '   ',
    '!!!',
    'Please stop',
    "don't stop",
    'stopping by later',
    'STOPP',
    'yesterday',
    'helpful, thanks',
    'Thanks for the update',
    'S T O P',
  ])('%j is not a keyword', (text) => {
    expect(classifyInbound(text)).toBeNull();
  });
});

describe('parseInbound', () => {
  it('reads the common JSON shape; the number written to in E.164, the sender as sent (read once routed)', () => {
    expect(parseInbound({ from: '41791234567', to: '+41 79 765 43 21', text: ' STOP ', messageId: 'in-1' })).toEqual({
      from: '41791234567',
      to: '+41797654321',
      text: 'STOP',
      providerMessageId: 'in-1',
    });
  });

  it.each([
    [{ sender: '+12015550123', recipient: '+12015550100', message: 'hi', id: 'i' }],
    [{ msisdn: '12015550123', destination: '0012015550100', body: 'hi', message_id: 'i' }],
    [{ Sender: '+1 (201) 555-0123', Recipient: '+1 201 555 0100', Text: 'hi', MessageId: 'i' }],
  ])('accepts the spellings in %j', (input) => {
    const parsed = parseInbound(input);
    expect(parsed).toMatchObject({ to: '+12015550100', text: 'hi', providerMessageId: 'i' });
    expect(customerNumber(parsed.from, countryOfNumber(parsed.to))).toBe('+12015550123');
  });

  it('accepts query-string input (arrays take their first value) and a missing id', () => {
    const query = { msisdn: ['447400123456', '447400999999'], to: '12345', text: 'Help' };
    expect(parseInbound(query)).toEqual({ from: '447400123456', to: '12345', text: 'Help', providerMessageId: null });
  });

  it('reads a national number with the country of the number written to', () => {
    expect(customerNumber('015123456789', countryOfNumber('+4915199999999'))).toBe('+4915123456789');
    expect(customerNumber('(201) 555-0123', 'US')).toBe('+12015550123');
    expect(customerNumber('015123456789', null)).toBeNull();
    expect(customerNumber('4915123456789', null)).toBe('+4915123456789');
  });

  it('keeps short codes and alphanumeric senders as they are', () => {
    expect(parseInbound({ from: 'Blossom', to: '78788', text: 'x' })).toMatchObject({ from: 'Blossom', to: '78788' });
  });

  it('accepts an empty text when the field is present', () => {
    expect(parseInbound({ from: '+12015550123', to: '+12015550100', text: '' }).text).toBe('');
  });

  it.each([
    [{ to: '+12015550100', text: 'STOP' }, 'from'],
    [{ from: '', to: '+12015550100', text: 'STOP' }, 'from'],
    [{ from: '+12015550123', text: 'STOP' }, 'to'],
    [{ from: '+12015550123', to: '+12015550100' }, 'text'],
    [{ from: '+12015550123', to: '+12015550100', text: { nested: true } }, 'text'],
  ])('names the missing field in %j', (input, field) => {
    let err: unknown;
    try {
      parseInbound(input);
    } catch (e) {
      err = e;
    }
    expect(isAppError(err, 'VALIDATION_FAILED')).toBe(true);
    expect(err).toMatchObject({ details: { field } });
    expect((err as Error).message).toContain(field);
  });
});
