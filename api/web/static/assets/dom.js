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
