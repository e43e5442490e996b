/**
 * Where the record of a refusal goes, for `/token` and every other decision endpoint alike: the named
 * agent's chain, or an intake shard in full when its object cannot record it; an intake shard in full for a
 * known caller (an admin); sampled for a caller not known. Recording never throws: the refusal is answered
 * anyway. The stores are passed in, so that the `/token` pipeline's tests can fake them.
 */
import { BrokerError, refuse } from '../core/errors';
import { type AuditDraft, type AuditOutcome, type DecidedRecord, decideRecord } from './record';

/** The stores a refusal's record may go to. */
export interface RefusalStores {
  agents: {
    /** Records a decision in the agent's chain, through its object. */
    record(agentId: string, draft: AuditDraft, outcome: AuditOutcome): Promise<void>;
  };
  /** Commits a record in an intake shard, in full. */
  recordInIntake(record: DecidedRecord): Promise<void>;
  /** Records (or counts, past the minute's sample) a refusal of a caller not known yet, in an intake shard. */
  recordUnverified(record: DecidedRecord): Promise<void>;
}

/** How a refusal ends its record. */
export type RefusedOutcome = Extract<AuditOutcome, { decision: 'refused' }>;

/** A refusal as its record states it: the tagged reason and its detail. */
export function refusalOutcome(refusal: BrokerError): RefusedOutcome {
  return { decision: 'refused', reason: refusal.reason, details: { ...refusal.detail } };
}

/**
 * A refusal as thrown, or anything else as a generic internal error (500) with no detail, logged with
 * `where` it happened.
 */
export function asRefusal(error: unknown, where: string): BrokerError {
  if (error instanceof BrokerError) return error;
  console.error(`unexpected error in ${where}`, error);
  return refuse('internal_error', { error: error instanceof Error ? error.name : typeof error });
}

/**
 * Records a refusal that no Durable Object recorded with its decision: in the agent's chain when `draft`
 * names an agent (in an intake shard, in full, when its object does not answer: that may be the refusal);
 * in an intake shard in full when it names an actor; sampled when the caller is not known. A failure is
 * logged, never thrown.
 */
export async function recordRefusal(
  stores: RefusalStores,
  draft: AuditDraft,
  outcome: RefusedOutcome,
  policyVersion: string,
): Promise<void> {
  const record = () => decideRecord(draft, outcome, policyVersion);
  try {
    if (typeof draft.agent === 'string') {
      const agent = draft.agent;
      await stores.agents.record(agent, draft, outcome).catch(async (error: unknown) => {
        console.error('agent object could not record a refusal', agent, error);
        await stores.recordInIntake(record());
      });
    } else if (typeof draft.actor === 'string') await stores.recordInIntake(record());
    else await stores.recordUnverified(record());
  } catch (error) {
    console.error('could not record a refusal', outcome.reason, error);
  }
}
