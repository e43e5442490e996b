/**
 * Headless Chromium for the browser tests: Debian's `chromium` package (`apt-get install chromium`; `.ci/run`
 * installs it), or the browser at `CHROMIUM_PATH`. playwright-core drives it and downloads no browser.
 */
import { access, constants } from 'node:fs/promises';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Fails at once, and says what to install, when there is no Chromium to run. */
export async function requireChromium(): Promise<void> {
  try {
    await access(CHROMIUM_PATH, constants.X_OK);
  } catch {
    throw new Error(
      `no Chromium at ${CHROMIUM_PATH}: install Debian's (apt-get install chromium) or set CHROMIUM_PATH to one`,
    );
  }
}

/**
 * Launches Chromium with what this machine needs: no sandbox (tests run as root), and nothing that calls
 * Google, whose refused connections would otherwise slow every start. Each launch gets a fresh profile.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
