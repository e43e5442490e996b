/**
 * Agents' lifecycle dates in `policies/agents.yaml`: `review_by` and `expires` compile into the bundle, and
 * `npm run deploy:check` warns on an agent past review, without a review date, or expired. Dates are derived
 * from the clock.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compilePolicyFolder } from '../../scripts/policy/compile';
import { utcDay } from '../../worker/core/lifecycle';
import { codes, Fixture } from './fixture';

const DAY_MS = 86_400_000;
const AGENTS = 'policies/agents.yaml';
let fixture: Fixture;

beforeEach(async () => {
  fixture = await Fixture.create();
});
afterEach(async () => {
  await fixture.remove();
});

/** Sets the `review_by` of the fixture's first agent (triage-bot). */
const reviewBy = (date: string) => fixture.replace(AGENTS, /review_by: \S+/, `review_by: ${date}`);

describe('review_by and expires', () => {
  it('compile into the bundle', async () => {
    const review = utcDay(Date.now() + 30 * DAY_MS);
    const expires = utcDay(Date.now() + 60 * DAY_MS);
    await reviewBy(review);
    await fixture.replace(
      AGENTS,
      'description: Triage support tickets',
      `description: Triage\n    expires: ${expires}`,
    );
    const { bundle } = await compilePolicyFolder(fixture.path('policies'));
    expect(bundle?.agents['triage-bot']).toMatchObject({ reviewBy: review, expires });
    expect(bundle?.agents['release-bot']?.expires).toBeUndefined();
  });

  it('refuses a date that is not YYYY-MM-DD', async () => {
    await reviewBy('next-spring');
    const { bundle, problems } = await compilePolicyFolder(fixture.path('policies'));
    expect(bundle).toBeUndefined();
    expect(problems.map((problem) => problem.code)).toContain('invalid-value');
  });
});

describe('npm run deploy:check', () => {
  it('passes agents whose review is still ahead, today included', async () => {
    await reviewBy(utcDay(Date.now()));
    expect(codes(await fixture.check())).toEqual([]);
  });

  it('warns on an agent past its review date, and does not stop the deploy', async () => {
    await reviewBy(utcDay(Date.now() - DAY_MS));
    const report = await fixture.check();
    expect(report.problems.map((problem) => [problem.code, problem.severity])).toEqual([
      ['agent-past-review', 'warning'],
    ]);
    expect(report.problems[0]?.message).toContain('triage-bot');
    expect(report.bundle).toBeDefined();
  });

  it('warns on an agent without a review date', async () => {
    await fixture.replace(AGENTS, /\n {4}review_by: \S+/, '');
    expect(codes(await fixture.check())).toEqual(['agent-no-review-date']);
  });

  it('warns on an agent whose expires date has come', async () => {
    await fixture.replace(AGENTS, 'description: Triage support tickets', `expires: ${utcDay(Date.now())}`);
    expect(codes(await fixture.check())).toEqual(['agent-expired']);
  });
});
