/**
 * Reads an OAuth request body in either encoding the spec accepts, into a flat record of fields.
 */
import { refuse } from '../core/errors';

const utf8 = new TextDecoder();

/** The body as UTF-8 text (as `Request.text()` reads it, without workerd's warning for a form body). */
async function bodyText(request: Request): Promise<string> {
  return utf8.decode(await request.arrayBuffer());
}

function mediaType(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/**
 * `application/x-www-form-urlencoded` (RFC 6749 §3.2: a parameter may appear once) or `application/json`
 * (an object). The size limit is enforced by the `bodyLimit` middleware before this runs.
 *
 * @throws {BrokerError} 415 for another content type, 400 for a body that does not parse.
 */
export async function readFields(request: Request): Promise<Record<string, unknown>> {
  const type = mediaType(request.headers.get('content-type'));
  if (type === 'application/x-www-form-urlencoded') {
    const params = new URLSearchParams(await bodyText(request));
    const fields: Record<string, string> = {};
    for (const [name, value] of params) {
      if (Object.hasOwn(fields, name)) {
        throw refuse('invalid_field', { field: name }, { description: `parameter ${name} is repeated` });
      }
      fields[name] = value;
    }
    return fields;
  }
  if (type === 'application/json') {
    let body: unknown;
    try {
      body = JSON.parse(await bodyText(request));
    } catch {
      throw refuse('malformed_body', {}, { description: 'request body is not valid JSON' });
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw refuse('malformed_body', {}, { description: 'request body must be a JSON object' });
    }
    return body as Record<string, unknown>;
  }
  throw refuse('unsupported_media_type', { contentType: type });
}
