/**
 * Building the page from data without ever parsing data as markup: every string becomes a text node, every
 * attribute is set as an attribute. Task descriptions, justifications and user agents are written by agents;
 * the console shows them exactly as written and never lets them act. (The Content-Security-Policy also
 * requires Trusted Types, so an `innerHTML` assignment would throw.)
 */

/** @typedef {Record<string, string | boolean | undefined | ((event: Event) => void)>} Attributes */

/**
 * Appends `children` to `parent`: nodes as they are, strings and numbers as text, nothing for null,
 * undefined or false; arrays are flattened.
 * @param {Node} parent
 * @param {readonly Child[]} children
 */
export function append(parent, children) {
  for (const child of children) {
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else if (child !== null && child !== undefined && child !== false)
      parent.appendChild(document.createTextNode(String(child)));
  }
}

/**
 * Creates an element. Attribute values are strings (true: present and empty; false or undefined: absent);
 * a function under an `on…` name is added as the listener of that event.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attributes} [attributes]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === 'function') {
      if (!name.startsWith('on')) throw new TypeError(`${name}: a listener's name starts with "on"`);
      element.addEventListener(name.slice(2), value);
    } else if (value === true) element.setAttribute(name, '');
    else if (typeof value === 'string') element.setAttribute(name, value);
  }
  append(element, children);
  return element;
}

/**
 * Replaces the children of `parent` with `children`.
 * @param {Node} parent
 * @param {...Child} children
 */
export function replace(parent, ...children) {
  while (parent.firstChild !== null) parent.removeChild(parent.firstChild);
  append(parent, children);
}

/**
 * A link to a page of the console, with its query: `#/audit?agent=demo-agent`.
 * @param {string} page
 * @param {Record<string, string | undefined>} [query]
 */
export function pageHref(page, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined && value !== '') params.set(name, value);
  const search = params.toString();
  return `#/${page}${search === '' ? '' : `?${search}`}`;
}

const TIME = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/**
 * A time as people read it, in their own time zone; the ISO form in the title.
 * @param {string | number | null | undefined} at ISO 8601, or epoch milliseconds
 */
export function time(at) {
  if (at === null || at === undefined) return h('span', { class: 'muted' }, '–');
  const date = new Date(at);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, TIME.format(date));
}

/**
 * A duration in words: `14 min 05 s`, `42 s`.
 * @param {number} seconds
 */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/**
 * A definition list from label and value pairs; pairs whose value is undefined are left out.
 * @param {[string, Child][]} rows
 */
export function fields(rows) {
  return h(
    'dl',
    { class: 'fields' },
    rows.flatMap(([label, value]) => (value === undefined ? [] : [h('dt', {}, label), h('dd', {}, value)])),
  );
}

/**
 * Text an agent wrote (a task, a justification), shown as written and marked as the agent's words.
 * @param {string | null | undefined} text
 */
export function agentText(text) {
  if (text === null || text === undefined || text === '') return h('span', { class: 'muted' }, 'none given');
  return h('p', { class: 'agent-text' }, text);
}
