/**
 * A Durable Object's one alarm, shared by everything the object needs done later (forwarding audit records,
 * forgetting expired rows, delivering notifications): set to the earliest time asked for, and remembered so
 * that a request asking for a later time costs no storage call.
 */
export class AlarmSchedule {
  readonly #storage: DurableObjectStorage;
  /** Epoch ms the alarm is set for, null for none, undefined until read from storage. */
  #at: number | null | undefined;

  constructor(storage: DurableObjectStorage) {
    this.#storage = storage;
  }

  /** Makes sure the alarm fires no later than the earliest of `times` (nulls ignored). */
  async noLaterThan(...times: (number | null | undefined)[]): Promise<void> {
    const wanted = times.filter((time): time is number => typeof time === 'number');
    if (wanted.length === 0) return;
    const at = Math.min(...wanted);
    if (this.#at === undefined) this.#at = await this.#storage.getAlarm();
    if (this.#at !== null && this.#at <= at) return;
    await this.#storage.setAlarm(at);
    this.#at = at;
  }

  /** Called first thing in `alarm()`: the runtime has cleared the alarm that fired. */
  fired(): void {
    this.#at = null;
  }
}
