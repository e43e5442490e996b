/**
 * Reads the YAML policy files with line positions, and collects every problem found in them, so one run
 * names each problem with its file and line instead of stopping at the first.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { isNode, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';

/** What is wrong with a policy folder. Stable: `npm run deploy:check` and its tests key on these. */
export type PolicyProblemCode =
  /** A file that is not YAML, or that cannot be read. */
  | 'yaml-syntax'
  /** A value the file's schema refuses. */
  | 'invalid-value'
  /** Two entries with one id: agent, issuer, credential, API audience, secret, kid, policy `@id`. */
  | 'duplicate'
  /** A registered public key that cannot be used. */
  | 'invalid-key'
  /** An agent bound to an issuer `issuers.yaml` does not declare. */
  | 'unknown-issuer'
  /** An agent id that is also a trusted issuer's id or URL. */
  | 'id-collision'
  /** Cedar that does not parse, or does not validate against the schema. */
  | 'cedar-invalid'
  /** A bad `@max_ttl`, `@approvals`, `@approver_group`, `@four_eyes`, `@rollback`, `@rollback_action` or `@no_rollback`. */
  | 'cedar-annotation'
  /** A grant that needs approval and says neither what undoes it nor why nothing does. */
  | 'rollback-missing'
  /** A policy folder without `.cedar` files. */
  | 'no-cedar-files'
  /** For deploy: an agent marked `demo: true` (its private key is public). */
  | 'demo-agent'
  /** For deploy: an admin credential marked `demo: true` (its secret is public). */
  | 'demo-admin'
  /** For deploy: an API's introspection credential marked `demo: true` (its secret is public). */
  | 'demo-api';

/** One problem in a policy folder, where it is, and how to fix it when that is not obvious. */
export interface PolicyProblem {
  code: PolicyProblemCode;
  file: string;
  line: number;
  message: string;
  fix?: string;
}

/** `file:line: message`, the form editors and terminals link. */
export function formatProblem(problem: Pick<PolicyProblem, 'file' | 'line' | 'message'>): string {
  return `${problem.file}:${problem.line}: ${problem.message}`;
}

/** A policy folder that does not build: carries every problem found, each naming its file and line. */
export class PolicyError extends Error {
  constructor(readonly problems: readonly PolicyProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

/** Collects the problems of one compile. */
export class Problems {
  readonly list: PolicyProblem[] = [];

  add(code: PolicyProblemCode, file: string, line: number, message: string, fix?: string): void {
    this.list.push({ code, file, line, message, ...(fix !== undefined && { fix }) });
  }

  /** Adds every issue of a failed zod parse; `at` is where the parsed value sits in the file. */
  addIssues(file: SourceFile<unknown>, error: z.ZodError, at: readonly PropertyKey[] = []): void {
    for (const issue of error.issues) {
      const where = [...at, ...issue.path];
      this.add('invalid-value', file.path, file.lineOf(where), `${where.join('.') || 'document'}: ${issue.message}`);
    }
  }
}

/** Line (1-based) of a character offset in `text`. */
export function lineAt(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

export interface SourceFile<T> {
  path: string;
  text: string;
  data: T;
  /** The line of the value at `path` in the file (or of its nearest ancestor that exists). */
  lineOf(path: readonly PropertyKey[]): number;
}

/** An entry of a list in a policy file that passed its schema, with its index for line lookups. */
export interface Entry<T> {
  index: number;
  value: T;
}

/**
 * Parses a YAML file and validates it against `schema`. Problems (a missing file, YAML syntax, schema
 * issues, all of them) go to `problems`; the result is undefined when the file cannot be used.
 */
export async function readYaml<S extends z.ZodType>(
  file: string,
  schema: S,
  problems: Problems,
): Promise<SourceFile<z.output<S>> | undefined> {
  const path = relative(process.cwd(), file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    problems.add('yaml-syntax', path, 1, `cannot read the file: ${(error as Error).message}`);
    return undefined;
  }
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const yamlError of doc.errors) {
      problems.add('yaml-syntax', path, counter.linePos(yamlError.pos[0]).line, yamlError.message);
    }
    return undefined;
  }
  const lineOf = (at: readonly PropertyKey[]): number => {
    for (let depth = at.length; depth >= 0; depth -= 1) {
      const node = doc.getIn(at.slice(0, depth) as unknown[], true);
      if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
    }
    return 1;
  };
  const source: SourceFile<unknown> = { path, text, data: undefined, lineOf };
  const parsed = schema.safeParse(doc.toJS());
  if (!parsed.success) {
    problems.addIssues(source, parsed.error);
    return undefined;
  }
  return { ...source, data: parsed.data };
}

/**
 * Validates each entry of `list` (the list at `key` in `file`) on its own, so one bad entry does not hide the checks of the
 * others. Returns the entries that passed; the issues of the others go to `problems`.
 */
export function validEntries<S extends z.ZodType>(
  file: SourceFile<unknown>,
  key: string,
  list: readonly unknown[],
  schema: S,
  problems: Problems,
): Entry<z.output<S>>[] {
  const entries: Entry<z.output<S>>[] = [];
  for (const [index, raw] of list.entries()) {
    const parsed = schema.safeParse(raw);
    if (parsed.success) entries.push({ index, value: parsed.data });
    else problems.addIssues(file, parsed.error, [key, index]);
  }
  return entries;
}
