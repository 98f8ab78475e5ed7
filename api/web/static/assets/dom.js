// dom.js — build elements with createElement and textContent, never by parsing
// HTML: every value becomes a text node, so data (a worker_id of "<img src=x
// onerror=…>") shows as characters.

/**
 * el creates an element. attrs: "class", "text" (textContent), "hidden",
 * "on" ({event: handler}), "dataset" ({key: value}), anything else as an
 * attribute. Children: nodes, strings (as text), null/false (skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'class') node.className = v;
    else if (k === 'hidden') node.hidden = Boolean(v);
    else if (k === 'on') for (const [type, fn] of Object.entries(v)) node.addEventListener(type, fn);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, ...children);
  return node;
}

/** append adds children (nodes or strings as text) to node. */
export function append(node, ...children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** replace empties node and fills it with children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, ...children);
}

/** setText sets node's text only when it changed (no flicker for screen readers). */
export function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

/**
 * cell is a table cell labelled for narrow screens (the CSS shows the label
 * before the content when rows stack), its content wrapped in one block so
 * that it flows as one.
 */
export function cell(label, ...content) {
  return el('td', { dataset: { label } }, el('div', { class: 'cell' }, ...content));
}

/**
 * ident renders user-supplied text (a worker id) isolated from the text
 * around it (<bdi>: a U+202E in it reverses nothing outside it). Longer than
 * max characters, it shows the start and the end, and a button (keyboard and
 * touch, not a mouse-only tooltip) shows the whole value and hides it again.
 */
export function ident(value, { max = 40, label = 'id' } = {}) {
  const text = String(value ?? '');
  const chars = [...text];
  const bdi = el('bdi', { text });
  if (chars.length <= max) return el('span', { class: 'ident' }, bdi);
  const short = `${chars.slice(0, max - 12).join('')}…${chars.slice(-8).join('')}`;
  bdi.textContent = short;
  const btn = el('button', { type: 'button', class: 'link ident-toggle', 'aria-expanded': 'false', text: `Show the whole ${label}` });
  btn.addEventListener('click', () => {
    const open = btn.getAttribute('aria-expanded') !== 'true';
    btn.setAttribute('aria-expanded', String(open));
    bdi.textContent = open ? text : short;
    btn.textContent = open ? `Shorten the ${label}` : `Show the whole ${label}`;
  });
  return el('span', { class: 'ident ident-long' }, bdi, ' ', btn);
}

/** hiddenText is text for screen readers only (visually hidden). */
export function hiddenText(text) {
  return el('span', { class: 'visually-hidden', text });
}
