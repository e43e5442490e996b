/**
 * Reads `wrangler.toml` with the line of every key, so a deploy problem in it names its line. Only what a
 * check asks for is read: the checks never assume which bindings or Durable Objects exist.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { type AST, getStaticTOMLValue, ParseError, parseTOML } from 'toml-eslint-parser';

export interface WranglerConfig {
  path: string;
  value: Record<string, unknown>;
  /** The line of the key at `path` (e.g. `['d1_databases', 0, 'database_id']`), or of its nearest ancestor. */
  lineOf(path: readonly (string | number)[]): number;
}

type Lines = Map<string, number>;

const keyOf = (path: readonly (string | number)[]) => path.join('\u0000');

function recordValue(node: AST.TOMLContentNode, path: (string | number)[], lines: Lines) {
  if (node.type === 'TOMLInlineTable') {
    for (const pair of node.body) recordPair(pair, path, lines);
  } else if (node.type === 'TOMLArray') {
    for (const [index, element] of node.elements.entries()) {
      const at = [...path, index];
      lines.set(keyOf(at), element.loc.start.line);
      recordValue(element, at, lines);
    }
  }
}

function recordPair(pair: AST.TOMLKeyValue, base: (string | number)[], lines: Lines) {
  const keys = getStaticTOMLValue(pair.key);
  for (let depth = 1; depth <= keys.length; depth += 1) {
    const at = [...base, ...keys.slice(0, depth)];
    if (!lines.has(keyOf(at))) lines.set(keyOf(at), pair.loc.start.line);
  }
  recordValue(pair.value, [...base, ...keys], lines);
}

/**
 * Parses a wrangler TOML configuration.
 *
 * @returns the configuration, or the line and message of the syntax error that stops it.
 */
export async function readWranglerConfig(
  file: string,
): Promise<{ config: WranglerConfig } | { error: { path: string; line: number; message: string } }> {
  const path = relative(process.cwd(), file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { error: { path, line: 1, message: `cannot read the file: ${(error as Error).message}` } };
  }
  let ast: AST.TOMLProgram;
  try {
    ast = parseTOML(text);
  } catch (error) {
    if (!(error instanceof ParseError)) throw error;
    return { error: { path, line: error.lineNumber, message: error.message } };
  }
  const lines: Lines = new Map();
  const [top] = ast.body;
  for (const node of top.body) {
    if (node.type === 'TOMLKeyValue') {
      recordPair(node, [], lines);
      continue;
    }
    for (let depth = 1; depth <= node.resolvedKey.length; depth += 1) {
      const at = node.resolvedKey.slice(0, depth);
      if (!lines.has(keyOf(at))) lines.set(keyOf(at), node.loc.start.line);
    }
    for (const pair of node.body) recordPair(pair, node.resolvedKey, lines);
  }
  const lineOf = (at: readonly (string | number)[]) => {
    for (let depth = at.length; depth > 0; depth -= 1) {
      const line = lines.get(keyOf(at.slice(0, depth)));
      if (line !== undefined) return line;
    }
    return 1;
  };
  return { config: { path, value: getStaticTOMLValue(ast) as Record<string, unknown>, lineOf } };
}
