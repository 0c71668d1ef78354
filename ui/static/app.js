// Troupe's web console. Plain JavaScript, no build step, nothing fetched
// from elsewhere: every piece of data comes from this node's API, with the
// token the user typed in (session storage, X-Consul-Token).
'use strict';
(() => {
  const TOKEN_KEY = 'troupe-token';
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    gen: 0,          // bumped at each page change: older loops stop
    cluster: null,   // the latest /v1/ui/cluster answer
    events: new Map(),
    kindFilter: '',
  };

  class AuthError extends Error {}

  // ---- small helpers ----
  const $ = (sel, root = document) => root.querySelector(sel);
  function el(tag, attrs = {}, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') n.textContent = v;
      else if (k === 'class') n.className = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else if (v === true) n.setAttribute(k, '');
      else n.setAttribute(k, v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      n.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return n;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  function say(msg, kind = 'info') {
    const s = $('#status');
    s.textContent = msg;
    s.className = msg ? kind : '';
  }
  const keyPath = (key) => key.split('/').map(encodeURIComponent).join('/');
  function bytesText(n) {
    if (n === undefined || n === null) return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  }
  function timeText(at) {
    const d = new Date(at);
    return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  // ---- the API ----
  async function api(method, path, { body, quiet403 = false } = {}) {
    const headers = {};
    if (state.token) headers['X-Consul-Token'] = state.token;
    const res = await fetch(path, { method, headers, body, cache: 'no-store' });
    if (res.status === 401 || (res.status === 403 && !quiet403)) {
      const msg = (await res.text()).trim();
      showLogin(res.status === 401 && !state.token ? 'ACLs are on: this page needs a token.' : msg);
      throw new AuthError(msg);
    }
    return res;
  }
  async function getJSON(path, opts) {
    const r = await api('GET', path, opts);
    if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).trim()}`);
    return r.json();
  }
  function failed(e) {
    if (!(e instanceof AuthError)) say(String(e.message || e), 'error');
  }

  // ---- sign in ----
  function showLogin(reason) {
    state.gen++;
    state.cluster = null;
    state.events.clear();
    $('#main').replaceChildren();
    $('#served-by').textContent = '';
    $('#login-reason').textContent = reason || '';
    $('#login').hidden = false;
    // Everything behind the prompt is out of reach of the keyboard.
    $('#main').inert = true;
    $('header.top').inert = true;
    $('#login-token').value = '';
    $('#login-token').focus();
    say('');
  }
  function hideLogin() {
    $('#login').hidden = true;
    $('#main').inert = false;
    $('header.top').inert = false;
  }
  function setToken(t) {
    state.token = t;
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  }

  // ---- routing ----
  function route() {
    hideLogin();
    state.gen++;
    const gen = state.gen;
    const h = location.hash || '#/cluster';
    const page = h.startsWith('#/kv/') ? 'kv' : h.slice(2).split('/')[0];
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    say('');
    const main = $('#main');
    main.replaceChildren();
    document.body.dataset.page = page;
    switch (page) {
      case 'kv': return kvPage(gen, decodeURIComponent(h.slice('#/kv/'.length)));
      case 'sessions': return sessionsPage(gen);
      case 'chaos': return chaosPage(gen);
      default: return clusterPage(gen);
    }
  }

  // ---- cluster page ----
  function clusterPage(gen) {
    const filter = el('select', { id: 'kind-filter', 'aria-label': 'Show events of kind', onchange: (e) => { state.kindFilter = e.target.value; drawTimeline(); } },
      ['', 'leader', 'peer', 'actor', 'fault', 'integrity', 'alarm', 'node'].map((k) => el('option', { value: k, selected: k === state.kindFilter, text: k || 'all events' })));
    $('#main').append(
      el('h2', { text: 'Cluster' }),
      el('div', { id: 'cards', class: 'cards' }),
      el('h3', { text: 'Who sees whom' }),
      el('p', { class: 'muted', text: 'Each row is one node\u2019s failure detector: its verdict on every peer, phi now, and phi over the last minutes.' }),
      el('div', { id: 'matrix', class: 'scroll' }),
      el('div', { class: 'row between' }, el('h3', { text: 'Timeline' }), filter),
      el('ol', { id: 'timeline', class: 'timeline' }),
    );
    pollCluster(gen);
    followEvents(gen);
  }

  async function refreshCluster(gen) {
    const cv = await getJSON('/v1/ui/cluster');
    if (gen !== state.gen) return;
    state.cluster = cv;
    $('#nav-chaos').hidden = !cv.chaos;
    $('#served-by').textContent = 'via ' + cv.served_by;
    for (const v of Object.values(cv.views)) addEvents(v.events || []);
    if (document.body.dataset.page === 'cluster') {
      drawCards(cv);
      drawMatrix(cv);
      drawTimeline();
      if (!performance.getEntriesByName('troupe-cluster-rendered').length) performance.mark('troupe-cluster-rendered');
    } else if (document.body.dataset.page === 'chaos') {
      drawMatrix(cv);
      drawTimeline('fault');
    }
  }

  async function pollCluster(gen) {
    while (gen === state.gen) {
      try {
        await refreshCluster(gen);
      } catch (e) {
        if (e instanceof AuthError) return;
        failed(e);
      }
      await sleep(2000);
    }
  }

  // followEvents holds a blocking query on this node's timeline: when this
  // node records something (a peer turning Dead, a new leader) the page
  // refreshes at once instead of at its next poll.
  async function followEvents(gen) {
    let index = 0;
    while (gen === state.gen) {
      try {
        const r = await api('GET', `/v1/ui/events?index=${index}&wait=20s`);
        if (!r.ok) throw new Error(`timeline: ${r.status} ${(await r.text()).trim()}`);
        const next = Number(r.headers.get('X-Consul-Index')) || 0;
        const body = await r.json();
        if (gen !== state.gen) return;
        addEvents(body.events || []);
        if (index !== 0 && next !== index) refreshCluster(gen).catch(failed);
        // An index going backwards is a restarted node: read it all again.
        index = next < index ? 0 : next;
      } catch (e) {
        if (e instanceof AuthError) return;
        await sleep(1000);
      }
    }
  }

  function addEvents(evs) {
    for (const e of evs) state.events.set(`${e.node}|${e.at}|${e.index}`, e);
    if (state.events.size > 2000) {
      const sorted = [...state.events.entries()].sort((a, b) => Date.parse(a[1].at) - Date.parse(b[1].at));
      for (const [k] of sorted.slice(0, sorted.length - 1500)) state.events.delete(k);
    }
  }

  function roleOf(m, v) {
    if (!v || (!v.status && v.error)) return 'unreachable';
    if (m.leader) return 'leader';
    if (!m.voter) return 'non-voter';
    return 'follower';
  }

  function drawCards(cv) {
    const leader = cv.members.find((m) => m.leader);
    const leaderCommit = leader && cv.views[leader.id] && cv.views[leader.id].status ? cv.views[leader.id].status.commit_index : null;
    const cards = cv.members.slice().sort((a, b) => a.id.localeCompare(b.id)).map((m) => {
      const v = cv.views[m.id] || {};
      const st = v.status || {};
      const h = v.health || {};
      const sp = h.space || {};
      const role = roleOf(m, v);
      const commit = leaderCommit !== null ? leaderCommit : st.commit_index;
      const lag = st.applied_index !== undefined && commit !== undefined ? Math.max(0, commit - st.applied_index) : null;
      const rows = role === 'unreachable'
        ? [['error', v.error || 'no answer']]
        : [
          ['state', st.state], ['term', st.term], ['commit', st.commit_index], ['applied', st.applied_index],
          ['lag', lag === null ? '—' : lag], ['last contact', st.last_contact_ms === undefined ? '—' : st.last_contact_ms + ' ms'],
          ['version', m.version || st.version || '—'], ['state file', bytesText(sp.state_file_bytes)],
          ['disk free', bytesText(sp.data_dir_free_bytes)], ['integrity', (h.integrity || {}).state || '—'],
        ];
      if (role !== 'unreachable' && (h.alarms || []).length) rows.push(['alarms', h.alarms.map((a) => `${a.type}@${a.member}`).join(', ')]);
      return el('article', { class: `card ${role}`, 'data-node': m.id, 'data-role': role, 'aria-label': `${m.id}: ${role}` },
        el('header', {}, el('h4', { text: m.id }), el('span', { class: `badge ${role}`, text: role })),
        el('div', { class: 'addr muted', text: m.http_addr || '' }),
        el('dl', {}, rows.map(([k, val]) => [el('dt', { text: k }), el('dd', { text: val === undefined ? '—' : String(val) })])));
    });
    $('#cards').replaceChildren(...cards);
  }

  function sparkline(samples) {
    const w = 96, hgt = 22;
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
    svg.setAttribute('width', w);
    svg.setAttribute('height', hgt);
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('class', 'spark');
    if (!samples || samples.length < 2) return svg;
    const top = Math.max(10, ...samples.map((s) => Math.min(s.phi, 50)));
    const t0 = samples[0].t, span = Math.max(1, samples[samples.length - 1].t - t0);
    const pts = samples.map((s) => `${((s.t - t0) / span * (w - 2) + 1).toFixed(1)},${(hgt - 1 - Math.min(s.phi, top) / top * (hgt - 2)).toFixed(1)}`);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.append(line);
    return svg;
  }

  function drawMatrix(cv) {
    const ids = cv.members.map((m) => m.id).sort();
    const head = el('tr', {}, el('th', { scope: 'col', text: 'observer \u2192 peer' }), ids.map((id) => el('th', { scope: 'col', text: id })));
    const rows = ids.map((o) => {
      const v = cv.views[o] || {};
      const peers = new Map(((v.health || {}).peers || []).map((p) => [p.id, p]));
      return el('tr', {}, el('th', { scope: 'row', text: o }), ids.map((p) => {
        if (o === p) return el('td', { class: 'self', 'data-observer': o, 'data-peer': p, text: '—' });
        if (!v.health) return el('td', { class: 'state-unknown', 'data-observer': o, 'data-peer': p, 'data-state': 'unreachable', title: v.error || '' }, 'no view');
        const ps = peers.get(p);
        if (!ps) return el('td', { class: 'state-unknown', 'data-observer': o, 'data-peer': p, 'data-state': 'unknown' }, 'unknown');
        const hist = (v.history || {})[p] || [];
        return el('td', { class: `state-${ps.state}`, 'data-observer': o, 'data-peer': p, 'data-state': ps.state,
          title: `${o} sees ${p}: ${ps.state}, phi ${ps.phi}, last heard ${ps.last_heard}, rtt ${ps.rtt_mean_ms.toFixed(1)} ms` },
        el('span', { class: `badge ${ps.state}`, text: ps.state }), ' ',
        el('span', { class: 'phi', text: 'phi ' + ps.phi.toFixed(2) }), sparkline(hist));
      }));
    });
    $('#matrix').replaceChildren(el('table', { class: 'matrix' }, el('caption', { class: 'muted', text: 'Rows: the node whose failure detector judges; columns: the peer judged.' }), el('thead', {}, head), el('tbody', {}, rows)));
  }

  function eventText(e) {
    switch (e.kind) {
      case 'leader': return e.to ? `leader is ${e.to}` + (e.from ? ` (was ${e.from})` : '') : `no leader (was ${e.from || 'none'})`;
      case 'fault': return e.subject === 'rules' ? `fault rules ${e.to}` : `${e.subject}: ${e.to}`;
      case 'node': return 'recording started';
      case 'actor': return `${e.subject} ${e.to}`;
    }
    if (!e.from) return `${e.subject || ''} ${e.to || ''}`.trim();
    return `${e.subject}: ${e.from} \u2192 ${e.to || 'none'}`;
  }

  function drawTimeline(only) {
    const list = $('#timeline');
    if (!list) return;
    const kind = only || state.kindFilter;
    const evs = [...state.events.values()].filter((e) => !kind || e.kind === kind)
      .sort((a, b) => Date.parse(b.at) - Date.parse(a.at)).slice(0, 150);
    list.replaceChildren(...evs.map((e) => el('li', { 'data-kind': e.kind, 'data-node': e.node },
      el('time', { datetime: e.at, text: timeText(e.at) }),
      el('span', { class: 'node', text: e.node }),
      el('span', { class: `kind ${e.kind}`, text: e.kind }),
      el('span', { class: 'what', text: eventText(e) }),
      e.detail ? el('span', { class: 'detail muted', text: e.detail }) : null)));
    if (!evs.length) list.append(el('li', { class: 'muted', text: 'nothing yet' }));
  }

  // ---- keys ----
  async function kvPage(gen, path) {
    if (path === '' || path.endsWith('/')) return kvFolder(gen, path);
    return kvEditor(gen, path);
  }

  function crumbs(path) {
    const parts = path.split('/').filter((p, i, a) => p !== '' || i < a.length - 1);
    const out = [el('a', { href: '#/kv/', text: 'keys' })];
    let acc = '';
    parts.forEach((p, i) => {
      const last = i === parts.length - 1;
      acc += p + (last && !path.endsWith('/') ? '' : '/');
      out.push(' / ', last ? el('span', { text: p }) : el('a', { href: '#/kv/' + encodeURIComponent(acc), text: p }));
    });
    return el('nav', { class: 'crumbs', 'aria-label': 'Folder' }, out);
  }

  async function kvFolder(gen, prefix) {
    const main = $('#main');
    main.append(el('h2', { text: prefix ? 'Keys under ' + prefix : 'Keys' }), crumbs(prefix));
    let keys = [];
    try {
      const r = await api('GET', `/v1/kv/${keyPath(prefix)}?keys&separator=/`);
      if (r.status === 404) keys = [];
      else if (!r.ok) throw new Error(`${r.status} ${(await r.text()).trim()}`);
      else keys = await r.json();
    } catch (e) { return failed(e); }
    if (gen !== state.gen) return;
    const items = keys.filter((k) => k !== prefix).map((k) => {
      const name = k.slice(prefix.length);
      const folder = k.endsWith('/');
      return el('li', { class: folder ? 'folder' : 'key' }, el('a', { href: '#/kv/' + encodeURIComponent(k), 'data-key': k, text: (folder ? '\u{1F4C1} ' : '') + name }));
    });
    main.append(items.length ? el('ul', { class: 'keys', id: 'key-list' }, items) : el('p', { class: 'muted', id: 'key-list', text: 'No keys here.' }));

    const name = el('input', { id: 'new-key', required: true, spellcheck: 'false', 'aria-describedby': 'new-key-help' });
    const value = el('textarea', { id: 'new-value', rows: 3, spellcheck: 'false' });
    main.append(el('form', { class: 'panel', id: 'create-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const key = prefix + name.value;
      if (!name.value || key.startsWith('/')) return say('A key needs a name that does not start with /.', 'error');
      try {
        const r = await api('PUT', `/v1/kv/${keyPath(key)}?cas=0`, { body: value.value });
        const t = (await r.text()).trim();
        if (!r.ok) return say(`Not created: ${r.status} ${t}`, 'error');
        if (t !== 'true') return say(`Not created: ${key} exists already.`, 'error');
        location.hash = key.endsWith('/') ? '#/kv/' + encodeURIComponent(prefix) : '#/kv/' + encodeURIComponent(key);
        say(`Created ${key}.`);
        if (key.endsWith('/')) route();
      } catch (e) { failed(e); }
    } },
    el('h3', { text: 'New key' }),
    el('label', { for: 'new-key', text: 'Name (under ' + (prefix || 'the root') + '; end with / for a folder)' }), name,
    el('span', { id: 'new-key-help', class: 'muted', text: 'Created only if absent (cas=0).' }),
    el('label', { for: 'new-value', text: 'Value (text)' }), value,
    el('div', { class: 'row' }, el('button', { type: 'submit', class: 'primary', text: 'Create' }))));

    if (prefix) {
      const confirmBtn = el('button', { type: 'button', class: 'danger', hidden: true, text: `Really delete every key under ${prefix}`, onclick: async () => {
        try {
          const r = await api('DELETE', `/v1/kv/${keyPath(prefix)}?recurse`);
          if (!r.ok) return say(`Not deleted: ${r.status} ${(await r.text()).trim()}`, 'error');
          say(`Deleted the tree ${prefix}.`);
          const up = prefix.slice(0, -1).split('/').slice(0, -1).join('/');
          location.hash = '#/kv/' + encodeURIComponent(up ? up + '/' : '');
        } catch (e) { failed(e); }
      } });
      main.append(el('div', { class: 'panel' }, el('h3', { text: 'Delete this folder' }),
        el('button', { type: 'button', onclick: () => { confirmBtn.hidden = false; confirmBtn.focus(); }, text: 'Delete tree…' }), ' ', confirmBtn));
    }
  }

  function b64Bytes(b64) {
    if (!b64) return new Uint8Array();
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
  function fromHex(s) {
    const clean = s.replace(/\s+/g, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new Error('hex must be pairs of 0-9 a-f');
    const out = new Uint8Array(clean.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
    return out;
  }
  function asText(bytes) {
    try { return new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch { return null; }
  }

  async function readKey(key) {
    const r = await api('GET', `/v1/kv/${keyPath(key)}`);
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(`${r.status} ${(await r.text()).trim()}`);
    const [p] = await r.json();
    return p;
  }

  async function kvEditor(gen, key) {
    const main = $('#main');
    main.append(el('h2', { text: key }), crumbs(key));
    let pair;
    try { pair = await readKey(key); } catch (e) { return failed(e); }
    if (gen !== state.gen) return;
    if (!pair) {
      main.append(el('p', { id: 'no-key', text: 'There is no such key (deleted, or never written).' }));
      return;
    }
    const ed = { key, pair, mode: 'text' };
    const bytes = b64Bytes(pair.Value);
    const text = asText(bytes);
    ed.mode = text === null ? 'hex' : 'text';
    const area = el('textarea', { id: 'value', rows: 8, spellcheck: 'false', 'aria-label': 'Value' });
    area.value = ed.mode === 'text' ? text : toHex(bytes);
    const modeText = el('input', { type: 'radio', name: 'mode', id: 'mode-text', value: 'text', checked: ed.mode === 'text', disabled: text === null && ed.mode === 'hex' && false });
    const modeHex = el('input', { type: 'radio', name: 'mode', id: 'mode-hex', value: 'hex', checked: ed.mode === 'hex' });
    const switchMode = (to) => {
      try {
        const cur = currentBytes();
        if (to === 'text') {
          const t = asText(cur);
          if (t === null) { modeHex.checked = true; return say('This value is not UTF-8 text; it stays in hex.', 'error'); }
          area.value = t;
        } else area.value = toHex(cur);
        ed.mode = to;
      } catch (e) { say(e.message, 'error'); (ed.mode === 'text' ? modeText : modeHex).checked = true; }
    };
    modeText.addEventListener('change', () => switchMode('text'));
    modeHex.addEventListener('change', () => switchMode('hex'));
    const currentBytes = () => (ed.mode === 'text' ? new TextEncoder().encode(area.value) : fromHex(area.value));

    const meta = el('dl', { class: 'meta', id: 'meta' });
    const drawMeta = () => {
      const p = ed.pair;
      meta.replaceChildren(...[['ModifyIndex', p.ModifyIndex], ['CreateIndex', p.CreateIndex], ['LockIndex', p.LockIndex], ['Flags', p.Flags], ['Size', bytesText(b64Bytes(p.Value).length)]]
        .flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
    };
    drawMeta();
    const lock = el('div', { id: 'lock', class: 'lock' });
    const conflict = el('section', { id: 'conflict', class: 'conflict', hidden: true, 'aria-live': 'assertive' });
    main.append(meta, lock, conflict,
      el('fieldset', { class: 'mode' }, el('legend', { text: 'Show as' }), modeText, el('label', { for: 'mode-text', text: 'text' }), modeHex, el('label', { for: 'mode-hex', text: 'hex' })),
      area,
      el('div', { class: 'row' },
        el('button', { type: 'button', id: 'save', class: 'primary', text: 'Save', onclick: () => save(ed.pair.ModifyIndex) }),
        el('button', { type: 'button', id: 'reload', text: 'Reload', onclick: () => route() }),
        el('button', { type: 'button', id: 'delete', class: 'danger', text: 'Delete', onclick: del })));
    showLock(ed.pair.Session, lock);

    async function save(cas) {
      let body;
      try { body = currentBytes(); } catch (e) { return say(e.message, 'error'); }
      try {
        const r = await api('PUT', `/v1/kv/${keyPath(key)}?cas=${cas}&flags=${ed.pair.Flags || 0}`, { body });
        const t = (await r.text()).trim();
        if (!r.ok) return say(`Not saved: ${r.status} ${t}`, 'error');
        if (t === 'true') {
          const now = await readKey(key);
          if (now) { ed.pair = now; drawMeta(); }
          conflict.hidden = true;
          return say(`Saved ${key} (ModifyIndex ${ed.pair.ModifyIndex}).`);
        }
        await showConflict(body);
      } catch (e) { failed(e); }
    }

    async function showConflict(mine) {
      const cur = await readKey(key);
      const curBytes = cur ? b64Bytes(cur.Value) : null;
      const show = (b) => (b === null ? '(deleted)' : (asText(b) ?? toHex(b)));
      conflict.hidden = false;
      conflict.replaceChildren(
        el('h3', { text: 'Conflict: the key changed since you loaded it' }),
        el('p', { text: `You edited the value of ModifyIndex ${ed.pair.ModifyIndex}; it is now ${cur ? 'at ModifyIndex ' + cur.ModifyIndex : 'deleted'}. Nothing was written.` }),
        el('div', { class: 'both' },
          el('div', {}, el('h4', { text: 'Yours (not saved)' }), el('pre', { id: 'conflict-mine', text: show(mine) })),
          el('div', {}, el('h4', { text: 'Current' }), el('pre', { id: 'conflict-theirs', text: show(curBytes) }))),
        el('div', { class: 'row' },
          el('button', { type: 'button', id: 'overwrite', class: 'danger', text: 'Overwrite with mine', onclick: () => { if (cur) ed.pair = cur; save(cur ? cur.ModifyIndex : 0); } }),
          el('button', { type: 'button', id: 'take-theirs', text: 'Discard mine, load current', onclick: () => route() })));
      say('Not saved: the key changed underneath (CAS conflict).', 'error');
      $('#overwrite').focus();
    }

    async function del() {
      try {
        const r = await api('DELETE', `/v1/kv/${keyPath(key)}?cas=${ed.pair.ModifyIndex}`);
        const t = (await r.text()).trim();
        if (!r.ok) return say(`Not deleted: ${r.status} ${t}`, 'error');
        if (t !== 'true') return say('Not deleted: the key changed since you loaded it; reload first.', 'error');
        say(`Deleted ${key}.`);
        const up = key.split('/').slice(0, -1).join('/');
        location.hash = '#/kv/' + encodeURIComponent(up ? up + '/' : '');
      } catch (e) { failed(e); }
    }
  }

  async function showLock(session, box) {
    if (!session) { box.replaceChildren(el('span', { class: 'muted', text: 'Not locked.' })); return; }
    let s = null;
    try {
      const r = await api('GET', `/v1/session/info/${encodeURIComponent(session)}`);
      if (r.ok) s = ((await r.json()) || [])[0] || null;
    } catch (e) { if (e instanceof AuthError) return; }
    box.replaceChildren(el('strong', { text: 'Locked' }), ' by session ',
      el('a', { href: '#/sessions', text: session }),
      s ? ` (${s.Name || 'no name'}, node ${s.Node}, TTL ${s.TTL || 'none'}, behavior ${s.Behavior})` : '');
  }

  // ---- sessions ----
  async function sessionsPage(gen) {
    const main = $('#main');
    main.append(el('h2', { text: 'Sessions' }));
    let list;
    try { list = await getJSON('/v1/session/list'); } catch (e) { return failed(e); }
    if (gen !== state.gen) return;
    if (!list || !list.length) { main.append(el('p', { class: 'muted', id: 'sessions', text: 'No sessions.' })); return; }
    const cols = ['ID', 'Name', 'Node', 'Behavior', 'TTL', 'LockDelay', 'CreateIndex'];
    main.append(el('div', { class: 'scroll' }, el('table', { id: 'sessions' },
      el('thead', {}, el('tr', {}, cols.map((c) => el('th', { scope: 'col', text: c })))),
      el('tbody', {}, list.map((s) => el('tr', { 'data-session': s.ID }, cols.map((c) => el('td', { text: c === 'LockDelay' ? (s[c] / 1e9) + 's' : String(s[c] ?? '') }))))))));
  }

  // ---- chaos ----
  async function chaosPage(gen) {
    const main = $('#main');
    main.append(el('h2', { text: 'Chaos' }));
    try {
      if (!state.cluster) await refreshCluster(gen);
    } catch (e) { return failed(e); }
    if (gen !== state.gen) return;
    if (!state.cluster.chaos) {
      main.append(el('p', { text: 'Fault injection is off on this cluster (nodes run without --chaos).' }));
      return;
    }
    let mine;
    try {
      const r = await api('GET', '/v1/chaos/faults', { quiet403: true });
      if (r.status === 403) {
        main.append(el('p', { id: 'chaos-denied', text: 'The chaos panel needs a management token. ' }, el('button', { type: 'button', onclick: () => showLogin('Sign in with a management token to inject faults.'), text: 'Use another token' })));
        return;
      }
      mine = await r.json();
    } catch (e) { return failed(e); }
    const ids = state.cluster.members.map((m) => m.id).sort();
    const boxes = (name) => el('div', { class: 'checks' }, ids.map((id) => el('label', {}, el('input', { type: 'checkbox', name, value: id }), ' ' + id)));
    const picked = (form, name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
    const select = (id, opts) => el('select', { id }, opts.map((o) => el('option', { value: o, text: o })));
    const result = el('div', { id: 'chaos-result', 'aria-live': 'polite' });

    async function act(action) {
      try {
        const r = await api('POST', '/v1/ui/chaos', { body: JSON.stringify(action) });
        const body = await r.json();
        if (!r.ok && !body.steps) { say(`Refused: ${body.error}`, 'error'); return; }
        result.replaceChildren(el('h3', { text: `${action.action}: ${r.ok ? 'done' : 'partly failed'}` }),
          el('ul', {}, (body.steps || []).map((s) => el('li', { 'data-node': s.node }, `${s.node}: `, s.error ? el('span', { class: 'error', text: s.error }) : (s.rules ? `${s.rules.rules.length} rule(s) installed` : 'cleared')))));
        say(r.ok ? `${action.action} applied.` : `${action.action}: some nodes failed.`, r.ok ? 'info' : 'error');
        refreshCluster(gen).catch(failed);
        const own = await api('GET', '/v1/chaos/faults', { quiet403: true });
        if (own.ok) $('#own-rules').textContent = JSON.stringify((await own.json()).rules || []);
      } catch (e) { failed(e); }
    }
    const form = (id, title, help, fields, submit) => el('form', { id, class: 'panel', onsubmit: (ev) => { ev.preventDefault(); submit(ev.target); } },
      el('h3', { text: title }), el('p', { class: 'muted', text: help }), fields, el('div', { class: 'row' }, el('button', { type: 'submit', class: 'primary', text: title })));

    main.append(
      el('p', {}, `This node\u2019s (${state.cluster.served_by}) own rules: `, el('code', { id: 'own-rules', text: JSON.stringify(mine.rules || []) })),
      el('div', { class: 'row' }, el('button', { type: 'button', id: 'heal', class: 'primary', text: 'Heal everything', onclick: () => act({ action: 'heal' }) })),
      result,
      el('div', { class: 'panels' },
        form('partition-form', 'Partition', 'Cut every link between side A and side B, both ways. Nodes on neither side bridge them.',
          [el('fieldset', {}, el('legend', { text: 'Side A' }), boxes('a')), el('fieldset', {}, el('legend', { text: 'Side B' }), boxes('b'))],
          (f) => act({ action: 'partition', a: picked(f, 'a'), b: picked(f, 'b') })),
        form('isolate-form', 'Isolate', 'Cut the chosen nodes off from every peer.',
          el('fieldset', {}, el('legend', { text: 'Nodes' }), boxes('iso')), (f) => act({ action: 'isolate', nodes: picked(f, 'iso') })),
        form('oneway-form', 'Cut one way', 'Lose every message from one node to another; the other way still works.',
          [el('label', { for: 'ow-from', text: 'from' }), select('ow-from', ['*', ...ids]), el('label', { for: 'ow-to', text: 'to' }), select('ow-to', ['*', ...ids])],
          () => act({ action: 'oneway', from: $('#ow-from').value, to: $('#ow-to').value })),
        form('degrade-form', 'Degrade', 'Delay and drop messages of the chosen nodes (none chosen: every node).',
          [el('fieldset', {}, el('legend', { text: 'Nodes' }), boxes('deg')),
            el('label', { for: 'deg-delay', text: 'delay (ms)' }), el('input', { id: 'deg-delay', type: 'number', min: 0, value: 50 }),
            el('label', { for: 'deg-jitter', text: 'jitter (ms)' }), el('input', { id: 'deg-jitter', type: 'number', min: 0, value: 10 }),
            el('label', { for: 'deg-drop', text: 'drop (%)' }), el('input', { id: 'deg-drop', type: 'number', min: 0, max: 100, value: 0 })],
          (f) => act({ action: 'degrade', nodes: picked(f, 'deg'), delay: `${+$('#deg-delay').value || 0}ms`, jitter: `${+$('#deg-jitter').value || 0}ms`, drop: (+$('#deg-drop').value || 0) / 100 })),
        form('crash-form', 'Crash an actor', 'Make one actor of one node fail; its supervisor restarts it.',
          [el('label', { for: 'crash-node', text: 'node' }), select('crash-node', ids),
            el('label', { for: 'crash-actor', text: 'actor' }), select('crash-actor', ['raft', 'forward', 'http', 'peers', 'sessions', 'quota']),
            el('label', { for: 'crash-fault', text: 'fault' }), select('crash-fault', ['panic', 'raft-shutdown', 'listener'])],
          () => act({ action: 'crash', nodes: [$('#crash-node').value], actor: $('#crash-actor').value, fault: $('#crash-fault').value }))),
      el('h3', { text: 'Who sees whom' }),
      el('div', { id: 'matrix', class: 'scroll' }),
      el('h3', { text: 'Fault events' }),
      el('ol', { id: 'timeline', class: 'timeline' }));
    drawMatrix(state.cluster);
    drawTimeline('fault');
    while (gen === state.gen) {
      await sleep(2000);
      if (gen !== state.gen) return;
      try { await refreshCluster(gen); } catch (e) { if (e instanceof AuthError) return; failed(e); }
    }
  }

  // ---- start ----
  document.addEventListener('DOMContentLoaded', () => {
    $('#login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      setToken($('#login-token').value.trim());
      route();
    });
    $('#login-clear').addEventListener('click', () => { setToken(''); showLogin('Token forgotten.'); });
    $('#token-button').addEventListener('click', () => showLogin(state.token ? 'Signed in. Enter another token to switch.' : ''));
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && !$('#login').hidden && state.token) route();
    });
    // The skip link moves focus without touching the hash, which routes.
    $('.skip').addEventListener('click', (ev) => { ev.preventDefault(); $('#main').focus(); });
    window.addEventListener('hashchange', route);
    route();
  });
})();
