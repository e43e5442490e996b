/**
 * The way to D1 for the records of `/token` decisions, which the agents' objects hand back to the Worker
 * ({@link handOffRecords}): every record the isolate's requests handed over in the same 50 ms travels in one
 * message, whatever its agent, so a fleet of quiet agents pays one queue message per batch, not one per token.
 * The objects' own outboxes send through `audit/queue-transport.ts`. Each send is bounded, and one that fails
 * or does not answer in time leaves the records in their objects, which send again what D1 lacks a minute
 * later.
 */
import { bounded, SEND_DELAY_MS } from '../audit/queue-transport';
import { jsonArrays } from '../audit/record';

/**
 * Whether `/token` decisions' records come back to the Worker to be sent with its isolate's others (the
 * default), or are sent by their objects (`AUDIT_HAND_OFF = "off"`: each object's own messages, as every
 * other record is sent; the tests run so, where a test's drain decides the order records reach D1 in).
 */
export function handOffEnabled(env: Env): boolean {
  return env.AUDIT_HAND_OFF !== 'off';
}

/** A message's records, in bytes: under the queue's 128 KB per message. */
const MAX_MESSAGE_BYTES = 96_000;

/**
 * The records this isolate's requests handed over and not yet sent. Isolate-wide on purpose: the batch is
 * what the requests of many agents share. A record lost with the isolate is still in its object, which sends
 * it again once it sees D1 lack it.
 */
const waiting: string[] = [];
let sending = false;

/**
 * Hands committed records (their JSON, as their object committed them) to the audit queue: sent with every
 * other record handed over in the next 50 ms, in as few messages as fit, by the first
 * request that handed one over (its `background` keeps it running after its answer).
 */
export function handOffRecords(env: Env, background: (work: Promise<unknown>) => void, records: readonly string[]) {
  if (records.length === 0) return;
  waiting.push(...records);
  if (sending) return;
  sending = true;
  background(
    (async () => {
      await scheduler.wait(SEND_DELAY_MS);
      const batch = waiting.splice(0);
      sending = false;
      const bodies = jsonArrays(batch, MAX_MESSAGE_BYTES);
      for (let i = 0; i < bodies.length; i += MESSAGES_PER_SEND) {
        await bounded(
          'audit queue',
          env.AUDIT_QUEUE.sendBatch(
            bodies.slice(i, i + MESSAGES_PER_SEND).map((body) => ({ body, contentType: 'text' as const })),
          ),
        );
      }
    })().catch((error: unknown) => {
      console.warn(`audit records handed over were not sent; their objects send them again: ${error}`);
    }),
  );
}

/** Messages per `sendBatch`: the queue takes at most 256 KB in one call. */
const MESSAGES_PER_SEND = 2;
