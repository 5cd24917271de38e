// SPDX-License-Identifier: Apache-2.0
// The fwdepot admin UI: plain ES modules, no build step. Every value that comes from the server
// (and so possibly from a device) reaches the page as text nodes, never as markup.

const TOKEN_KEY = 'fwdepot.token';
const POLL_MS = 2000;
const PAGE = 50;
const TIMELINE = 200;  // newest events on a device's page

// --- DOM helpers ----------------------------------------------------------------------------

// h('td', {class: 'mono'}, 'text', childNode): attributes are set as attributes, children
// appended as text nodes or elements. Event handlers are passed as on<Event> functions and
// styles as an object.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    // Styles go through the CSSOM: the CSP forbids style attributes, not style properties.
    else if (k === 'style') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const when = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : '—');
const bytes = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB`
  : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const failed = (r) => r && r !== 'initial' && r !== 'success';

// --- API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  if (res.status === 401) {
    signOut('Your token was refused. Sign in again.');
    throw new ApiError(401, 'unauthorized', 'token refused');
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    throw new ApiError(res.status, data?.error?.code ?? 'error', data?.error?.message ?? res.statusText);
  }
  return data;
}

// Multipart upload with progress: XMLHttpRequest, because fetch reports no upload progress.
function upload(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/images');
    xhr.setRequestHeader('Authorization', `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}`);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 201) {
        onProgress(1);
        resolve(data);
      } else {
        reject(new ApiError(xhr.status, data?.error?.code ?? 'error',
          data?.error?.message ?? `HTTP ${xhr.status}`));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'upload failed')));
    xhr.send(form);
  });
}

// --- session ----------------------------------------------------------------------------------

let pollTimer = null;

function signOut(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  generation += 1;
  clearTimeout(pollTimer);
  $('nav').hidden = true;
  $('view').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  $('token').value = '';
  $('token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $('token').value.trim();
  $('sign-in-error').textContent = '';
  try {
    const res = await fetch('/api/v1/stats', {
      headers: { Authorization: `Bearer ${token}` }, cache: 'no-store',
    });
    if (!res.ok) {
      $('sign-in-error').textContent = res.status === 401 ? 'Token refused.' : `Error ${res.status}`;
      $('token').select();
      return;
    }
  } catch {
    $('sign-in-error').textContent = 'The server cannot be reached.';
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  showApp();
}

function showApp() {
  $('sign-in').hidden = true;
  $('nav').hidden = false;
  $('view').hidden = false;
  route();
}

// --- views --------------------------------------------------------------------------------------

// Each view renders into a fresh container; refresh() re-renders its live part on a timer.
const views = {
  '': overview,
  devices,
  device,
  images,
  deployments,
};

// Polls never overlap: the next one is scheduled when the last has finished, and only while
// its view is still the one on screen.
let generation = 0;

function route() {
  const gen = ++generation;
  clearTimeout(pollTimer);
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const view = views[name] ?? overview;
  for (const a of document.querySelectorAll('nav a')) {
    a.toggleAttribute('aria-current', a.getAttribute('href') === `#/${name}`);
    if (a.hasAttribute('aria-current')) a.setAttribute('aria-current', 'page');
  }
  const root = h('div');
  $('view').replaceChildren(root);
  const refresh = view(root, rest.map(decodeURIComponent));
  if (refresh) {
    const tick = async () => {
      await refresh().catch(showError);
      if (gen === generation) pollTimer = setTimeout(tick, POLL_MS);
    };
    tick();
  }
}

function showError(err) {
  if (err?.status === 401) return;
  const el = document.querySelector('#view .error.live');
  if (el) el.textContent = err.message;
}

// Runs `action` when the form is submitted; what it returns (or why it threw) shows in `status`.
function onSubmit(form, status, action) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.className = '';
    try {
      status.textContent = await action();
      status.className = 'ok';
      form.reset();
    } catch (err) {
      status.textContent = `Refused: ${err.message}`;
      status.className = 'error';
    }
  });
}

