/**
 * Output a test causes on purpose. A test that makes the broker fail on purpose silences the line the broker
 * logs for it, and asserts that line was logged: the silence is itself a check, and any other test's output
 * still shows.
 */
import { type MockInstance, onTestFinished, vi } from 'vitest';

/** Silences `console[level]` until the calling test ends, and returns the spy for the test to assert on. */
export function expectConsole(level: 'error' | 'warn'): MockInstance<(...data: unknown[]) => void> {
  const spy = vi.spyOn(console, level).mockImplementation(() => {});
  onTestFinished(() => spy.mockRestore());
  return spy;
}
