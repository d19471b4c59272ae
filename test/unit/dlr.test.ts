import { describe, expect, it } from 'vitest';
import { parseDeliveryReport } from '../../src/messages/dlr.js';
import { isAppError } from '../../src/errors.js';
import { deliveryReportLogLevel } from '../../src/http/routes/mitto.js';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('parseDeliveryReport', () => {
  it('reads the sandbox JSON report', () => {
    expect(
      parseDeliveryReport({ id: 'abc-1', reference: 'msg-7', status: 'delivered', errorCode: null, timestamp: '2025-03-01T10:00:00.000Z' }),
    ).toEqual({
      providerMessageId: 'abc-1',
      reference: 'msg-7',
      status: 'delivered',
      errorCode: null,
      occurredAt: new Date('2025-03-01T10:00:00.000Z'),
    });
  });

  it.each([
    [{ id: 'x' }, 'x'],
    [{ messageId: 'x' }, 'x'],
    [{ message_id: 'x' }, 'x'],
    [{ msgId: 'x' }, 'x'],
    [{ MessageID: 'x' }, 'x'],
    [{ 'message-id': 'x' }, 'x'],
    [{ id: 12345 }, '12345'],
    [{ id: ['x', 'y'] }, 'x'],
    [{ id: '  x  ' }, 'x'],
  ])('reads the provider id from %j', (fields, expected) => {
    expect(parseDeliveryReport({ ...fields, status: 'DELIVERED' }).providerMessageId).toBe(expected);
  });

  it.each([['reference'], ['ref'], ['clientReference'], ['client_reference'], ['REF']])('reads the reference from %s', (key) => {
    const report = parseDeliveryReport({ [key]: 'msg-1', status: 'delivered' });
    expect(report).toMatchObject({ reference: 'msg-1', providerMessageId: null });
  });

  it.each([
    ['DELIVERED', 'delivered'],
    ['delivered', 'delivered'],
    ['Delivered', 'delivered'],
    ['DELIVRD', 'delivered'],
    ['1', 'delivered'],
    [1, 'delivered'],
    ['delivered to handset', 'delivered'],
    ['FAILED', 'failed'],
    ['failed', 'failed'],
    ['UNDELIV', 'failed'],
    ['undelivered', 'failed'],
    ['REJECTD', 'failed'],
    ['rejected', 'failed'],
    ['EXPIRED', 'failed'],
    ['2', 'failed'],
    [16, 'failed'],
    ['BUFFERED', 'pending'],
    ['ENROUTE', 'pending'],
    ['ACCEPTED', 'pending'],
    ['ACCEPTD', 'pending'],
    ['pending', 'pending'],
    ['4', 'pending'],
    ['8', 'pending'],
  ] as const)('maps status %j to %s', (value, expected) => {
    expect(parseDeliveryReport({ id: 'x', status: value }).status).toBe(expected);
  });

  it.each([['status'], ['state'], ['deliveryStatus'], ['dlrStatus'], ['delivery_status'], ['DLR-STATUS'], ['stat']])(
    'reads the status from %s',
    (key) => {
      expect(parseDeliveryReport({ id: 'x', [key]: 'UNDELIV' }).status).toBe('failed');
    },
  );

  it.each([
    [{ errorCode: '034' }, '034'],
    [{ error: 'E12' }, 'E12'],
    [{ err: 5 }, '5'],
    [{ statusCode: '1' }, '1'],
    [{ err: '000' }, null],
    [{ err: 0 }, null],
    [{ errorCode: null }, null],
    [{ errorCode: '' }, null],
    [{}, null],
  ])('reads the error code from %j', (fields, expected) => {
    expect(parseDeliveryReport({ id: 'x', status: 'failed', ...fields }).errorCode).toBe(expected);
  });

  it.each([
    [{ timestamp: '2025-03-01T10:00:00Z' }, '2025-03-01T10:00:00.000Z'],
    [{ timestamp: '2025-03-01T12:00:00+02:00' }, '2025-03-01T10:00:00.000Z'],
    [{ timestamp: '2025-03-01 10:00:00' }, '2025-03-01T10:00:00.000Z'],
    [{ timestamp: 1740823200 }, '2025-03-01T10:00:00.000Z'],
    [{ timestamp: '1740823200000' }, '2025-03-01T10:00:00.000Z'],
    [{ deliveredAt: '2025-03-01T10:00:00.000Z' }, '2025-03-01T10:00:00.000Z'],
    [{ doneDate: '2503011000' }, '2025-03-01T10:00:00.000Z'],
    [{ done_date: '250301100030' }, '2025-03-01T10:00:30.000Z'],
  ])('reads the time from %j', (fields, expected) => {
    expect(parseDeliveryReport({ id: 'x', status: 'delivered', ...fields }).occurredAt?.toISOString()).toBe(expected);
  });

  it('keeps a report whose time cannot be read, without a time', () => {
    expect(parseDeliveryReport({ id: 'x', status: 'delivered', timestamp: 'yesterday-ish' }).occurredAt).toBeNull();
    expect(parseDeliveryReport({ id: 'x', status: 'delivered' }).occurredAt).toBeNull();
  });

  it('takes query-string shaped input', () => {
    const query = Object.fromEntries(new URLSearchParams('msgId=m-9&ref=r-9&dlrStatus=DELIVRD&err=000&doneDate=2503011000'));
    expect(parseDeliveryReport(query)).toEqual({
      providerMessageId: 'm-9',
      reference: 'r-9',
      status: 'delivered',
      errorCode: null,
      occurredAt: new Date('2025-03-01T10:00:00Z'),
    });
  });

  it('rejects a report with neither id nor reference, naming the field', () => {
    const err = thrown(() => parseDeliveryReport({ status: 'delivered', id: '', reference: '   ' }));
    expect(isAppError(err, 'VALIDATION_FAILED')).toBe(true);
    expect(err).toMatchObject({ details: { field: 'id' } });
    expect((err as Error).message).toMatch(/reference/);
  });

  it('rejects a report without a status', () => {
    const err = thrown(() => parseDeliveryReport({ id: 'x' }));
    expect(isAppError(err, 'VALIDATION_FAILED')).toBe(true);
    expect(err).toMatchObject({ details: { field: 'status' } });
  });

  it('rejects an unknown status, naming the field it came from', () => {
    const err = thrown(() => parseDeliveryReport({ id: 'x', dlrStatus: 'MAYBE' }));
    expect(isAppError(err, 'VALIDATION_FAILED')).toBe(true);
    expect(err).toMatchObject({ details: { field: 'dlrStatus' } });
    expect((err as Error).message).toContain('dlrStatus');
    expect(() => parseDeliveryReport({ id: 'x', status: 3 })).toThrow(/status/);
  });
});

describe('deliveryReportLogLevel', () => {
  it('keeps report requests out of info logs, shows them at debug and trace, and never logs more than asked', () => {
    expect(deliveryReportLogLevel('info')).toBe('warn');
    expect(deliveryReportLogLevel('debug')).toBe('debug');
    expect(deliveryReportLogLevel('trace')).toBe('trace');
    expect(deliveryReportLogLevel('warn')).toBe('warn');
    expect(deliveryReportLogLevel('error')).toBe('error');
    expect(deliveryReportLogLevel('silent')).toBe('silent');
  });
});
