/**
 * A TCP pass-through between the service under test and PostgreSQL that counts what the service asks of the database,
 * read from the wire protocol of each client connection: simple queries (`Q`), executions of prepared or unnamed
 * statements (`E`, the extended protocol node-postgres uses for parameterised queries), syncs (`S`, one per
 * extended-protocol round trip) and BEGINs. Server → client bytes are piped untouched.
 *
 * Why a proxy: pg_stat_statements needs `shared_preload_libraries` (a server restart), and `pg_stat_database` counts
 * every client of the shared `test` database, other people's test suites included. The proxy counts this service's
 * statements and nothing else.
 */
import net from 'node:net';

export interface SqlCounts {
  /** Statements executed: simple queries plus executes of the extended protocol (BEGIN and COMMIT included). */
  statements: number;
  /** Client → server round trips: simple queries plus syncs. */
  roundTrips: number;
  /** Explicit transactions (BEGIN); every statement outside one is a transaction of its own. */
  transactions: number;
  /** Connections opened through the proxy. */
  connections: number;
}

export interface SqlCounter {
  /** `host:port` to put in the service's DATABASE_URL in place of PostgreSQL's. */
  readonly address: string;
  counts(): SqlCounts;
  close(): Promise<void>;
}

// Codes of the untyped messages a client may send before its startup message.
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const Q = 0x51;
const P = 0x50;
/** Bytes of a query's text read to tell a BEGIN. */
const PEEK = 6;
const E = 0x45;
const S = 0x53;

export async function startSqlCounter(upstream: { host: string; port: number }): Promise<SqlCounter> {
  const totals: SqlCounts = { statements: 0, roundTrips: 0, transactions: 0, connections: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    totals.connections++;
    const server = net.connect(upstream.port, upstream.host);
    sockets.add(client);
    sockets.add(server);
    client.setNoDelay(true);
    server.setNoDelay(true);
    // Parser state: the untyped startup phase, the header bytes wanted and read so far, the body bytes still to skip.
    let startup = true;
    let want = 8;
    let header = Buffer.alloc(0);
    let skip = 0;
    const count = (chunk: Buffer) => {
      let i = 0;
      while (i < chunk.length) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - i);
          skip -= n;
          i += n;
          continue;
        }
        // Startup-phase messages are length + code (8 bytes tell an SSL request); others are type + length, and for a
        // query or a parse, the first bytes of its text (to tell a BEGIN).
        const take = Math.min(want - header.length, chunk.length - i);
        header = Buffer.concat([header, chunk.subarray(i, i + take)]);
        i += take;
        if (header.length < want) break;
        if (startup) {
          const code = header.readInt32BE(4);
          skip = header.readInt32BE(0) - 8;
          if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) startup = false;
        } else {
          const type = header[0]!;
          const body = header.readInt32BE(1) - 4;
          if ((type === Q || type === P) && header.length === 5 && body > 0) {
            want = 5 + Math.min(PEEK, body);
            continue;
          }
          skip = body - (header.length - 5);
          // A parse's body starts with the statement's name: empty (a NUL) for the unnamed statements node-postgres uses.
          const text = header.subarray(type === P ? 6 : 5).toString('latin1');
          if ((type === Q || type === P) && /^begin/i.test(text)) totals.transactions++;
          if (type === Q) {
            totals.statements++;
            totals.roundTrips++;
          } else if (type === E) totals.statements++;
          else if (type === S) totals.roundTrips++;
        }
        header = Buffer.alloc(0);
        want = startup ? 8 : 5;
      }
    };
    client.on('data', (chunk: Buffer) => {
      count(chunk);
      if (!server.write(chunk)) client.pause();
    });
    server.on('drain', () => client.resume());
    server.pipe(client);
    const close = () => {
      client.destroy();
      server.destroy();
      sockets.delete(client);
      sockets.delete(server);
    };
    client.on('error', close).on('close', close);
    server.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${address.port}`,
    counts: () => ({ ...totals }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
