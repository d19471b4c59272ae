/**
 * The real Mitto client against the sandbox on a real socket: success with a delivery report to a local callback,
 * every responseCode, 429, 5xx, a timeout on a send that reached the provider, a bad key, a reset after sending and a
 * closed port. No fixed sleeps: tests wait on the callback server, the sandbox or the client's own promise.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseDeliveryReport } from '../../src/messages/dlr.js';
import { createMittoProvider } from '../../src/messages/providers/mitto.js';
import { ProviderError, type SendRequest } from '../../src/messages/providers/types.js';
import { createSandbox, type Sandbox } from '../../src/sandbox/server.js';

const API_KEY = 'sandbox-test-key';
const TO = '+41791234567';
const TEXT = 'Your order #1001 is paid. Thank you!';

let sandbox: Sandbox;
let baseUrl: string;
let callbacks: CallbackServer;
let seq = 0;

function request(patch: Partial<SendRequest> = {}): SendRequest {
  return { to: TO, text: TEXT, from: 'Blossom', unicode: false, reference: `msg-${++seq}`, ...patch };
}

async function sendError(promise: Promise<unknown>): Promise<ProviderError> {
  const err = await promise.then(
    () => {
      throw new Error('expected the send to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  const pe = err as ProviderError;
  // Whatever went wrong, the recipient and the text stay out of the message.
  expect(pe.message).not.toContain(TO.slice(1));
  expect(pe.message).not.toContain(TEXT);
  return pe;
}

/** A local HTTP server standing in for our DLR webhook: collects JSON bodies and lets a test wait for one. */
interface CallbackServer {
  url: string;
  next(predicate: (body: Record<string, unknown>) => boolean): Promise<{ body: Record<string, unknown>; req: IncomingMessage }>;
  close(): Promise<void>;
}

