/**
 * A Durable Object's audit log. The object that decides (an agent's state, the kill switch, an intake shard)
 * commits the decision's record in its own storage, in the same transaction as the change it records, chained
 * to the record before it by hash; the record waits there until D1 holds it. Durable Object storage is
 * durable when the call that wrote it returns, so a record exists before anyone is told of its decision.
 *
 * Forwarding, two ways. A record the caller takes away ({@link AuditOutbox.append} with `handedOut`: a
 * `/token` decision's, which the Worker sends with the other records its isolate handed over in the same
 * 50 ms, whatever their agents: `worker/stores/audit-queue.ts`) is the caller's to send. Any other record
 * starts a short timer (the transport's `sendDelayMs`); when it runs, everything committed since the last send goes
 * to the audit queue, as few messages as fit. Either way, off every caller's path; the queue holds a message
 * durably once the send resolves, and its consumer writes to D1.
 *
 * A record stays here until D1 is seen to hold it ({@link AuditOutbox.flushDue}, about a minute after it was
 * committed, one D1 read for the whole chain): so an admin's lookup finds a token whose record is still on
 * its way, and the chain check knows what D1 must hold. A record D1 still lacks then (an isolate that went
 * away before its send, a queue that is behind) is sent again, once, from here. A failed send is tried
 * again with backoff, from the object's alarm.
 */
import { type ChainedRecord, type ChainHead, type DecidedRecord, EMPTY_CHAIN, linkRecord } from './record';

/** How long after a record's commit its object asks D1 whether it holds it (and sends again what it lacks). */
const CONFIRM_AFTER_MS = 60_000;
/** A message's records, in bytes: under the queue's 128 KB per message. */
const MAX_MESSAGE_BYTES = 96_000;
/** Records read for one message: more than fit in {@link MAX_MESSAGE_BYTES}. */
const MAX_MESSAGE_RECORDS = 1000;
/** Records D1 is asked about at once when the object confirms what it holds. */
const CONFIRM_PAGE = 5000;
/** Backoff after a failed send: 1 s, doubling, at most a minute. */
const retryDelay = (failures: number) => Math.min(60_000, 1000 * 2 ** Math.max(0, failures - 1));

/** Where an outbox's records go, and how it learns which D1 holds (`worker/audit/queue-transport.ts`). */
export interface AuditTransport {
  /** How long a record waits before its object sends it: the records of a busy object travel together. */
  readonly sendDelayMs: number;
  /** Resolves once the queue holds the message: a JSON array of chained records. */
  send(body: string): Promise<void>;
  /**
   * The records of `chain` after `after`, up to `upTo`, that D1 holds (number and hash, in order, at most
   * `limit`), and the chain's last record in the archive (null before the first), which holds every record
   * up to it.
   */
  held(
    chain: string,
    after: number,
    upTo: number,
    limit: number,
  ): Promise<{ rows: ChainHead[]; archived: ChainHead | null }>;
}

export interface Backlog {
  chain: string;
  /** Records committed here and not yet handed to the queue. */
  waiting: number;
  /** Records handed to the queue that D1 has not been seen to hold yet (checked about once a minute). */
  unconfirmed: number;
  /** Epoch ms at which the oldest and the newest record not yet handed on were committed; null when none. */
  oldestAt: number | null;
  newestAt: number | null;
  /** Failed sends in a row, and the last failure's message. */
  failures: number;
  lastError: string | null;
}

/** The `chain_hash` of a record as the outbox keeps it (JSON). */
const chainHashOf = (record: string) => (JSON.parse(record) as ChainedRecord).chainHash;

const TABLES = `CREATE TABLE IF NOT EXISTS audit_outbox (
    chain_seq INTEGER PRIMARY KEY, record TEXT NOT NULL, committed_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS audit_chain (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL)`;

export class AuditOutbox {
  readonly chain: string;
  readonly #sql: SqlStorage;
  readonly #transport: AuditTransport;
  #head: ChainHead;
  /** Every record up to this one is on its way: sent from here, or handed out to the caller that sends it. */
  #sentSeq: number;
  /** Records after {@link #sentSeq} handed out while earlier ones waited for the timer: the timer skips them. */
  readonly #handedOut = new Set<number>();
  /** Records up to this one were sent again after D1 was found to lack them: each is sent again once. */
  #resentSeq: number;
  /** When the oldest record kept here was committed (epoch ms): when D1 is next asked about it. */
  #oldestAt: number | null;
  /** When the oldest record not yet sent was committed (epoch ms). */
  #unsentAt: number | null;
  #failures = 0;
  #retryAt = 0;
  #lastError: string | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sending: Promise<boolean> | undefined;

