/**
 * The earliest of some times an object keeps in storage (a row's expiry, a notification's next attempt),
 * kept in memory as well, so that scheduling the object's alarm reads no row.
 */

/** An earliest time (in whatever unit `read` answers), read from storage at start and after changes. */
export class Earliest {
  readonly #read: () => number | null;
  #at: number | null;

  /** `read` asks storage for the earliest time, null for none. */
  constructor(read: () => number | null) {
    this.#read = read;
    this.#at = read();
  }

  /** The earliest time, null for none. */
  get at(): number | null {
    return this.#at;
  }

  /** Whether a time is kept and it is before `now`. */
  before(now: number): boolean {
    return this.#at !== null && this.#at < now;
  }

  /** Notes a time just stored, without reading storage. */
  note(at: number): void {
    if (this.#at === null || at < this.#at) this.#at = at;
  }

  /** Reads storage again, after what was stored has changed in ways {@link note} cannot tell. */
  reread(): void {
    this.#at = this.#read();
  }
}
