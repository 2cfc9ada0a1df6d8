// tenantctl console: the DOM helpers and the operator API client the pages (console.js)
// are built with. Loaded before console.js (both deferred, in order); a classic script, as
// console.js is: its functions are the page's. Text is only ever set as text.
'use strict';

const TOKEN_KEY = 'tenantctl.token';
const SCOPES = ['read_only', 'operator', 'admin'];
const session = { token: sessionStorage.getItem(TOKEN_KEY), me: null };
// Timers of the page shown; cleared when another page is shown.
let timers = [];
// Pages shown since the last message: a message stays for the page it was said on and the
// next one (a change that navigates), then goes.
let flashAge = 0;

// ---- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces `el`'s content (skipping absent parts, which DOM's own replaceChildren would print).
function put(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function badge(state) {
  return h('span', { class: `badge ${state}` }, state.replace('_', ' '));
}

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('table', {},
    h('thead', {}, h('tr', {}, headers.map(([label, cls]) => h('th', { scope: 'col', class: cls }, label)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell, i) => h('td', { class: headers[i][1] }, cell))))));
}

function flash(message, isError) {
  flashAge = 0;
  const box = document.getElementById('flash');
  put(box, h('p', { class: isError ? 'error' : null, role: isError ? 'alert' : null }, message));
}

function clearFlash() {
  document.getElementById('flash').replaceChildren();
}

function can(scope) {
  return session.me && SCOPES.indexOf(session.me.scope) >= SCOPES.indexOf(scope);
}

function every(ms, fn) {
  timers.push(setInterval(fn, ms));
}

// ---- API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || `${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, data && data.error && data.error.code, message);
    if (response.status === 401 && session.me) {
      signOut(`Signed out: ${message}`);
    }
    throw error;
  }
  return data;
}

// Runs a change the operator asked for; says how it went.
async function act(label, fn) {
  try {
    await fn();
    flash(`${label}: done.`);
  } catch (error) {
    flash(`${label} failed: ${error.message}`, true);
  }
  await route();
}
