/** What the console's `h()` and `append()` take as children (public/lib/dom.js): JSDoc cannot say it recursively. */
type Child = string | number | Node | null | undefined | false | readonly Child[];
