/** What the console's `h()` and `append()` take as children (public/lib/dom.js): JSDoc cannot say it recursively. */
type Child = string | number | Node | null | undefined | false | readonly Child[];

/** Chart.js, loaded by index.html from `vendor/chart.umd.min.js` (its UMD build sets this global). */
declare const Chart: typeof import('chart.js').Chart;