function bars(title, rows, total) {
  const max = Math.max(1, ...rows.map((r) => r.devices));
  return h('div', { class: 'card' },
    h('h2', {}, title),
    rows.length === 0 ? h('p', { class: 'hint' }, 'No devices yet.') : null,
    rows.map((r) => h('div', { class: 'bar', title: `${r.key}: ${r.devices} of ${total}` },
      h('span', { class: 'label' }, r.key),
      h('span', { class: 'fill', style: { width: `${(r.devices / max) * 60}%` } }),
      h('span', {}, String(r.devices)))));
}

function overview(root) {
  root.append(h('h1', {}, 'Fleet overview'), h('p', { class: 'error live', role: 'alert' }));
  const body = h('div');
  root.append(body);
  return async () => {
    const s = await api('GET', '/stats');
    body.replaceChildren(
      h('div', { class: 'cards' },
        h('div', { class: 'card' }, h('h2', {}, 'Devices'), h('p', { class: 'big', id: 'device-count' }, String(s.devices))),
        bars('Versions', s.by_version, s.devices),
        bars('Models', s.by_model, s.devices),
        bars('States', s.by_state, s.devices)),
      h('h2', {}, 'Recent failures'),
      s.recent_failures.length === 0 ? h('p', { class: 'hint' }, 'None.')
        : h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Device', 'Version', 'Result', 'Message', 'Last seen'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, s.recent_failures.map((d) => h('tr', {},
            h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
            h('td', {}, d.version),
            h('td', {}, h('span', { class: 'pill bad' }, d.last_result)),
            h('td', {}, d.last_message ?? ''),
            h('td', {}, when(d.last_seen))))))));
  };
}

function devices(root) {
  const state = { q: '', model: '', sort: 'id', order: 'asc', offset: 0 };
  const q = h('input', { id: 'device-search', type: 'search', placeholder: 'id prefix' });
  const model = h('input', { id: 'device-model', placeholder: 'model' });
  const table = h('tbody');
  const pager = h('p', { class: 'hint', id: 'device-pager' });
  let asked = 0;  // answers to older requests (an earlier page or filter) are dropped
  const refresh = async () => {
    const seq = ++asked;
    const p = new URLSearchParams({ limit: PAGE, offset: state.offset, sort: state.sort, order: state.order });
    if (state.q) p.set('q', state.q);
    if (state.model) p.set('model', state.model);
    const page = await api('GET', `/devices?${p}`);
    if (seq !== asked) return;
    table.replaceChildren(...page.devices.map((d) => h('tr', { 'data-device': d.id },
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
      h('td', {}, d.model), h('td', { class: 'version' }, d.version), h('td', {}, d.state),
      h('td', {}, d.last_result ? h('span', { class: failed(d.last_result) ? 'pill bad' : 'pill' }, d.last_result) : ''),
      h('td', {}, when(d.last_seen)))));
    const last = Math.min(page.total, state.offset + page.devices.length);
    pager.textContent = page.total === 0 ? 'No devices.' : `${state.offset + 1}–${last} of ${page.total}`;
    prev.disabled = state.offset === 0;
    next.disabled = last >= page.total;
  };
  const apply = () => { state.q = q.value.trim(); state.model = model.value.trim(); state.offset = 0; refresh(); };
  const prev = h('button', { type: 'button', onclick: () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); } }, 'Previous');
  const next = h('button', { type: 'button', onclick: () => { state.offset += PAGE; refresh(); } }, 'Next');
  const sortBy = (col) => () => {
    state.order = state.sort === col && state.order === 'asc' ? 'desc' : 'asc';
    state.sort = col;
    refresh();
  };
  const cols = [['id', 'Device'], ['model', 'Model'], ['version', 'Version'], ['state', 'State'], [null, 'Result'], ['last_seen', 'Last seen']];
  root.append(
    h('h1', {}, 'Devices'), h('p', { class: 'error live', role: 'alert' }),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); apply(); } },
      h('div', {}, h('label', { for: 'device-search' }, 'Search'), h('br'), q),
      h('div', {}, h('label', { for: 'device-model' }, 'Model'), h('br'), model),
      h('button', { type: 'submit' }, 'Filter')),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, cols.map(([c, label]) => h('th', { scope: 'col' },
        c ? h('button', { type: 'button', onclick: sortBy(c), 'aria-label': `Sort by ${label}` }, label) : label)))),
      table)),
    h('div', { class: 'row' }, prev, next, pager));
  return refresh;
}

