/**
 * Charts for the console, drawn by Chart.js (`vendor/chart.umd.min.js`, copied from node_modules by `npm run
 * build`, served from the broker's origin like every console file). Chart.js draws on a canvas with no
 * `eval`, no inline style element and no markup parsing, so it runs under the console's CSP and Trusted
 * Types. A canvas says nothing to a screen reader: every chart is an image named by its title and described
 * by a sentence with its numbers, in a paragraph only assistive technology reads.
 */
import { h } from './dom.js';

/** @import { ChartConfiguration } from 'chart.js' */

/** The console's colours (console.css), for the series every chart shares. */
export const COLOURS = {
  granted: '#1a7f37',
  refused: '#b42318',
  approval: '#b7791f',
  accent: '#1d3557',
};

let described = 0;

/**
 * A chart in a figure: its title, the canvas, and the sentence that describes it.
 * @param {object} chart
 * @param {string} chart.title what the chart shows, its caption and the image's name
 * @param {string} chart.summary the chart's numbers in words, for those who cannot see it
 * @param {ChartConfiguration} chart.config what Chart.js draws
 * @param {string} chart.testid
 * @returns {{ figure: HTMLElement, destroy: () => void }}
 */
export function chartFigure({ title, summary, config, testid }) {
  const id = `chart-summary-${++described}`;
  const canvas = h('canvas', { role: 'img', 'aria-label': title, 'aria-describedby': id });
  const figure = h(
    'figure',
    { class: 'panel chart', 'data-testid': testid },
    h('figcaption', {}, title),
    h('div', { class: 'chart-area' }, canvas),
    h('p', { class: 'visually-hidden', id, 'data-testid': `${testid}-summary` }, summary),
  );
  const drawn = new Chart(canvas, {
    ...config,
    options: {
      // Drawn once, at its size: a redraw every refresh would only move the bars about.
      animation: false,
      maintainAspectRatio: false,
      responsive: true,
      ...config.options,
    },
  });
  return { figure, destroy: () => drawn.destroy() };
}
