/**
 * Reads the YAML policy files with line positions, so every error names its file and line.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { isNode, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';

/** A policy error: fails the build and names where it is. */
export class PolicyError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
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

/** Parses a YAML file and validates it against `schema`; errors carry file and line. */
export async function readYaml<S extends z.ZodType>(file: string, schema: S): Promise<SourceFile<z.output<S>>> {
  const path = relative(process.cwd(), file);
  const text = await readFile(file, 'utf8');
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  const [yamlError] = doc.errors;
  if (yamlError !== undefined) throw new PolicyError(path, counter.linePos(yamlError.pos[0]).line, yamlError.message);
  const lineOf = (at: readonly PropertyKey[]): number => {
    for (let depth = at.length; depth >= 0; depth -= 1) {
      const node = doc.getIn(at.slice(0, depth) as unknown[], true);
      if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
    }
    return 1;
  };
  const parsed = schema.safeParse(doc.toJS());
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    const where = issue?.path ?? [];
    throw new PolicyError(path, lineOf(where), `${where.join('.') || 'document'}: ${issue?.message ?? 'invalid'}`);
  }
  return { path, text, data: parsed.data, lineOf };
}
