/**
 * Reads a request body in either encoding the spec accepts, into a flat record of fields, never more than
 * {@link MAX_BODY_BYTES} of it.
 */
import { publicEcho, refuse } from '../core/errors';
import { MAX_BODY_BYTES } from '../core/token-request';

const utf8 = new TextDecoder();

/** The body as UTF-8 text, refused past the size limit, whether or not it declared its length. */
async function bodyText(request: Request): Promise<string> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) throw refuse('body_too_large');
  if (request.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        // The client hung up (or its connection broke) before the body ended: not a broker fault.
        throw refuse('client_disconnected', { message: String(error) }, { cause: error });
      }
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

/**
 * `application/x-www-form-urlencoded` (RFC 6749 §3.2: a parameter may appear once) or `application/json`
 * (an object).
 *
 * @throws {BrokerError} 415 for another content type, 413 past the size limit, 400 for a body that does not
 *   parse or that the client did not finish sending.
 */
export async function readFields(request: Request): Promise<Record<string, unknown>> {
  const type = mediaType(request.headers.get('content-type'));
  if (type === 'application/x-www-form-urlencoded') {
    const text = await bodyText(request);
    // curl -d sends this content type by default: a JSON body under it is the caller's mistake, said so.
    if (/^\s*[[{]/.test(text)) {
      throw refuse(
        'malformed_body',
        {},
        { description: 'the body is JSON but the content type says form: send Content-Type: application/json' },
      );
    }
    const params = new URLSearchParams(text);
    const fields: Record<string, string> = Object.create(null);
    for (const [name, value] of params) {
      if (Object.hasOwn(fields, name)) {
        throw refuse(
          'invalid_field',
          { field: name.slice(0, 128) },
          { description: `parameter ${publicEcho(name)} is repeated: send each parameter once` },
        );
      }
      fields[name] = value;
    }
    return fields;
  }
  if (type === 'application/json') {
    let body: unknown;
    try {
      body = JSON.parse(await bodyText(request));
    } catch (error) {
      if (error instanceof SyntaxError)
        throw refuse('malformed_body', {}, { description: 'request body is not valid JSON' });
      throw error;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw refuse('malformed_body', {}, { description: 'request body must be a JSON object' });
    }
    return body as Record<string, unknown>;
  }
  throw refuse('unsupported_media_type', { contentType: type });
}
