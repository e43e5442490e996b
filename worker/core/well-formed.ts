/**
 * Well-formed text (issue 12 §1): a JavaScript string may hold a lone UTF-16 surrogate (JSON spells one as
 * `"\ud800"`), which no Unicode encoding can carry. Cedar refuses such a string, and the audit log and
 * headers could only mangle it, so every string the broker takes in is checked once, where it enters: the
 * body reader, the URL, and the claims of a JWT it reads.
 */

/**
 * Whether every string in `value` is well-formed (`String.prototype.isWellFormed`): strings, and the
 * member names and values of objects and arrays, however deep. Walks with its own stack, so a deeply
 * nested body cannot exhaust the call stack.
 */
export function isWellFormedDeep(value: unknown): boolean {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (typeof item === 'string') {
      if (!item.isWellFormed()) return false;
    } else if (Array.isArray(item)) {
      pending.push(...item);
    } else if (typeof item === 'object' && item !== null) {
      for (const [name, member] of Object.entries(item)) {
        if (!name.isWellFormed()) return false;
        pending.push(member);
      }
    }
  }
  return true;
}

/**
 * `text` cut to at most `max` UTF-16 code units for a record, never between the two halves of a pair: a
 * plain `slice` could leave a lone surrogate of what was well-formed.
 */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  const last = cut.charCodeAt(max - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}
