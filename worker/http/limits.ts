import { bodyLimit } from 'hono/body-limit';
import { refuse } from '../core/errors';
import { MAX_BODY_BYTES } from '../core/token-request';

/** Refuses a body over 16 KiB with 413, whether or not it declares its length. */
export const limitBody = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: () => {
    throw refuse('body_too_large');
  },
});
