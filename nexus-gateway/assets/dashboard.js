'use strict';
// Nexus live dashboard. Polls /admin/dashboard once per second and renders it
// with DOM calls only (textContent, never markup strings: keys and IPs come from
// the outside). Every panel renders independently and tolerates missing or
// unknown fields, so a change in another service's /stats cannot break it.
(function () {
  var POLL_MS = 1000;
  var TOKEN_KEY = 'nexus.dashboard.token';
  var SVG = 'http://www.w3.org/2000/svg';
  var MAX_KV_ROWS = 80;
  var MAX_HOT_KEYS = 20;
  var token = null;
  var timer = null;
  var lastGatewayEvents = null;
  var lastConsumerTotal = null;

  function $(id) { return document.getElementById(id); }
  function clear(node) { while (node && node.firstChild) { node.removeChild(node.firstChild); } }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function fmt(v, digits) {
    if (!isNum(v)) { return '–'; }
    if (digits === undefined) {
      digits = Math.abs(v) >= 100 || Number.isInteger(v) ? 0 : (Math.abs(v) >= 10 ? 1 : 2);
    }
    return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  // Sets a big number: visible text plus the raw value in data-value.
  function setNum(id, v, digits) {
    var e = $(id);
    if (!e) { return; }
    e.textContent = fmt(v, digits);
    e.setAttribute('data-value', isNum(v) ? String(v) : '');
  }
  function setText(id, text) { var e = $(id); if (e) { e.textContent = text; } }
  function duration(secs) {
    if (!isNum(secs)) { return '?'; }
    var h = Math.floor(secs / 3600), m = Math.floor(secs % 3600 / 60), s = Math.floor(secs % 60);
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + s + 's';
  }
  function setStatus(text, state) {
    var s = $('status');
    s.textContent = text;
    s.setAttribute('data-state', state);
  }
  function row(cells) {
    var tr = document.createElement('tr');
    cells.forEach(function (c) {
      if (c instanceof Node) { var td = document.createElement('td'); td.appendChild(c); tr.appendChild(td); }
      else { tr.appendChild(el('td', isNum(c) ? 'num' : '', isNum(c) ? fmt(c) : c)); }
    });
    return tr;
  }
  function badge(text) { return el('span', 'badge ' + String(text).replace(/[^a-z_]/g, ''), text); }
  function guard(name, fn) {
    try { fn(); } catch (e) { if (window.console) { console.error('panel ' + name, e); } }
  }

  // ---- charts (inline SVG) ----
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  // lines: [{values: [number|null], cls, area}]
  function chart(id, lines) {
    var box = $(id);
    if (!box) { return; }
    var W = 600, H = 120, L = 34, T = 8, B = 14;
    var n = 0, max = 0;
    lines.forEach(function (l) {
      n = Math.max(n, l.values.length);
      l.values.forEach(function (v) { if (isNum(v) && v > max) { max = v; } });
    });
    max = max > 0 ? niceMax(max) : 1;
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img' });
    [0, 0.5, 1].forEach(function (f) {
      var y = T + (H - T - B) * (1 - f);
      root.appendChild(svg('line', { x1: L, x2: W, y1: y, y2: y, 'class': 'grid-line' }));
      var t = svg('text', { x: 2, y: y + 3, 'class': 'axis-label' });
      t.textContent = fmt(max * f);
      root.appendChild(t);
    });
    var x = function (i) { return L + (W - L) * (n <= 1 ? 1 : i / (n - 1)); };
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    lines.forEach(function (l) {
      var d = '', first = null, last = null;
      l.values.forEach(function (v, i) {
        if (!isNum(v)) { return; }
        d += (d ? ' L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
        if (first === null) { first = i; }
        last = i;
      });
      if (!d) { return; }
      if (l.area) {
        root.appendChild(svg('path', { d: d + ' L' + x(last).toFixed(1) + ' ' + y(0) + ' L' + x(first).toFixed(1) + ' ' + y(0) + ' Z', 'class': 'area-' + l.cls }));
      }
      root.appendChild(svg('path', { d: d, 'class': 'line-' + l.cls }));
    });
    clear(box);
    box.appendChild(root);
  }
  function niceMax(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (v <= steps[i] * p) { return steps[i] * p; } }
    return 10 * p;
  }
  function bar(id, ratio) {
    var box = $(id);
    if (!box) { return; }
    clear(box);
    if (!isNum(ratio)) { return; }
    var r = Math.max(0, Math.min(1, ratio));
    var root = svg('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none' });
    root.appendChild(svg('rect', { x: 0, y: 0, width: 100, height: 10, rx: 3, 'class': 'bar-bg' }));
    root.appendChild(svg('rect', { x: 0, y: 0, width: (r * 100).toFixed(2), height: 10, rx: 3, 'class': 'bar-fg' }));
    box.appendChild(root);
  }

  // ---- generic JSON helpers (tolerant) ----
  // Breadth-first search for a field by name, at most `depth` objects deep.
  function find(obj, name, depth) {
    var queue = [[obj, 0]];
    while (queue.length) {
      var item = queue.shift(), o = item[0];
      if (!o || typeof o !== 'object' || Array.isArray(o)) { continue; }
      if (Object.prototype.hasOwnProperty.call(o, name)) { return o[name]; }
      if (item[1] < depth) {
        Object.keys(o).forEach(function (k) { queue.push([o[k], item[1] + 1]); });
      }
    }
    return undefined;
  }
  // A number from a number, the length of an array, or the sum of an object's numbers.
  function count(v) {
    if (isNum(v)) { return v; }
    if (Array.isArray(v)) { return v.length; }
    if (v && typeof v === 'object') {
      var s = 0, any = false;
      Object.keys(v).forEach(function (k) { if (isNum(v[k])) { s += v[k]; any = true; } });
      return any ? s : undefined;
    }
    return undefined;
  }
  // Numeric and boolean leaves as [dotted key, value], arrays as their length.
  function flatten(obj, prefix, depth, out) {
    Object.keys(obj).forEach(function (k) {
      if (out.length >= MAX_KV_ROWS) { return; }
      var v = obj[k], key = prefix ? prefix + '.' + k : k;
      if (isNum(v) || typeof v === 'boolean') { out.push([key, v]); }
      else if (Array.isArray(v)) { out.push([key + ' (items)', v.length]); }
      else if (v && typeof v === 'object' && depth < 3) { flatten(v, key, depth + 1, out); }
    });
    return out;
  }
  function kvTable(id, stats) {
    var body = $(id) && $(id).tBodies[0];
    if (!body) { return; }
    clear(body);
    flatten(stats || {}, '', 0, []).forEach(function (kv) {
      body.appendChild(row([kv[0], typeof kv[1] === 'boolean' ? String(kv[1]) : kv[1]]));
    });
  }

  // ---- gateway panels ----
  function renderGateway(g) {
    if (!g || typeof g !== 'object') { return; }
    guard('meta', function () {
      var gw = g.gateway || {};
      setText('gw-version', gw.version || '?');
      setText('gw-uptime', duration(gw.uptime_secs));
    });
    guard('traffic', function () {
      var r = g.requests || {};
      setText('window-secs', isNum(r.window_secs) ? String(r.window_secs) : '?');
      setNum('req-rate', r.rate_per_sec);
      setNum('p50', r.p50_ms);
      setNum('p90', r.p90_ms);
      setNum('p99', r.p99_ms);
      setNum('req-total', r.requests_total, 0);
      var classes = $('status-classes');
      clear(classes);
      ['2xx', '3xx', '4xx', '5xx'].forEach(function (c) {
        var s = el('span', 'c' + c, c + ' ' + fmt(r['status_' + c], 0));
        s.setAttribute('data-value', String(r['status_' + c]));
        s.id = 'status-' + c;
        classes.appendChild(s);
      });
      var series = Array.isArray(g.series) ? g.series : [];
      chart('chart-rate', [{ values: series.map(function (s) { return s.requests; }), cls: 'a', area: true }]);
      chart('chart-latency', [
        { values: series.map(function (s) { return s.p50_ms; }), cls: 'a' },
        { values: series.map(function (s) { return s.p99_ms; }), cls: 'b' }
      ]);
    });
    guard('upstreams', function () {
      setText('strategy', g.strategy ? '(' + g.strategy + ')' : '');
      var body = $('upstreams').tBodies[0];
      clear(body);
      (Array.isArray(g.upstreams) ? g.upstreams : []).forEach(function (u) {
        var tr = row([el('span', '', u.url), badge(u.healthy ? 'up' : 'down'), u.in_flight,
          u.handled, u.failed, u.ewma_ms, badge(u.breaker || 'unknown')]);
        tr.setAttribute('data-url', String(u.url));
        tr.setAttribute('data-breaker', String(u.breaker));
        tr.cells[0].className = 'url';
        body.appendChild(tr);
      });
    });
    guard('protection', function () {
      var r = g.requests || {}, rl = g.rate_limit || {}, bl = g.blocklist || {};
      setNum('rl-window', r.status_429, 0);
      setNum('rl-total', r.rate_limited_total, 0);
      setNum('bl-count', bl.blocked_ips, 0);
      setNum('bl-total', r.blocked_total, 0);
      var body = $('offenders').tBodies[0];
      clear(body);
      (Array.isArray(rl.top_offenders) ? rl.top_offenders : []).forEach(function (o) {
        body.appendChild(row([String(o.ip), o.count]));
      });
      if (!rl.enabled) { body.appendChild(row(['rate limiter disabled', ''])); }
      var list = $('bl-sample');
      clear(list);
      (Array.isArray(bl.sample) ? bl.sample : []).forEach(function (ip) { list.appendChild(el('li', '', ip)); });
      if (!bl.enabled) { list.appendChild(el('li', 'dim', 'no blocklist configured')); }
    });
    guard('events', function () {
      var ev = g.events || {}, st = ev.stats;
      setText('ev-sink', ev.sink ? '(' + ev.sink + ' sink)' : '');
      if (st && typeof st === 'object') {
        setNum('ev-emitted', st.emitted, 0);
        setNum('ev-sent', st.sent, 0);
        setNum('ev-dropped', st.dropped, 0);
        setNum('ev-failed', st.failed, 0);
        var now = Date.now();
        if (lastGatewayEvents && isNum(st.emitted) && now > lastGatewayEvents.t) {
          setNum('ev-rate', Math.max(0, (st.emitted - lastGatewayEvents.n) * 1000 / (now - lastGatewayEvents.t)));
        }
        lastGatewayEvents = { t: now, n: st.emitted };
        setText('ev-note', '');
      } else {
        setText('ev-note', 'This sink keeps no counters (events are written to the log).');
      }
    });
  }

  // ---- other services' panels ----
  function panelState(prefix, doc) {
    var card = $(prefix + '-panel');
    var state = doc && typeof doc.status === 'string' ? doc.status : 'error';
    card.setAttribute('data-state', state);
    var text;
    if (state === 'ok') { text = 'ok · ' + (doc.url || ''); }
    else if (state === 'not_configured') { text = 'not configured: ' + (doc.message || ''); }
    else { text = state.replace('_', ' ') + (doc && doc.message ? ': ' + doc.message : '') + (doc && doc.url ? ' (' + doc.url + ')' : ''); }
    setText(prefix + '-state', text);
    return state === 'ok' && doc.stats && typeof doc.stats === 'object' ? doc.stats : null;
  }
  function renderCache(doc) {
    var stats = panelState('cache', doc);
    var hot = $('cache-hot').tBodies[0];
    clear(hot);
    if (!stats) {
      setNum('cache-hit-ratio', null); setNum('cache-held', null); bar('cache-hit-bar', null);
      kvTable('cache-kv', {});
      return;
    }
    var ratio = find(stats, 'hit_ratio', 2);
    if (isNum(ratio)) {
      var r = ratio > 1 ? ratio / 100 : ratio;
      var e = $('cache-hit-ratio');
      e.textContent = fmt(r * 100, 1) + ' %';
      e.setAttribute('data-value', String(r));
      bar('cache-hit-bar', r);
    } else { setNum('cache-hit-ratio', null); bar('cache-hit-bar', null); }
    setNum('cache-held', count(find(stats, 'held_readers', 2)), 0);
    var keys = find(stats, 'hot_keys', 2);
    (Array.isArray(keys) ? keys : []).slice(0, MAX_HOT_KEYS).forEach(function (k) {
      if (k && typeof k === 'object') {
        var name = k.key !== undefined ? k.key : (k.name !== undefined ? k.name : '?');
        var details = Object.keys(k).filter(function (f) { return f !== 'key' && f !== 'name' && (isNum(k[f]) || typeof k[f] === 'string' || typeof k[f] === 'boolean'); })
          .map(function (f) { return f + ' ' + (isNum(k[f]) ? fmt(k[f]) : String(k[f])); }).join(' · ');
        hot.appendChild(row([String(name), details]));
      } else {
        hot.appendChild(row([String(k), '']));
      }
      hot.lastChild.cells[0].className = 'key';
    });
    if (!hot.rows.length) { hot.appendChild(row([isNum(keys) ? fmt(keys, 0) + ' hot keys' : 'none reported', ''])); }
    kvTable('cache-kv', stats);
  }
  function renderConsumer(doc) {
    var stats = panelState('consumer', doc);
    if (!stats) {
      ['consumer-eps', 'consumer-total', 'consumer-blocked', 'consumer-dropped'].forEach(function (id) { setNum(id, null); });
      clear($('consumer-blocked-list'));
      kvTable('consumer-kv', {});
      lastConsumerTotal = null;
      return;
    }
    var total = count(find(stats, 'events_total', 2));
    var eps = find(stats, 'events_per_second', 2);
    var now = Date.now();
    if (!isNum(eps) && isNum(total) && lastConsumerTotal && now > lastConsumerTotal.t) {
      eps = Math.max(0, (total - lastConsumerTotal.n) * 1000 / (now - lastConsumerTotal.t));
    }
    lastConsumerTotal = isNum(total) ? { t: now, n: total } : null;
    setNum('consumer-eps', eps);
    setNum('consumer-total', total, 0);
    var active = find(stats, 'blocked_ips_active', 2);
    var blocked = find(stats, 'blocked_ips', 2);
    setNum('consumer-blocked', isNum(active) ? active : count(blocked), 0);
    var list = $('consumer-blocked-list');
    clear(list);
    (Array.isArray(blocked) ? blocked : []).slice(0, MAX_HOT_KEYS).forEach(function (b) {
      var ip = b && typeof b === 'object' ? b.ip : b;
      var hits = b && typeof b === 'object' && isNum(b.hits) ? ' (' + fmt(b.hits, 0) + ' hits)' : '';
      list.appendChild(el('li', '', String(ip) + hits));
    });
    setNum('consumer-dropped', count(find(stats, 'dropped', 2)), 0);
    kvTable('consumer-kv', stats);
  }

  function render(doc) {
    guard('gateway', function () { renderGateway(doc.gateway); });
    guard('cache', function () { renderCache(doc.cache); });
    guard('consumer', function () { renderConsumer(doc.consumer); });
  }

  // ---- token and polling ----
  function store(t) {
    token = t;
    try { if (t) { sessionStorage.setItem(TOKEN_KEY, t); } else { sessionStorage.removeItem(TOKEN_KEY); } } catch (e) { /* storage off */ }
  }
  function takeToken() {
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      store(decodeURIComponent(m[1]));
      // Keep the token out of the address bar, history and screenshots.
      try { history.replaceState(null, '', location.pathname + location.search); } catch (e) { /* ignore */ }
      return;
    }
    try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
  }
  function showLogin(why) {
    setText('login-why', why);
    $('login').hidden = false;
    setStatus('signed out', 'warn');
  }
  function poll() {
    clearTimeout(timer);
    if (!token) { showLogin('Sign in to read the admin endpoints.'); return; }
    fetch('/admin/dashboard', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' })
      .then(function (res) {
        if (res.status === 401) {
          store(null);
          showLogin('The token is missing, expired or invalid: sign in again.');
          return null;
        }
        if (res.status === 429) {
          var wait = Math.max(1, parseInt(res.headers.get('retry-after') || '1', 10) || 1);
          setStatus('rate limited: retrying in ' + wait + ' s', 'warn');
          timer = setTimeout(poll, wait * 1000);
          return null;
        }
        if (!res.ok) { throw new Error('gateway answered ' + res.status); }
        return res.json().then(function (doc) {
          $('login').hidden = true;
          render(doc);
          setStatus('live · ' + new Date().toLocaleTimeString('en-GB'), 'ok');
          timer = setTimeout(poll, POLL_MS);
        });
      })
      .catch(function (e) {
        setStatus('gateway unreachable: ' + e.message, 'bad');
        timer = setTimeout(poll, POLL_MS);
      });
  }
  $('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    setText('login-error', '');
    var pasted = $('login-token').value.trim();
    if (pasted) { store(pasted); poll(); return; }
    fetch('/auth/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ client_id: $('login-id').value, client_secret: $('login-secret').value })
    }).then(function (res) {
      return res.json().then(function (body) {
        if (!res.ok || !body.access_token) { throw new Error(body.message || body.error || ('status ' + res.status)); }
        $('login-secret').value = '';
        store(body.access_token);
        poll();
      });
    }).catch(function (e) { setText('login-error', 'Sign-in failed: ' + e.message); });
  });
  takeToken();
  poll();
})();
