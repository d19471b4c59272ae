import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { queuesFromArgv } from '../../src/queue/queueArgs.js';

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an error');
}

describe('queuesFromArgv', () => {
  it('is undefined when --queues is absent, so the configured queues apply', () => {
    expect(queuesFromArgv([])).toBeUndefined();
    expect(queuesFromArgv(['--verbose', 'delivery'])).toBeUndefined();
    expect(queuesFromArgv(['--queuesdelivery'])).toBeUndefined();
  });

  it('reads "--queues a,b" and "--queues=a,b", keeping the order given', () => {
    expect(queuesFromArgv(['--queues', 'delivery'])).toEqual(['delivery']);
    expect(queuesFromArgv(['--queues', 'delivery,events'])).toEqual(['delivery', 'events']);
    expect(queuesFromArgv(['--queues=events,automations,campaigns,delivery,housekeeping'])).toEqual([
      'events',
      'automations',
      'campaigns',
      'delivery',
      'housekeeping',
    ]);
  });

  it('finds the flag among other arguments', () => {
    expect(queuesFromArgv(['worker', '--log', 'debug', '--queues', 'campaigns'])).toEqual(['campaigns']);
    expect(queuesFromArgv(['--queues=housekeeping', '--json'])).toEqual(['housekeeping']);
  });

  it('trims spaces, ignores empty items and drops repeats', () => {
    expect(queuesFromArgv(['--queues', ' events , ,delivery,'])).toEqual(['events', 'delivery']);
    expect(queuesFromArgv(['--queues=delivery,delivery,events,delivery'])).toEqual(['delivery', 'events']);
  });

  it('refuses an unknown queue, naming it and the known ones', () => {
    const err = errorOf(() => queuesFromArgv(['--queues', 'events,deliveries']));
    expect(err.code).toBe('UNKNOWN_QUEUE');
    expect(err.message).toContain('"deliveries"');
    expect(err.message).toContain('events, automations, campaigns, delivery, housekeeping');
    expect(errorOf(() => queuesFromArgv(['--queues=Events'])).code).toBe('UNKNOWN_QUEUE');
  });

  it('refuses the flag with no queue names rather than serving nothing', () => {
    for (const argv of [['--queues'], ['--queues='], ['--queues', ''], ['--queues', ','], ['--queues', ' , '], ['--queues', '--json']]) {
      expect(errorOf(() => queuesFromArgv(argv)).code, JSON.stringify(argv)).toBe('VALIDATION_FAILED');
    }
  });

  it('takes everything after the first "=" as the list', () => {
    expect(errorOf(() => queuesFromArgv(['--queues=events=delivery'])).message).toContain('"events=delivery"');
  });
});
