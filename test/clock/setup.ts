/**
 * First in every project's `setupFiles`: moves the clock of this test isolate (or Node process) by the
 * run's `clockOffsetMs` (vitest.config.ts; 365 days under `npm run test:next-year`, else 0) before anything
 * imports the worker or reads the time.
 */
import { inject } from 'vitest';
import { shiftClock } from './offset';

shiftClock(inject('clockOffsetMs'));
