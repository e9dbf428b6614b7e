/*! leadpipe tracker — https://github.com/leadpipe/leadpipe
 *
 * <script async src="https://COLLECTOR/lf.js" data-site="SITE_ID"
 *         data-consent="not-required|required"></script>
 *
 * Options (attributes of the tag):
 *   data-consent      "required": nothing is written to cookies or localStorage
 *                     until leadpipe('consent', 'granted') (or the site's consent
 *                     manager) grants it. Default "not-required".
 *   data-consent-wait seconds the page's hits wait for the visitor's answer where
 *                     consent is required and not yet given (default 30). Granted
 *                     in time, they go out with the client id, so the landing page
 *                     and the pages after it are one visit of one visitor; refused,
 *                     unanswered in time, or the tab hidden, they go out without it.
 *                     0 sends them at once.
 *   data-cookie-days  lifetime of the _lfa client id (default 730, the seed's
 *                     2 years; CNIL expects at most 395 days for consent-exempt
 *                     audience measurement).
 *   data-respect-dnt  "false" ignores Global Privacy Control / Do Not Track
 *                     (default: honoured, as a refusal of storage).
 *   data-hash         "true" counts #hash changes as page views.
 *   data-heartbeat    seconds between engagement reports on a long page (15).
 *
 * Commands: leadpipe('consent', 'granted'|'denied'); leadpipe('pageview') after
 * an in-app navigation the history API did not signal; leadpipe('identify',
 * {email: …}) when a visitor gives an e-mail address (a form): only with
 * consent granted, and the collector keeps only the address's domain.
 *
 * Calls made before this script loads are queued by the one-line stub:
 *   window.leadpipe=window.leadpipe||function(){(leadpipe.q=leadpipe.q||[]).push(arguments)};
 *
 * Storage (first-party, SameSite=Lax, Secure on https), as the seed lists it:
 *   cookie _lfa                     client id                    data-cookie-days
 *   cookie _lfa_consent             consent status               2 years
 *                                   ("granted"; "denied" only where consent
 *                                   is not required, so that the refusal
 *                                   outlasts the page)
 *   cookie _lfa_test_cookie_stored  probe, deleted at once       immediately
 *   localStorage _lfa, _lfa_expiry  client id and its expiry (restores a cookie
 *                                   a browser shortened)
 *
 * It never throws into the host page and does nothing when loaded twice.
 */