  constructor(sql: SqlStorage, chain: string, transport: AuditTransport) {
    this.chain = chain;
    this.#sql = sql;
    this.#transport = transport;
    sql.exec(TABLES);
    this.#head = this.#loadHead();
    // An object that starts with records kept does not know which of them were sent: its alarm, due when the
    // oldest was committed plus a minute, asks D1 and sends again what D1 lacks (D1 takes each record once).
    this.#sentSeq = this.#head.seq;
    this.#resentSeq = this.#mark('acked').seq;
    this.#oldestAt = this.#oldest();
    this.#unsentAt = null;
  }

  /**
   * The chain's head: its newest waiting record, or the last one D1 holds when none waits. Objects from before
   * the head was read this way stored it as the `head` mark, which counts while it is the newest.
   */
  #loadHead(): ChainHead {
    const newest = this.#sql
      .exec<{ seq: number; record: string }>(
        'SELECT chain_seq AS seq, record FROM audit_outbox ORDER BY chain_seq DESC LIMIT 1',
      )
      .toArray()[0];
    const marks = [this.#mark('acked'), this.#mark('head')];
    if (newest !== undefined) marks.push({ seq: newest.seq, hash: chainHashOf(newest.record) });
    return marks.reduce((a, b) => (b.seq > a.seq ? b : a));
  }