// What a device reported about itself (hawkBit DDI configData), as a key/value list.
function attributes(attrs) {
  const keys = Object.keys(attrs ?? {}).sort();
  if (!keys.length) return '—';
  return h('dl', { class: 'attributes', id: 'device-attributes' },
    ...keys.flatMap((k) => [h('dt', {}, k), h('dd', {}, attrs[k])]));
}

function device(root, [id]) {
  const info = h('dl');
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  root.append(h('p', {}, h('a', { href: '#/devices' }, '← Devices')),
    h('h1', {}, 'Device ', h('span', { class: 'mono' }, id)),
    h('p', { class: 'error live', role: 'alert' }), info, h('h2', {}, 'Update history'), timeline);
  return async () => {
    const d = await api('GET', `/devices/${encodeURIComponent(id)}`);
    const ev = await api('GET', `/devices/${encodeURIComponent(id)}/events?order=desc&limit=${TIMELINE}`);
    const item = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    info.replaceChildren(
      ...item('Certificate identity (CN)', d.id), ...item('Model', d.model),
      ...item('Version', h('span', { id: 'device-version' }, d.version || 'unknown')), ...item('State', d.state),
      ...item('Last result', d.last_result ?? '—'),
      ...item('Last message', h('span', { id: 'device-message' }, d.last_message ?? '—')),
      ...item('First seen', when(d.first_seen)), ...item('Last seen', when(d.last_seen)),
      ...item('Attributes', attributes(d.attributes)));
    timeline.replaceChildren(...ev.events.map((e) => h('li', {},
      h('time', {}, when(e.at)),
      `${e.version} · ${e.state}`,
      e.result ? [' · ', h('span', { class: failed(e.result) ? 'pill bad' : e.result === 'success' ? 'pill good' : 'pill' }, e.result)] : null,
      e.image_id ? ` · offered image ${e.image_id}` : null,
      e.message ? [' · ', h('span', { class: 'message' }, e.message)] : null)));
  };
}

