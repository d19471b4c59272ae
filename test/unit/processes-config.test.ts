import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { singleProcessReason } from '../../src/supervisor.js';

const POSTGRES = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test' };

describe('PROCESSES', () => {
  it('defaults to one process per core on PostgreSQL and to one on the embedded PGlite', () => {
    expect(loadConfig(POSTGRES).processes).toEqual({ count: os.availableParallelism(), explicit: false });
    expect(loadConfig({}).processes).toEqual({ count: 1, explicit: false });
  });

  it('takes the count given, 1 to 256', () => {
    expect(loadConfig({ ...POSTGRES, PROCESSES: '3' }).processes).toEqual({ count: 3, explicit: true });
    expect(loadConfig({ PROCESSES: '1' }).processes).toEqual({ count: 1, explicit: true });
    for (const bad of ['0', '257', '1.5', 'many']) expect(() => loadConfig({ ...POSTGRES, PROCESSES: bad })).toThrow(/^PROCESSES: /);
  });

  it('refuses more than one on PGlite, naming the setting and the way out', () => {
    let err: unknown;
    try {
      loadConfig({ PROCESSES: '2' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe('PROCESSES');
    expect((err as Error).message).toMatch(/PGlite is opened by a single process.*DATABASE_URL/);
  });

  it('says why start runs one process only when the default chose it on a machine with more cores', () => {
    const why = singleProcessReason(loadConfig({}));
    if (os.availableParallelism() > 1) expect(why).toMatch(/PGlite/);
    else expect(why).toBeUndefined();
    expect(singleProcessReason(loadConfig({ PROCESSES: '1' }))).toBeUndefined();
    expect(singleProcessReason(loadConfig(POSTGRES))).toBeUndefined();
  });
});