(function (w, d) {
  'use strict';
  if (w.__leadpipe) return;
  w.__leadpipe = true;
  try { main(); } catch (e) { /* never break the host page */ }

  function main() {
    var tag = d.currentScript || d.querySelector('script[data-site][src*="lf.js"]');
    if (!tag) return;
    var site = tag.getAttribute('data-site');
    if (!site) return;
    var attr = function (name, def) { var v = tag.getAttribute('data-' + name); return v === null ? def : v; };
    var endpoint = attr('endpoint', tag.src.replace(/\/lf\.js(\?.*)?$/, '/v1/hit'));
    var consentRequired = attr('consent', 'not-required') === 'required';
    var cookieDays = Math.max(+attr('cookie-days', 730) || 730, 1);
    var respectDNT = attr('respect-dnt', 'true') !== 'false';
    var trackHash = attr('hash', 'false') === 'true';
    var heartbeatMs = Math.max(+attr('heartbeat', 15) || 15, 5) * 1000;
    var consentWait = +attr('consent-wait', 30);
    var consentWaitMs = (isNaN(consentWait) ? 30 : Math.max(consentWait, 0)) * 1000;
    var secure = location.protocol === 'https:' ? ';Secure' : '';
    var DAY = 864e5;
    // guard wraps every callback the browser calls later: nothing leadpipe
    // does may throw into the host page.
    var guard = function (fn) { return function () { try { return fn.apply(this, arguments); } catch (e) { /* never break the host page */ } }; };

    // ---- consent -------------------------------------------------------
    // explicit: what leadpipe('consent', …), a TCF CMP or Google Consent Mode
    // said; null until one of them speaks.
    var remembered = getCookie('_lfa_consent');
    var explicit = remembered === 'granted' || remembered === 'denied' ? remembered : null;
    var privacySignal = respectDNT && (navigator.globalPrivacyControl === true ||
      navigator.doNotTrack === '1' || w.doNotTrack === '1');
    // held: hits waiting for the answer (see release); holding: whether
    // new hits still wait.
    var held = [], holding = consentRequired && consentWaitMs > 0;

    function storageAllowed() {
      if (privacySignal || explicit === 'denied') return false;
      return explicit === 'granted' || !consentRequired;
    }
    function consentField() { return privacySignal ? 'denied' : (explicit || 'unknown'); }

    function setConsent(value) {
      if (value !== 'granted' && value !== 'denied') return;
      var changed = value !== explicit;
      explicit = value;
      if (value === 'granted') {
        setCookie('_lfa_consent', 'granted', 730 * DAY);
        clientId();
      } else {
        forget();
        // Where storage needs no consent, the refusal itself must be
        // remembered, or the next page would store the id again. Where
        // consent is required, nothing is stored by default anyway.
        if (consentRequired) deleteCookie('_lfa_consent');
        else setCookie('_lfa_consent', 'denied', 730 * DAY);
      }
      release(false);
      return changed;
    }

    // ---- storage -------------------------------------------------------
    function getCookie(name) {
      var m = d.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
      if (!m) return null;
      try { return decodeURIComponent(m[1]); } catch (e) { return null; }
    }
    var cookieDomain = null; // chosen once: the widest domain that takes a cookie
    function setCookie(name, value, maxAgeMs) {
      var base = name + '=' + encodeURIComponent(value) + ';path=/;SameSite=Lax' + secure +
        ';max-age=' + Math.floor(maxAgeMs / 1000);
      if (cookieDomain === null) cookieDomain = findDomain();
      d.cookie = base + (cookieDomain ? ';domain=' + cookieDomain : '');
    }
    function deleteCookie(name) {
      var parts = location.hostname.split('.');
      for (var i = 0; i < parts.length; i++) {
        d.cookie = name + '=;path=/;max-age=0;domain=' + parts.slice(i).join('.');
      }
      d.cookie = name + '=;path=/;max-age=0';
    }
    // The widest domain of the host that accepts a cookie (so a.example.com
    // and b.example.com share the id), probed with _lfa_test_cookie_stored,
    // which is deleted at once. IP addresses and single labels get
    // host-only cookies.
    function findDomain() {
      var host = location.hostname;
      if (/^[\d.]+$/.test(host) || host.indexOf(':') >= 0 || host.indexOf('.') < 0) return '';
      var parts = host.split('.');
      for (var i = parts.length - 2; i >= 0; i--) {
        var dom = parts.slice(i).join('.');
        d.cookie = '_lfa_test_cookie_stored=1;path=/;SameSite=Lax' + secure + ';domain=' + dom;
        if (getCookie('_lfa_test_cookie_stored')) {
          d.cookie = '_lfa_test_cookie_stored=;path=/;max-age=0;domain=' + dom;
          return dom;
        }
      }
      return '';
    }
    function ls(op, key, value) {
      try {
        var s = w.localStorage;
        if (op === 'get') return s.getItem(key);
        if (op === 'set') s.setItem(key, value); else s.removeItem(key);
      } catch (e) { /* storage disabled */ }
      return null;
    }
    function randomId(n) {
      var a = new Uint8Array(n), s = '';
      (w.crypto || w.msCrypto).getRandomValues(a);
      for (var i = 0; i < n; i++) s += (a[i] + 256).toString(16).slice(1);
      return s;
    }
    // clientId returns the _lfa id, creating or refreshing it, or '' when
    // storage is not allowed.
    function clientId() {
      if (!storageAllowed()) return '';
      var id = getCookie('_lfa');
      if (!id) {
        var saved = ls('get', '_lfa'), until = +ls('get', '_lfa_expiry');
        id = saved && until > Date.now() ? saved : 'LF1.1.' + randomId(8) + '.' + Date.now();
      }
      var expiry = Date.now() + cookieDays * DAY;
      setCookie('_lfa', id, cookieDays * DAY);
      ls('set', '_lfa', id);
      ls('set', '_lfa_expiry', String(expiry));
      return id;
    }
    // forget removes the client id; the consent cookie is the caller's.
    function forget() {
      deleteCookie('_lfa');
      ls('remove', '_lfa');
      ls('remove', '_lfa_expiry');
    }
    if (!storageAllowed() && (privacySignal || explicit === 'denied')) forget();

    // IAB TCF v2: purpose 1 (store and access information on a device).
    if (typeof w.__tcfapi === 'function') {
      try {
        w.__tcfapi('addEventListener', 2, function (tc, ok) {
          if (!ok || !tc || (tc.eventStatus !== 'tcloaded' && tc.eventStatus !== 'useractioncomplete')) return;
          // Outside the GDPR a CMP has nothing to ask; a site that requires
          // consent still waits for an explicit grant.
          if (tc.gdprApplies === false) { if (!consentRequired) setConsent('granted'); return; }
          setConsent(tc.purpose && tc.purpose.consents && tc.purpose.consents[1] ? 'granted' : 'denied');
        });
      } catch (e) { /* a broken CMP is the site's problem, not ours */ }
    }
    // Google Consent Mode: the latest analytics_storage in dataLayer, and
    // every update pushed after we loaded.
    var dl = w.dataLayer;
    if (dl && typeof dl.push === 'function') {
      var readGCM = function (entry) {
        if (entry && entry[0] === 'consent' && entry[2] && entry[2].analytics_storage) {
          setConsent(entry[2].analytics_storage);
        }
      };
      for (var i = 0; i < dl.length; i++) readGCM(dl[i]);
      var push = dl.push;
      dl.push = function () {
        var r = push.apply(dl, arguments);
        try { for (var j = 0; j < arguments.length; j++) readGCM(arguments[j]); } catch (e) { /* ignore */ }
        return r;
      };
    }


    // ---- waiting for the answer ------------------------------------------
    // Where consent is required and the visitor has not answered yet, hits
    // wait (at most consentWaitMs after the page loaded). Sent at once, the
    // landing page would go out without a client id and the pages after
    // the banner's "accept" with one: two visitors and two visits for one
    // person. They go out when the visitor answers, with the answer; when
    // the tab is hidden (the visitor may be leaving), without a client id;
    // and without one at the end of the wait, after which nothing waits.
    function undecided() { return holding && explicit === null && !privacySignal; }
    function release(beacon) {
      var now = Date.now(), waiting = held;
      held = [];
      for (var i = 0; i < waiting.length; i++) {
        var p = waiting[i].p;
        p.cid = clientId();
        p.consent = consentField();
        p.held_ms = now - waiting[i].at;
        send(p, beacon);
      }
    }
    if (holding) {
      setTimeout(guard(function () { holding = false; release(false); }), consentWaitMs);
    }

    // ---- sending -------------------------------------------------------
    function pageURL() { return trackHash ? location.href : location.href.split('#')[0]; }
    function payload(type, extra) {
      var p = {
        site: site, type: type, url: currentURL, referrer: currentReferrer, title: d.title,
        cid: clientId(), id: randomId(16), consent: consentField(),
        screen: (w.screen ? w.screen.width + 'x' + w.screen.height : ''), language: navigator.language || ''
      };
      for (var k in extra) p[k] = extra[k];
      return p;
    }
    // send posts a hit; failures (network, 429, 5xx) are retried with the
    // same id, so the collector counts the hit once however often it
    // arrives. beacon: on page hide, when only sendBeacon survives.
    function send(p, beacon) {
      if (undecided() && !beacon) {
        held.push({ p: p, at: Date.now() });
        return;
      }
      var body = JSON.stringify(p);
      if (beacon && navigator.sendBeacon) {
        try { if (navigator.sendBeacon(endpoint, new Blob([body], { type: 'text/plain' }))) return; } catch (e) { /* fall through */ }
      }
      var attempt = 0;
      var retry = function () {
        if (++attempt > 4) return;
        setTimeout(guard(go), 500 * Math.pow(2, attempt));
      };
      var go = function () {
        if (w.fetch) {
          w.fetch(endpoint, { method: 'POST', body: body, keepalive: true, credentials: 'omit',
            headers: { 'Content-Type': 'text/plain' } })
            .then(function (r) { if (r.status === 429 || r.status >= 500) retry(); }, retry);
        } else {
          var x = new XMLHttpRequest();
          x.open('POST', endpoint, true);
          x.setRequestHeader('Content-Type', 'text/plain');
          x.onload = function () { if (x.status === 429 || x.status >= 500) retry(); };
          x.onerror = retry;
          x.send(body);
        }
      };
      go();
    }

    // ---- engaged time: visible and focused --------------------------------
    var engagedMs = 0, since = null;
    function engagedNow() { return d.visibilityState === 'visible' && (!d.hasFocus || d.hasFocus()); }
    function tick() {
      var now = Date.now();
      if (since !== null) engagedMs += now - since;
      since = engagedNow() ? now : null;
    }
    function flushEngagement(beacon) {
      tick();
      var ms = Math.round(engagedMs);
      if (ms < 1000) return; // too short to say anything
      engagedMs = 0;
      send(payload('engagement', { engaged_ms: ms }), beacon);
    }
    ['visibilitychange', 'focus', 'blur', 'pagehide', 'pageshow'].forEach(function (ev) {
      (ev === 'visibilitychange' ? d : w).addEventListener(ev, guard(function () {
        if (ev === 'pagehide' || (ev === 'visibilitychange' && d.visibilityState === 'hidden')) {
          release(true);
          flushEngagement(true);
        } else {
          tick();
        }
      }));
    });
    setInterval(guard(function () {
      tick();
      if (engagedMs >= heartbeatMs) flushEngagement(false);
    }), 5000);

    // ---- page views, including single-page-app navigation ----------------
    var currentURL = pageURL(), currentReferrer = d.referrer;
    function pageview() {
      tick();
      send(payload('pageview', {}));
    }
    // navigated counts an in-app navigation. The router updates the title
    // after pushState returns, so the pageview goes out a tick later, with
    // the URL taken now.
    function navigated() {
      var next = pageURL();
      if (next === currentURL) return;
      flushEngagement(false);
      currentReferrer = currentURL;
      currentURL = next;
      setTimeout(guard(function () { if (currentURL === next) pageview(); }), 0);
    }
    ['pushState', 'replaceState'].forEach(function (name) {
      var orig = history[name];
      if (typeof orig !== 'function') return;
      history[name] = function () {
        var r = orig.apply(this, arguments);
        try { navigated(); } catch (e) { /* ignore */ }
        return r;
      };
    });
    w.addEventListener('popstate', guard(navigated));
    if (trackHash) w.addEventListener('hashchange', guard(navigated));

    // ---- identify: the visitor's employer, only with consent ----------------
    // leadpipe('identify', {email: …}) after a form is sent: with consent
    // granted, the address goes to the collector, which keeps only its
    // registrable domain (never the address, never a free-mail domain).
    // Without consent nothing is sent.
    function identify(arg) {
      var email = arg && typeof arg === 'object' ? arg.email : arg;
      if (typeof email !== 'string' || email.indexOf('@') < 1 || consentField() !== 'granted') return;
      send(payload('identify', { email: email }));
    }

    // ---- public API and the queue of early calls ------------------------
    var queued = (w.leadpipe && w.leadpipe.q) || [];
    w.leadpipe = function (cmd, arg) {
      try {
        if (cmd === 'consent') setConsent(arg);
        else if (cmd === 'pageview') navigated();
        else if (cmd === 'identify') identify(arg);
      } catch (e) { /* ignore */ }
    };
    for (var q = 0; q < queued.length; q++) w.leadpipe.apply(null, queued[q]);

    if (d.readyState === 'loading') {
      d.addEventListener('DOMContentLoaded', guard(function () { currentURL = pageURL(); pageview(); }));
    } else {
      pageview();
    }
  }
})(window, document);
