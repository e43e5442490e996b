/**
 * Reads a request body in either encoding the spec accepts, into a flat record of fields, never more than
 * {@link MAX_BODY_BYTES} of it.
 */
import { publicEcho, refuse } from '../core/errors';
import { MAX_BODY_BYTES } from '../core/token-request';
import { clip, isWellFormedDeep } from '../core/well-formed';
import { firstRepeatedMember } from './json-members';

const utf8 = new TextDecoder();

/** A read of the body; one that fails means the client hung up (or its connection broke): not a broker fault. */
async function readOrDisconnected<T>(read: Promise<T>): Promise<T> {
  try {
    return await read;
  } catch (error) {
    throw refuse('client_disconnected', { message: String(error) }, { cause: error });
  }
}

/** The body as UTF-8 text, refused past the size limit, whether or not it declared its length. */
async function bodyText(request: Request): Promise<string> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) throw refuse('body_too_large');
  if (request.body === null) return '';
  // A declared length bounds the body over HTTP (the runtime reads no further): read at once, a fraction of
  // the cost of a chunk-by-chunk read, and counted after all. Without one, chunk by chunk, counting.
  if (declared !== null) {
    const body = await readOrDisconnected(request.arrayBuffer());
    if (body.byteLength > MAX_BODY_BYTES) throw refuse('body_too_large');
    return utf8.decode(body);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  try {
    for (;;) {
      const chunk = await readOrDisconnected(reader.read());
      if (chunk.done) break;
      size += chunk.value.byteLength;
      if (size > MAX_BODY_BYTES) throw refuse('body_too_large');
      chunks.push(chunk.value);
    }
  } finally {
    reader.releaseLock();
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return utf8.decode(body);
}

function mediaType(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** The fields of a form body (RFC 6749 §3.2: a parameter may appear once). */
function formFields(text: string): Record<string, string> {
  // curl -d sends this content type by default: a JSON body under it is the caller's mistake, said so.
  if (/^\s*[[{]/.test(text)) {
    throw refuse(
      'malformed_body',
      {},
      { description: 'the body is JSON but the content type says form: send Content-Type: application/json' },
    );
  }
  const fields: Record<string, string> = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    if (Object.hasOwn(fields, name)) {
      throw refuse(
        'invalid_field',
        { field: clip(name, 128) },
        { description: `parameter ${publicEcho(name)} is repeated: send each parameter once` },
      );
    }
    fields[name] = value;
  }
  return fields;
}

/** The members of a JSON body, which must be an object. */
function jsonFields(text: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    if (error instanceof SyntaxError)
      throw refuse('malformed_body', {}, { description: 'request body is not valid JSON' });
    throw error;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw refuse('malformed_body', {}, { description: 'request body must be a JSON object' });
  }
  const repeated = firstRepeatedMember(text);
  if (repeated !== undefined) {
    throw refuse(
      'invalid_field',
      { field: clip(repeated, 128) },
      { description: `member ${publicEcho(repeated)} is repeated: send each member once` },
    );
  }
  return body as Record<string, unknown>;
}

/**
 * `application/x-www-form-urlencoded` (RFC 6749 §3.2: a parameter may appear once) or `application/json`
 * (an object, each member once, at any depth). Every string in it, member names included, is well-formed: JSON can spell a lone surrogate
 * (`"\ud800"`), which Cedar, the audit log and headers cannot take, so it is refused here, before anything
 * is consumed.
 *
 * @throws {BrokerError} 415 for another content type, 413 past the size limit, 400 for a body that does not
 *   parse, that holds a lone surrogate, or that the client did not finish sending.
 */
export async function readFields(request: Request): Promise<Record<string, unknown>> {
  const type = mediaType(request.headers.get('content-type'));
  let fields: Record<string, unknown>;
  if (type === 'application/x-www-form-urlencoded') fields = formFields(await bodyText(request));
  else if (type === 'application/json') fields = jsonFields(await bodyText(request));
  else throw refuse('unsupported_media_type', { contentType: type });
  if (!isWellFormedDeep(fields)) {
    throw refuse(
      'malformed_body',
      { check: 'lone_surrogate' },
      { description: 'request body has a string that is not well-formed Unicode (a lone surrogate)' },
    );
  }
  return fields;
}

/**
 * A URL's query as a listing validates it: each name with its first value, as Hono's `query()` reads it, and a
 * parameter whose name is empty kept (Hono drops it, so `?=x` passed a strict schema unseen). Null-prototype:
 * the names are the caller's.
 */
export function readQuery(request: Request): Record<string, string> {
  const fields: Record<string, string> = Object.create(null);
  for (const [name, value] of new URL(request.url).searchParams) if (!Object.hasOwn(fields, name)) fields[name] = value;
  return fields;
}
