/**
 * Repeated members in a JSON text. `JSON.parse` keeps the last of two members with one name, while a proxy
 * or a log in front of the broker may read the first: RFC 8259 §4 leaves the meaning open, so the broker
 * refuses such a body, as RFC 6749 §3.2 has it refuse a repeated form parameter.
 */

/**
 * The first member name that appears twice in one object of `text`, at any depth, or undefined. `text` must
 * be valid JSON (it has been parsed already): only strings, brackets, commas and colons are looked at.
 */
export function firstRepeatedMember(text: string): string | undefined {
  // One entry per open object (its member names so far) or array (null).
  const open: (Set<string> | null)[] = [];
  let nameNext = false;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i];
    if (char === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const members = open.at(-1);
      if (nameNext && members) {
        const name = JSON.parse(text.slice(i, end + 1)) as string;
        if (members.has(name)) return name;
        members.add(name);
      }
      nameNext = false;
      i = end;
    } else if (char === '{') {
      open.push(new Set());
      nameNext = true;
    } else if (char === '[') {
      open.push(null);
    } else if (char === '}' || char === ']') {
      open.pop();
    } else if (char === ',') {
      nameNext = open.at(-1) instanceof Set;
    }
  }
  return undefined;
}
