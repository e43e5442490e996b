/** The billing meter, off (as wrangler.toml leaves it): its route is not there. */
import { describe, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { adminFetch, bearer } from '../helpers/admin';
import { expectError } from '../helpers/requests';

describe('GET /admin/meter, meter off', () => {
  it('is 404, as a path no route serves, even to an admin', async () => {
    await expectError(await adminFetch('/admin/meter', { headers: bearer(creds.admin) }), 404, 'not_found');
  });

  it('is 404 for every method', async () => {
    await expectError(await adminFetch('/admin/meter', { method: 'POST', body: {} }), 404, 'not_found');
  });
});