  #mark(name: 'head' | 'acked'): ChainHead {
    const row = this.#sql
      .exec<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_chain WHERE name = ?', name)
      .toArray()[0];
    return row === undefined ? EMPTY_CHAIN : { seq: row.seq, hash: row.hash };
  }

  #setMark(name: 'acked', mark: ChainHead): void {
    this.#sql.exec('INSERT OR REPLACE INTO audit_chain (name, seq, hash) VALUES (?, ?, ?)', name, mark.seq, mark.hash);
  }

  #oldest(): number | null {
    return this.#sql.exec<{ at: number | null }>('SELECT MIN(committed_at) AS at FROM audit_outbox').one().at;
  }

  /**
   * Commits a record after the chain's head and, unless the caller takes it to send (`handedOut`), starts the
   * timer that sends it. Synchronous, so it lands in the same storage transaction as the caller's other writes
   * of the same step.
   */
  append(record: DecidedRecord, handedOut = false): ChainedRecord {
    const chained = linkRecord(record, this.chain, this.#head);
    const now = Date.now();
    this.#sql.exec(
      'INSERT INTO audit_outbox (chain_seq, record, committed_at) VALUES (?, ?, ?)',
      chained.chainSeq,
      JSON.stringify(chained),
      now,
    );
    // The head needs no row of its own: the record just written is it.
    this.#head = { seq: chained.chainSeq, hash: chained.chainHash };
    this.#oldestAt ??= now;
    if (handedOut && this.#unsentAt === null) this.#sentSeq = chained.chainSeq;
    else if (handedOut) this.#handedOut.add(chained.chainSeq);
    else {
      this.#unsentAt ??= now;
      this.#sendSoon();
    }
    return chained;
  }

  /** Commits a record the caller takes away to send ({@link append}, `handedOut`); returns it as committed. */
  appendHandedOut(record: DecidedRecord): string {
    return JSON.stringify(this.append(record, true));
  }

  /** Sends what is waiting a little later, unless a send is due already or a failed one is backing off. */
  #sendSoon(): void {
    if (this.#timer !== undefined || this.#failures > 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#send();
    }, this.#transport.sendDelayMs);
  }

  /** The last record committed here, and the last one D1 is known to hold. */
  heads(): { head: ChainHead; acked: ChainHead } {
    return { head: this.#head, acked: this.#mark('acked') };
  }

  backlog(): Backlog {
    const { waiting, unconfirmed, newest } = this.#sql
      .exec<{ waiting: number; unconfirmed: number; newest: number | null }>(
        `SELECT COUNT(*) FILTER (WHERE chain_seq > ?1) AS waiting, COUNT(*) FILTER (WHERE chain_seq <= ?1) AS unconfirmed,
           MAX(committed_at) FILTER (WHERE chain_seq > ?1) AS newest FROM audit_outbox`,
        this.#sentSeq,
      )
      .one();
    return {
      chain: this.chain,
      waiting,
      unconfirmed,
      oldestAt: this.#unsentAt,
      newestAt: newest,
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /**
   * The expiry of a token granted in a record still waiting here: what D1 cannot tell yet, so an admin's
   * lookup there plus this one finds every token.
   */
  pendingGrant(jti: string): { exp: number } | undefined {
    return this.#sql
      .exec<{ exp: number }>(
        `SELECT record ->> '$.tokenExp' AS exp FROM audit_outbox
         WHERE record ->> '$.event' = 'token.exchange' AND record ->> '$.decision' = 'granted'
           AND record ->> '$.tokenJti' = ?`,
        jti,
      )
      .toArray()[0];
  }

  /**
   * Whether a request for the task is recorded here and not yet known to be in D1, whatever its decision: a
   * task whose token waits for an approval is the agent's task before any grant.
   */
  asksForTask(taskId: string): boolean {
    return (
      this.#sql
        .exec<{ asked: number }>(
          `SELECT EXISTS (SELECT 1 FROM audit_outbox
             WHERE record ->> '$.event' = 'token.exchange' AND record ->> '$.taskId' = ?) AS asked`,
          taskId,
        )
        .one().asked === 1
    );
  }

  /**
   * When the object's alarm is next needed (epoch ms): to send again after a failed send, or to ask D1 about
   * the records kept here (which also sends again what an evicted object's timer never sent).
   */
  flushAt(): number | null {
    if (this.#failures > 0) return this.#retryAt;
    return this.#oldestAt === null ? null : this.#oldestAt + CONFIRM_AFTER_MS;
  }

  /**
   * The alarm's part, once a failed send's backoff has run out: once the oldest record kept here is due,
   * forgets what D1 holds and sends again what it lacks; sends what is still unsent.
   */
  async flushDue(): Promise<boolean> {
    const now = Date.now();
    if (this.#failures > 0 && now < this.#retryAt) return false;
    if (this.#oldestAt !== null && now >= this.#oldestAt + CONFIRM_AFTER_MS) return this.#flush(now - CONFIRM_AFTER_MS);
    if (this.#unsentAt !== null) return this.#send();
    return true;
  }

  /**
   * Forgets every record D1 holds, sends again what it lacks (however recent: the caller wants them there
   * now), then sends everything still unsent, whatever the backoff (tests, and admins waiting on the backlog).
   *
   * @returns whether everything committed before the call is now with the queue or in D1 (false after a
   *   failed send or D1 read; what failed stays for the next attempt).
   */
  flush(): Promise<boolean> {
    return this.#flush(Date.now());
  }

  /** {@link flush}, sending again only what D1 lacks among the records committed by `sentBefore` (epoch ms). */
  async #flush(sentBefore: number): Promise<boolean> {
    try {
      await this.#confirm();
      await this.#resendMissing(sentBefore);
    } catch (error) {
      this.#failed(error);
      return false;
    }
    this.#succeeded();
    // Records handed out while others waited for the timer: sent from here now too (D1 takes each once).
    this.#handedOut.clear();
    return this.#send();
  }

  /**
   * Sends again, once, the records on their way since `cutoff` (epoch ms) or before that D1 does not hold
   * (what is still kept after {@link #confirm}): an isolate that took a record away and went before sending
   * it, or a send from here that a queue lost.
   */
  async #resendMissing(cutoff: number): Promise<void> {
    for (;;) {
      const rows = this.#sql
        .exec<{ seq: number; record: string; bytes: number }>(
          `SELECT chain_seq AS seq, record, SUM(length(record) + 1) OVER (ORDER BY chain_seq) AS bytes
           FROM audit_outbox WHERE chain_seq > ? AND chain_seq <= ? AND committed_at <= ? ORDER BY chain_seq LIMIT ?`,
          this.#resentSeq,
          this.#sentSeq,
          cutoff,
          MAX_MESSAGE_RECORDS,
        )
        .toArray();
      const message = rows.filter((row, i) => i === 0 || row.bytes <= MAX_MESSAGE_BYTES);
      const last = message.at(-1);
      if (last === undefined) return;
      await this.#transport.send(`[${message.map((row) => row.record).join(',')}]`);
      this.#resentSeq = last.seq;
    }
  }

  /** Deletes the records D1 holds (matched by number and hash), a page at a time; moves the `acked` mark. */
  async #confirm(): Promise<void> {
    for (;;) {
      const from = this.#mark('acked').seq;
      if (from >= this.#head.seq) return;
      const { rows, archived } = await this.#transport.held(this.chain, from, this.#head.seq, CONFIRM_PAGE);
      // Records the archive took from D1 before this object saw them there: held, through the archived head.
      const archivedHere =
        archived !== null && archived.seq > from && this.#recordHash(archived.seq) === archived.hash
          ? this.#sql
              .exec<{ seq: number; record: string }>(
                'SELECT chain_seq AS seq, record FROM audit_outbox WHERE chain_seq <= ? ORDER BY chain_seq',
                archived.seq,
              )
              .toArray()
              .map((row) => ({ seq: row.seq, hash: chainHashOf(row.record) }))
          : [];
      const held = [...archivedHere, ...rows.filter((row) => archivedHere.every((a) => a.seq !== row.seq))].sort(
        (a, b) => a.seq - b.seq,
      );
      if (held.length > 0) {
        this.#sql.exec(
          `DELETE FROM audit_outbox WHERE EXISTS (SELECT 1 FROM json_each(?1) h
             WHERE h.value ->> '$[0]' = audit_outbox.chain_seq AND h.value ->> '$[1]' = audit_outbox.record ->> '$.chainHash')`,
          JSON.stringify(held.map((row) => [row.seq, row.hash])),
        );
        // The mark moves to the last record D1 holds below every record still kept: what it holds without a gap.
        const kept = this.#sql.exec<{ seq: number | null }>('SELECT MIN(chain_seq) AS seq FROM audit_outbox').one().seq;
        const through = held.filter((row) => kept === null || row.seq < kept).at(-1);
        if (through !== undefined && through.seq > from) {
          this.#setMark('acked', through);
          this.#sentSeq = Math.max(this.#sentSeq, through.seq);
        }
        this.#oldestAt = this.#oldest();
        if (this.#oldestAt === null) this.#unsentAt = null;
      }
      if (rows.length < CONFIRM_PAGE) return;
    }
  }

  /** The `chain_hash` of the record kept here at `seq`, if one is. */
  #recordHash(seq: number): string | undefined {
    const row = this.#sql
      .exec<{ record: string }>('SELECT record FROM audit_outbox WHERE chain_seq = ?', seq)
      .toArray()[0];
    return row === undefined ? undefined : chainHashOf(row.record);
  }

  /** Sends every record committed and not yet sent, in order, as few messages as fit; one send at a time. */
  #send(): Promise<boolean> {
    if (this.#sending !== undefined) return this.#sending.then(() => this.#send());
    const run = this.#sendAll().finally(() => {
      this.#sending = undefined;
    });
    this.#sending = run;
    return run;
  }

  async #sendAll(): Promise<boolean> {
    for (;;) {
      const rows = this.#sql
        .exec<{ seq: number; record: string; bytes: number }>(
          `SELECT chain_seq AS seq, record, SUM(length(record) + 1) OVER (ORDER BY chain_seq) AS bytes
           FROM audit_outbox WHERE chain_seq > ? ORDER BY chain_seq LIMIT ?`,
          this.#sentSeq,
          MAX_MESSAGE_RECORDS,
        )
        .toArray();
      // At least one record per message, however long.
      const message = rows.filter((row, i) => i === 0 || row.bytes <= MAX_MESSAGE_BYTES);
      const last = message.at(-1);
      if (last === undefined) {
        this.#unsentAt = null;
        return true;
      }
      // What a caller took away is the caller's to send.
      const mine = message.filter((row) => !this.#handedOut.has(row.seq));
      try {
        // Sent as committed: the consumer reads the JSON in D1's query, so nothing here parses it.
        if (mine.length > 0) await this.#transport.send(`[${mine.map((row) => row.record).join(',')}]`);
      } catch (error) {
        this.#failed(error);
        return false;
      }
      for (const row of message) this.#handedOut.delete(row.seq);
      this.#sentSeq = last.seq;
      this.#succeeded();
      this.#unsentAt = this.#committedAt(last.seq + 1);
    }
  }

  #succeeded(): void {
    this.#failures = 0;
    this.#retryAt = 0;
    this.#lastError = null;
  }

  #failed(error: unknown): void {
    this.#failures += 1;
    this.#retryAt = Date.now() + retryDelay(this.#failures);
    this.#lastError = error instanceof Error ? error.message : String(error);
  }

  #committedAt(seq: number): number | null {
    return (
      this.#sql
        .exec<{ at: number }>(
          'SELECT committed_at AS at FROM audit_outbox WHERE chain_seq >= ? ORDER BY chain_seq LIMIT 1',
          seq,
        )
        .toArray()[0]?.at ?? null
    );
  }
}