async function startCallbackServer(): Promise<CallbackServer> {
  const received: Array<{ body: Record<string, unknown>; req: IncomingMessage }> = [];
  const waiters: Array<{ predicate: (b: Record<string, unknown>) => boolean; resolve: (r: (typeof received)[number]) => void }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry = { body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>, req };
      received.push(entry);
      for (const w of [...waiters]) {
        if (w.predicate(entry.body)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(entry);
        }
      }
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mitto/dlr?token=t0k3n`,
    next(predicate) {
      const hit = received.find((r) => predicate(r.body));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => waiters.push({ predicate, resolve }));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A one-handler HTTP server for behaviour the sandbox does not model. */
async function startRawServer(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  sandbox = await createSandbox({ apiKey: API_KEY, dlrDelayMs: 10, seed: 42 });
  baseUrl = await sandbox.listen(0);
  callbacks = await startCallbackServer();
});

afterEach(() => {
  sandbox.reset();
});

afterAll(async () => {
  await sandbox?.close();
  await callbacks?.close();
});

describe('Mitto client against the sandbox', () => {
  const client = () => createMittoProvider({ baseUrl, apiKey: API_KEY, timeoutMs: 5_000 });

  it('sends, is recorded with the right body and key, and gets a delivery report at the callback', async () => {
    const req = request({ callbackUrl: callbacks.url, text: 'Grüße aus Zürich 🌸', unicode: true });
    const result = await client().send(req);

    const [recorded] = sandbox.messages();
    expect(recorded).toMatchObject({
      id: result.providerMessageId,
      to: TO,
      from: 'Blossom',
      text: 'Grüße aus Zürich 🌸',
      type: 'Unicode',
      reference: req.reference,
      callback: callbacks.url,
      apiKey: API_KEY,
      answered: true,
    });
    expect(result.acceptedAt).toBeInstanceOf(Date);
    expect(Math.abs(result.acceptedAt.getTime() - recorded!.receivedAt.getTime())).toBeLessThan(1000);
    expect(result.textLength).toBe('Grüße aus Zürich 🌸'.length);

    const { body, req: dlrReq } = await callbacks.next((b) => b.reference === req.reference);
    expect(dlrReq.method).toBe('POST');
    expect(dlrReq.url).toBe('/webhooks/mitto/dlr?token=t0k3n');
    expect(body).toMatchObject({ id: result.providerMessageId, reference: req.reference, status: 'delivered', errorCode: null });
    expect(parseDeliveryReport(body)).toMatchObject({
      providerMessageId: result.providerMessageId,
      reference: req.reference,
      status: 'delivered',
      errorCode: null,
    });
  });

  it('sends GSM by default and omits the callback when none is given', async () => {
    const req = request();
    await client().send(req);
    const [recorded] = await sandbox.waitForMessages(1, 1000);
    expect(recorded).toMatchObject({ type: 'GSM', callback: null, reference: req.reference });
  });

  it('carries a failed delivery report with its error code', async () => {
    sandbox.setFaults({ dlrStatus: 'failed', dlrErrorCode: '034' });
    const req = request({ callbackUrl: callbacks.url });
    const result = await client().send(req);
    const { body } = await callbacks.next((b) => b.reference === req.reference);
    expect(parseDeliveryReport(body)).toMatchObject({ providerMessageId: result.providerMessageId, status: 'failed', errorCode: '034' });
  });

  it('retries a delivery report the callback refused', async () => {
    let calls = 0;
    let delivered!: (body: Record<string, unknown>) => void;
    const arrived = new Promise<Record<string, unknown>>((resolve) => (delivered = resolve));
    const flaky = await startRawServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        calls++;
        if (calls < 3) return void res.writeHead(500).end();
        res.writeHead(204).end();
        delivered(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      });
    });
    try {
      const req = request({ callbackUrl: `${flaky.url}/dlr` });
      const result = await client().send(req);
      expect(await arrived).toMatchObject({ id: result.providerMessageId, reference: req.reference, status: 'delivered' });
      expect(calls).toBe(3);
    } finally {
      await flaky.close();
    }
  });

  it.each([
    [1, 'transient', 'MITTO_INTERNAL_ERROR'],
    [2, 'permanent', 'MITTO_INVALID_TYPE'],
    [3, 'permanent', 'MITTO_EMPTY_MESSAGE'],
    [4, 'permanent', 'MITTO_INVALID_TEXT'],
    [5, 'permanent', 'MITTO_EMPTY_SENDER'],
    [6, 'permanent', 'MITTO_INVALID_SENDER'],
    [7, 'permanent', 'MITTO_EMPTY_RECEIVER'],
    [8, 'permanent', 'MITTO_INVALID_RECEIVER'],
  ] as const)('maps responseCode %i to %s %s', async (responseCode, kind, code) => {
    sandbox.setFaults({ permanentCode: responseCode, permanentRate: 1 });
    const err = await sendError(client().send(request()));
    expect(err).toMatchObject({ kind, code, providerCode: responseCode, httpStatus: 200 });
    expect(sandbox.messages()).toHaveLength(0);
    expect(sandbox.stats().responseCodes[responseCode]).toBe(1);
  });

  it('maps an unknown responseCode to transient with a stable code', async () => {
    sandbox.setFaults({ permanentCode: 42, permanentRate: 1 });
    expect(await sendError(client().send(request()))).toMatchObject({ kind: 'transient', code: 'MITTO_RESPONSE_42', providerCode: 42 });
  });

  it.each([
    ['an empty text', { text: '' }, 'MITTO_EMPTY_MESSAGE'],
    ['an empty sender', { from: '' }, 'MITTO_EMPTY_SENDER'],
    ['a sender too long', { from: 'BlossomShopXL' }, 'MITTO_INVALID_SENDER'],
    ['an empty receiver', { to: '' }, 'MITTO_EMPTY_RECEIVER'],
    ['a receiver that is not a number', { to: '+41 79 CALL ME' }, 'MITTO_INVALID_RECEIVER'],
  ] as const)('the sandbox validates like Mitto: %s', async (_label, patch, code) => {
    const err = await sendError(client().send(request(patch)));
    expect(err).toMatchObject({ kind: 'permanent', code });
  });

  it('maps 429 to rate_limited with Retry-After, then sends once the burst is over', async () => {
    sandbox.setFaults({ rateLimitBurst: 1 });
    const err = await sendError(client().send(request()));
    expect(err).toMatchObject({ kind: 'rate_limited', code: 'HTTP_429', httpStatus: 429, retryAfterMs: 1000 });
    await expect(client().send(request())).resolves.toMatchObject({ providerMessageId: expect.any(String) });
    expect(sandbox.stats()).toMatchObject({ rateLimited: 1, accepted: 1 });
  });

  it('reads Retry-After given as an HTTP date', async () => {
    const server = await startRawServer((_req, res) => {
      res.writeHead(429, { 'retry-after': new Date(Date.now() + 30_000).toUTCString() }).end();
    });
    try {
      const err = await sendError(createMittoProvider({ baseUrl: server.url, apiKey: API_KEY }).send(request()));
      expect(err.kind).toBe('rate_limited');
      expect(err.retryAfterMs).toBeGreaterThan(25_000);
      expect(err.retryAfterMs).toBeLessThanOrEqual(30_000);
    } finally {
      await server.close();
    }
  });

  it('maps 503 to transient', async () => {
    sandbox.setFaults({ errorRate: 1 });
    expect(await sendError(client().send(request()))).toMatchObject({ kind: 'transient', code: 'HTTP_503', httpStatus: 503 });
    expect(sandbox.messages()).toHaveLength(0);
  });

  it('maps a timeout to ambiguous, and the sandbox did receive the message', async () => {
    sandbox.setFaults({ timeoutRate: 1, hangMs: 120_000 });
    const req = request({ callbackUrl: callbacks.url });
    const started = Date.now();
    const err = await sendError(createMittoProvider({ baseUrl, apiKey: API_KEY, timeoutMs: 200 }).send(req));
    expect(err).toMatchObject({ kind: 'ambiguous', code: 'TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(5_000);

    const [recorded] = await sandbox.waitForMessages(1, 1000);
    expect(recorded).toMatchObject({ reference: req.reference, answered: false });
    expect(sandbox.stats()).toMatchObject({ accepted: 1, unanswered: 1 });
    // The provider did send it, so the delivery report that settles the ambiguity still arrives.
    const { body } = await callbacks.next((b) => b.reference === req.reference);
    expect(body).toMatchObject({ id: recorded!.id, status: 'delivered' });
  });

  it('maps a wrong API key to permanent MITTO_AUTH', async () => {
    const err = await sendError(createMittoProvider({ baseUrl, apiKey: 'not-the-key' }).send(request()));
    expect(err).toMatchObject({ kind: 'permanent', code: 'MITTO_AUTH', httpStatus: 401 });
    expect(err.message).toMatch(/API key/);
    expect(err.message).not.toContain('not-the-key');
    expect(sandbox.stats().unauthorized).toBe(1);
  });

  it('maps a refused connection to transient', async () => {
    const closed = await startRawServer(() => undefined);
    await closed.close();
    const err = await sendError(createMittoProvider({ baseUrl: closed.url, apiKey: API_KEY }).send(request()));
    expect(err).toMatchObject({ kind: 'transient', code: 'CONNECTION_FAILED' });
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('maps a connection dropped after the request was read to ambiguous', async () => {
    let bodies = 0;
    const server = await startRawServer((req) => {
      req.resume();
      req.on('end', () => {
        bodies++;
        req.socket.destroy();
      });
    });
    try {
      const err = await sendError(createMittoProvider({ baseUrl: server.url, apiKey: API_KEY }).send(request()));
      expect(err).toMatchObject({ kind: 'ambiguous', code: 'CONNECTION_RESET' });
      expect(bodies).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('maps a 2xx it cannot read to ambiguous', async () => {
    const server = await startRawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>');
    });
    try {
      const err = await sendError(createMittoProvider({ baseUrl: server.url, apiKey: API_KEY }).send(request()));
      expect(err).toMatchObject({ kind: 'ambiguous', code: 'MITTO_BAD_RESPONSE' });
    } finally {
      await server.close();
    }
  });

  it('rejects bad configuration up front', () => {
    expect(() => createMittoProvider({ baseUrl: 'not a url', apiKey: API_KEY })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => createMittoProvider({ baseUrl, apiKey: ' ' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('sandbox controls', () => {
  it('is deterministic for a given seed', async () => {
    const outcomes = async (): Promise<string[]> => {
      const sbx = await createSandbox({ seed: 7, faults: { errorRate: 0.3, rateLimitRate: 0.2, permanentCode: 8, permanentRate: 0.2 } });
      try {
        const results: string[] = [];
        for (let i = 0; i < 30; i++) {
          const res = await sbx.app.inject({
            method: 'POST',
            url: '/sms',
            headers: { 'x-mitto-api-key': 'k' },
            payload: { from: 'Blossom', to: TO, text: 'hi' },
          });
          results.push(`${res.statusCode}:${res.statusCode === 200 ? res.json<{ responseCode: number }>().responseCode : ''}`);
        }
        return results;
      } finally {
        await sbx.close();
      }
    };
    const first = await outcomes();
    expect(new Set(first).size).toBeGreaterThan(2);
    expect(await outcomes()).toEqual(first);
  });

  it('sets faults over HTTP, lists messages by reference and clears them', async () => {
    const sbx = await createSandbox({});
    try {
      const bad = await sbx.app.inject({ method: 'PUT', url: '/__sandbox/faults', payload: { errorRate: 2 } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED' } });

      const put = await sbx.app.inject({ method: 'PUT', url: '/__sandbox/faults', payload: { latencyMs: 1, dlrStatus: 'failed' } });
      expect(put.json()).toMatchObject({ latencyMs: 1, dlrStatus: 'failed', errorRate: 0 });

      for (const reference of ['a', 'b', 'a']) {
        const res = await sbx.app.inject({ method: 'POST', url: '/sms', headers: { 'x-mitto-api-key': 'any' }, payload: { from: '12345', to: TO, text: 'x', reference } });
        expect(res.json()).toMatchObject({ responseCode: 0 });
      }
      const listed = await sbx.app.inject({ method: 'GET', url: '/__sandbox/messages?reference=a' });
      expect(listed.json<{ messages: Array<{ reference: string; apiKey: string }> }>().messages).toEqual([
        expect.objectContaining({ reference: 'a', apiKey: '[redacted]' }),
        expect.objectContaining({ reference: 'a', apiKey: '[redacted]' }),
      ]);
      expect((await sbx.app.inject({ method: 'GET', url: '/__sandbox/stats' })).json()).toMatchObject({ requests: 3, accepted: 3 });
      expect((await sbx.app.inject({ method: 'DELETE', url: '/__sandbox/messages' })).json()).toEqual({ cleared: 3 });
      expect(sbx.messages()).toHaveLength(0);

      const noKey = await sbx.app.inject({ method: 'POST', url: '/sms', payload: { from: 'Blossom', to: TO, text: 'x' } });
      expect(noKey.statusCode).toBe(401);
    } finally {
      await sbx.close();
    }
  });

  it('accepts bulk sends', async () => {
    const sbx = await createSandbox({});
    try {
      const res = await sbx.app.inject({
        method: 'POST',
        url: '/smsbulk',
        headers: { 'x-mitto-api-key': 'any' },
        payload: { from: 'Blossom', text: 'Sale!', to: [TO, '+41791234568', 'nope'] },
      });
      const { messages } = res.json<{ messages: Array<{ id: string | null; responseCode: number }> }>();
      expect(messages.map((m) => m.responseCode)).toEqual([0, 0, 8]);
      expect(sbx.messages().map((m) => m.id)).toEqual([messages[0]!.id, messages[1]!.id]);
    } finally {
      await sbx.close();
    }
  });

  it('close() is idempotent and releases a held request', async () => {
    const sbx = await createSandbox({ faults: { timeoutRate: 1, hangMs: 600_000 } });
    const url = await sbx.listen(0);
    const pending = createMittoProvider({ baseUrl: url, apiKey: 'k', timeoutMs: 60_000 }).send(request());
    await sbx.waitForMessages(1, 2_000);
    await Promise.all([sbx.close(), sbx.close()]);
    expect(await sendError(pending)).toMatchObject({ kind: 'ambiguous', code: 'CONNECTION_RESET' });
  });
});