function images(root) {
  const list = h('tbody');
  const progress = h('progress', { id: 'upload-progress', max: 1, value: 0, 'aria-label': 'Upload progress' });
  const status = h('p', { id: 'upload-status', role: 'status' });
  const form = h('form', { class: 'stack', id: 'upload-form' },
    h('label', { for: 'manifest-file' }, 'Signed manifest (fwdepot sign --out)'),
    h('input', { id: 'manifest-file', name: 'manifest', type: 'file', required: true }),
    h('label', { for: 'image-file' }, 'Image'),
    h('input', { id: 'image-file', name: 'image', type: 'file', required: true }),
    h('button', { class: 'primary', type: 'submit' }, 'Upload'), progress, status);
  onSubmit(form, status, async () => {
    const data = new FormData();
    data.append('manifest', $('manifest-file').files[0]);
    data.append('image', $('image-file').files[0]);
    status.textContent = 'Uploading…';
    progress.value = 0;
    const img = await upload(data, (f) => { progress.value = f; });
    refresh();
    return `Stored ${img.name} ${img.version} (image ${img.id}).`;
  });
  const refresh = async () => {
    const { images: all } = await api('GET', '/images');
    list.replaceChildren(...all.map((i) => h('tr', { 'data-image': i.id },
      h('td', {}, String(i.id)), h('td', {}, i.name), h('td', {}, i.version), h('td', { class: 'mono' }, i.filename),
      h('td', {}, i.models.join(', ')), h('td', {}, bytes(i.size)),
      h('td', { class: 'mono' }, i.sha256), h('td', { class: 'mono' }, i.signer_key_ids.map((k) => k.slice(0, 16)).join(' ')),
      h('td', {}, h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete image ${i.id}`,
        onclick: async () => {
          if (!confirm(`Delete ${i.name} ${i.version}? This cannot be undone.`)) return;
          try { await api('DELETE', `/images/${i.id}`); refresh(); } catch (err) { status.textContent = err.message; status.className = 'error'; }
        },
      }, 'Delete')))));
  };
  root.append(h('h1', {}, 'Images'), h('p', { class: 'error live', role: 'alert' }),
    h('h2', {}, 'Upload'), form, h('h2', {}, 'Stored images'),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Id', 'Name', 'Version', 'File', 'Models', 'Size', 'SHA-256', 'Signed by', ''].map((c) => h('th', { scope: 'col' }, c)))),
      list)));
  return refresh;
}

function deployments(root) {
  const list = h('tbody');
  const imageSelect = h('select', { id: 'deploy-image', required: true });
  const status = h('p', { id: 'deploy-status', role: 'status' });
  const split = (s) => s.split(/[\s,]+/).filter(Boolean);
  const form = h('form', { class: 'stack', id: 'deploy-form' },
    h('label', { for: 'deploy-image' }, 'Image'), imageSelect,
    h('label', { for: 'deploy-models' }, 'Models (comma separated)'), h('input', { id: 'deploy-models' }),
    h('label', { for: 'deploy-devices' }, 'Devices (comma separated)'), h('input', { id: 'deploy-devices' }),
    h('label', { for: 'deploy-action' }, 'Action type'),
    h('select', { id: 'deploy-action' },
      h('option', { value: 'forced' }, 'Forced: download and install at once'),
      h('option', { value: 'soft' }, 'Soft: the device may ask first'),
      h('option', { value: 'downloadonly' }, 'Download only: never install')),
    h('label', {}, h('input', { id: 'deploy-downgrade', type: 'checkbox' }), ' Allow downgrade'),
    h('button', { class: 'primary', type: 'submit' }, 'Deploy'), status);
  onSubmit(form, status, async () => {
    const d = await api('POST', '/deployments', {
      image_id: Number(imageSelect.value), models: split($('deploy-models').value),
      devices: split($('deploy-devices').value), allow_downgrade: $('deploy-downgrade').checked,
      action_type: $('deploy-action').value,
    });
    refresh();
    return `Deployment ${d.id} created.`;
  });
  const refresh = async () => {
    const [{ images: imgs }, { deployments: all }] = await Promise.all([api('GET', '/images'), api('GET', '/deployments')]);
    const chosen = imageSelect.value;
    imageSelect.replaceChildren(...imgs.map((i) => h('option', { value: i.id }, `${i.name} ${i.version} (${i.models.join(', ')})`)));
    if (chosen) imageSelect.value = chosen;
    const active = all.filter((d) => d.active);
    const details = await Promise.all(active.map((d) => api('GET', `/deployments/${d.id}`)));
    const byId = new Map(details.map((d) => [d.id, d.progress]));
    list.replaceChildren(...all.map((d) => {
      const p = byId.get(d.id);
      return h('tr', { 'data-deployment': d.id },
        h('td', {}, String(d.id)), h('td', {}, String(d.image_id)),
        h('td', {}, [...d.models.map((m) => `model ${m}`), ...d.devices].join(', ')),
        h('td', {}, d.action_type), h('td', {}, d.allow_downgrade ? 'yes' : 'no'),
        h('td', { class: 'progress' }, p ? [
          h('progress', { max: Math.max(1, p.targeted), value: p.at_version, 'aria-label': `Deployment ${d.id}: devices at the version` }),
          `${p.at_version}/${p.targeted} at version · ${p.in_progress} updating · ${p.failed} failed`] : 'cancelled'),
        h('td', {}, d.active ? h('button', {
          type: 'button', class: 'danger', 'aria-label': `Cancel deployment ${d.id}`,
          onclick: async () => {
            if (!confirm(`Cancel deployment ${d.id}? Devices not yet updated will not be offered it.`)) return;
            try { await api('DELETE', `/deployments/${d.id}`); refresh(); } catch (err) { status.textContent = err.message; status.className = 'error'; }
          },
        }, 'Cancel') : ''));
    }));
  };
  root.append(h('h1', {}, 'Deployments'), h('p', { class: 'error live', role: 'alert' }),
    h('h2', {}, 'New deployment'), form, h('h2', {}, 'All deployments'),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Id', 'Image', 'Targets', 'Action', 'Downgrade', 'Progress', ''].map((c) => h('th', { scope: 'col' }, c)))),
      list)));
  return refresh;
}

// --- start ----------------------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', () => signOut());
window.addEventListener('hashchange', () => { if (sessionStorage.getItem(TOKEN_KEY)) route(); });
if (sessionStorage.getItem(TOKEN_KEY)) showApp(); else signOut();
