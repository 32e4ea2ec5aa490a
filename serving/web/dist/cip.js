(() => {
  // src/queue.js
  var RETRY = /* @__PURE__ */ new Set([408, 425, 429]);
  var BEACON_MAX = 6e4;
  function createQueue(opt) {
    let items = load();
    let timer = null;
    let inFlight = null;
    let failures = 0;
    let nextTry = 0;
    function load() {
      if (!opt.store) return [];
      try {
        const v = JSON.parse(opt.store.getItem(opt.storageKey) || "[]");
        return Array.isArray(v) ? v : [];
      } catch (e) {
        return [];
      }
    }
    function save() {
      if (!opt.store) return;
      try {
        opt.store.setItem(opt.storageKey, JSON.stringify(items));
      } catch (e) {
        items = items.slice(Math.floor(items.length / 2));
        try {
          opt.store.setItem(opt.storageKey, JSON.stringify(items));
        } catch (e2) {
        }
      }
    }
    function wire(batch) {
      return JSON.stringify({
        events: batch.map((e) => {
          const { _purpose, ...rest } = e;
          return rest;
        })
      });
    }
    function remove(ids) {
      const gone = new Set(ids);
      items = (opt.store ? load() : items).filter((e) => !gone.has(e.event_id));
      save();
    }
    function schedule(ms) {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        flush();
      }, Math.max(0, ms));
    }
    async function flush() {
      if (inFlight) return false;
      if (opt.store) items = load();
      if (!items.length) return true;
      const wait = nextTry - Date.now();
      if (wait > 0) {
        schedule(wait);
        return false;
      }
      const batch = items.slice(0, opt.batchSize);
      inFlight = batch.map((e) => e.event_id);
      let ok = false;
      try {
        const r = await fetch(opt.url, {
          method: "POST",
          headers: { "Content-Type": "text/plain" },
          body: wire(batch),
          keepalive: true,
          credentials: "omit",
          mode: "cors"
        });
        if (r.ok || r.status >= 400 && r.status < 500 && !RETRY.has(r.status)) {
          if (!r.ok) console.warn(`cip: ${r.status} from /events; ${batch.length} event(s) dropped`);
          remove(inFlight);
          ok = true;
        }
      } catch (e) {
        ok = false;
      }
      inFlight = null;
      if (ok) {
        failures = 0;
        nextTry = 0;
        if (items.length) schedule(0);
        return true;
      }
      failures += 1;
      const delay = Math.min(opt.retryMax, opt.retryBase * 2 ** (failures - 1));
      nextTry = Date.now() + delay * (0.75 + Math.random() * 0.25);
      schedule(nextTry - Date.now());
      return false;
    }
    return {
      start() {
        if (load().length) schedule(0);
      },
      push(e) {
        items = opt.store ? load() : items;
        items.push(e);
        if (items.length > opt.maxQueue) items = items.slice(items.length - opt.maxQueue);
        save();
        if (!timer && !inFlight) schedule(items.length >= opt.batchSize ? 0 : opt.flushInterval);
      },
      drop(pred) {
        items = (opt.store ? load() : items).filter((e) => !pred(e));
        save();
      },
      size() {
        return (opt.store ? load() : items).length;
      },
      flush() {
        nextTry = 0;
        return flush();
      },
      beacon() {
        if (!navigator.sendBeacon) return;
        items = opt.store ? load() : items;
        const skip = new Set(inFlight || []);
        let batch = items.filter((e) => !skip.has(e.event_id)).slice(0, 200);
        while (batch.length && wire(batch).length > BEACON_MAX) batch = batch.slice(0, batch.length >> 1);
        if (!batch.length) return;
        const sent = navigator.sendBeacon(opt.url, new Blob([wire(batch)], { type: "text/plain" }));
        if (sent && failures === 0) remove(batch.map((e) => e.event_id));
      }
    };
  }

  // src/widget.js
  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function escapeHtml(v) {
    return String(v === void 0 || v === null ? "" : v).replace(/[&<>"']/g, (c) => ESC[c]);
  }
  function fillTemplate(template, item) {
    return template.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, (_, k) => escapeHtml(item[k]));
  }
  var DEFAULT_TEMPLATE = '<a class="cip-rec-item" href="{{url}}"><span class="cip-rec-title">{{title}}</span></a>';
  function resolveContainer(c) {
    const el = typeof c === "string" ? document.querySelector(c) : c;
    if (!el) throw new Error(`cip.recommend: no container ${c}`);
    return el;
  }
  function lookup(products, id) {
    if (!products) return {};
    if (typeof products === "function") return products(id) || {};
    return products[id] || {};
  }
  async function renderRecommendations(cip2, opt) {
    const container = resolveContainer(opt.container);
    const block = opt.block || "recommended";
    const body = { n: opt.n || 4 };
    if (opt.block) body.block = opt.block;
    if (opt.category) body.category = opt.category;
    if (opt.recentItems) body.recent_items = opt.recentItems;
    if (opt.block && opt.items) body.items = opt.items;
    if (cip2.allowed("personalization")) {
      body.anonymous_id = cip2.anonymousId();
      const cid = cip2.customerId();
      if (cid) body.customer_id = cid;
    }
    const r = await cip2._post("/recommend", body);
    if (!r.ok) {
      let msg = `${r.status}`;
      try {
        msg += ` ${(await r.json()).error}`;
      } catch (e) {
      }
      throw new Error(`cip.recommend: ${msg}`);
    }
    const res = await r.json();
    const items = res.items.map((it, i) => ({
      title: it.item_id,
      url: "#",
      ...lookup(opt.products, it.item_id),
      item_id: it.item_id,
      score: it.score,
      position: i + 1,
      block
    }));
    const tpl = opt.template || DEFAULT_TEMPLATE;
    container.replaceChildren();
    container.setAttribute("data-cip-block", block);
    for (const item of items) {
      const out = typeof tpl === "function" ? tpl(item) : fillTemplate(tpl, item);
      let el;
      if (out instanceof Element) el = out;
      else {
        const holder = document.createElement("div");
        holder.innerHTML = String(out).trim();
        el = holder.firstElementChild || holder;
      }
      el.setAttribute("data-cip-item", item.item_id);
      el.setAttribute("data-cip-position", String(item.position));
      container.appendChild(el);
    }
    const meta = { block, strategy: res.strategy, model_version: res.model_version || void 0 };
    const shown = items.map((i) => i.item_id);
    const impression = () => cip2.track("recommendation_impression", { ...meta, items: shown, n: shown.length });
    if (items.length) {
      if (window.IntersectionObserver) {
        const io = new IntersectionObserver(
          (entries) => {
            if (entries.some((e) => e.isIntersecting)) {
              io.disconnect();
              impression();
            }
          },
          { threshold: 0.3 }
        );
        io.observe(container);
      } else impression();
    }
    if (!container.__cipClick) {
      container.__cipClick = true;
      container.addEventListener("click", (ev) => {
        const el = ev.target.closest && ev.target.closest("[data-cip-item]");
        if (!el || !container.contains(el)) return;
        const m = container.__cipMeta || {};
        cip2.track("recommendation_click", {
          ...m,
          item_id: el.getAttribute("data-cip-item"),
          position: Number(el.getAttribute("data-cip-position"))
        });
        cip2.queue.beacon();
      });
    }
    container.__cipMeta = meta;
    return { ...res, items };
  }

  // src/index.js
  var DEFAULTS = {
    host: "",
    // CIP service origin; "" = the page's own origin
    key: "",
    // publishable browser key (pk_...); never a shop key
    cookieName: "cip_aid",
    // first-party anonymous id cookie
    cookieDays: 365,
    cookieDomain: "",
    // e.g. ".shop.example" to share the id across subdomains
    batchSize: 20,
    // events per request
    flushInterval: 1e3,
    // ms to wait for more events before sending a batch
    retryBase: 1e3,
    // first retry delay (ms), doubled on each failure
    retryMax: 3e4,
    // longest retry delay (ms)
    maxQueue: 1e3,
    // events kept while the service is unreachable (oldest dropped)
    storagePrefix: "cip_",
    consent: { analytics: true, personalization: true },
    // defaults until cip.consent()
    channel: "web"
  };
  var SERVER_PURPOSES = ["email", "sms", "push", "personalization", "profiling"];
  var ITEM_FIELDS = ["item_id", "order_id", "session_id", "rating", "event_id"];
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  function readCookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function writeCookie(name, value, days, domain) {
    const exp = new Date(Date.now() + days * 864e5).toUTCString();
    let c = `${name}=${encodeURIComponent(value)}; expires=${exp}; path=/; SameSite=Lax`;
    if (domain) c += `; domain=${domain}`;
    if (location.protocol === "https:") c += "; Secure";
    document.cookie = c;
  }
  function storage() {
    try {
      const s = window.localStorage;
      s.setItem("cip__t", "1");
      s.removeItem("cip__t");
      return s;
    } catch (e) {
      return null;
    }
  }
  var Tracker = class {
    constructor() {
      this.cfg = null;
      this.queue = null;
    }
    /** Configure the tracker; call once per page before anything else. */
    init(config) {
      const cfg = { ...DEFAULTS, ...config || {} };
      cfg.consent = { ...DEFAULTS.consent, ...config && config.consent };
      cfg.host = String(cfg.host || location.origin).replace(/\/+$/, "");
      if (!/^pk_/.test(cfg.key)) throw new Error("cip.init: key must be a browser key (pk_...)");
      this.cfg = cfg;
      this.store = storage();
      const saved = this._get("consent");
      this.purposes = saved ? { ...cfg.consent, ...JSON.parse(saved) } : { ...cfg.consent };
      this.queue = createQueue({
        url: `${cfg.host}/events?key=${encodeURIComponent(cfg.key)}`,
        store: this.store,
        storageKey: cfg.storagePrefix + "queue",
        batchSize: cfg.batchSize,
        flushInterval: cfg.flushInterval,
        retryBase: cfg.retryBase,
        retryMax: cfg.retryMax,
        maxQueue: cfg.maxQueue
      });
      const hide = () => this.queue.beacon();
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "hidden") hide();
      });
      window.addEventListener("pagehide", hide);
      this.queue.start();
      return this;
    }
    _need() {
      if (!this.cfg) throw new Error("cip: call cip.init({host, key}) first");
    }
    _get(k) {
      return this.store ? this.store.getItem(this.cfg.storagePrefix + k) : null;
    }
    _set(k, v) {
      if (!this.store) return;
      if (v === null) this.store.removeItem(this.cfg.storagePrefix + k);
      else this.store.setItem(this.cfg.storagePrefix + k, v);
    }
    /** The first-party anonymous id (created on first use, kept in a cookie). */
    anonymousId() {
      this._need();
      let id = readCookie(this.cfg.cookieName);
      if (!id) {
        id = "a-" + uuid();
        writeCookie(this.cfg.cookieName, id, this.cfg.cookieDays, this.cfg.cookieDomain);
      }
      return id;
    }
    /** The customer id given to identify(), or null. */
    customerId() {
      this._need();
      return this._get("cid");
    }
    _session() {
      let s = null;
      try {
        s = sessionStorage.getItem(this.cfg.storagePrefix + "sid");
        if (!s) {
          s = "s-" + uuid();
          sessionStorage.setItem(this.cfg.storagePrefix + "sid", s);
        }
      } catch (e) {
        s = null;
      }
      return s;
    }
    /** Is this purpose allowed (analytics, personalization, ...)? */
    allowed(purpose) {
      this._need();
      return this.purposes[purpose] !== false;
    }
    /**
     * Record the visitor's choices, e.g. cip.consent({analytics: false}).
     * A refused purpose stops at once: its queued events are dropped, nothing more is
     * sent for it. Choices for the service's purposes (personalization, email, ...) are
     * sent as consent events so the service honours them too.
     */
    consent(choices) {
      this._need();
      const changed = {};
      for (const [p, v] of Object.entries(choices || {})) {
        if (this.purposes[p] !== !!v) changed[p] = !!v;
        this.purposes[p] = !!v;
      }
      this._set("consent", JSON.stringify(this.purposes));
      for (const p of Object.keys(this.purposes)) {
        if (this.purposes[p] === false) this.queue.drop((e) => e._purpose === p);
      }
      for (const [p, granted] of Object.entries(changed)) {
        if (SERVER_PURPOSES.includes(p)) {
          this._enqueue("consent", { purpose: p, granted }, "consent");
        }
      }
    }
    /**
     * Anonymous -> known: the visitor logged in or signed up. Sends an `identify`
     * event carrying both ids (the identity graph links them); later events carry both.
     */
    identify(customerId, traits) {
      this._need();
      const cid = String(customerId);
      const before = this._get("cid");
      this._set("cid", cid);
      if (before !== cid) this.track("identify", traits ? { traits } : {});
    }
    /** Logout: forget the customer id and start a new anonymous id. */
    reset() {
      this._need();
      this._set("cid", null);
      writeCookie(this.cfg.cookieName, "a-" + uuid(), this.cfg.cookieDays, this.cfg.cookieDomain);
    }
    /**
     * Queue one event. `props` may hold item_id, order_id, rating, event_id (sent as
     * fields) and anything else (sent as properties). `purpose` defaults to analytics.
     * Returns the event id, or null when the purpose is refused.
     */
    track(eventType, props, purpose) {
      this._need();
      return this._enqueue(eventType, props || {}, purpose || "analytics");
    }
    _enqueue(eventType, props, purpose) {
      if (purpose !== "consent" && !this.allowed(purpose)) return null;
      const e = {
        event_type: eventType,
        event_id: "w-" + uuid(),
        ts: (/* @__PURE__ */ new Date()).toISOString(),
        anonymous_id: this.anonymousId(),
        channel: this.cfg.channel,
        _purpose: purpose
      };
      const cid = this.customerId();
      if (cid) e.customer_id = cid;
      const sid = this._session();
      if (sid) e.session_id = sid;
      const rest = {};
      for (const [k, v] of Object.entries(props)) {
        if (v === void 0) continue;
        if (ITEM_FIELDS.includes(k)) e[k] = k === "rating" ? Number(v) : String(v);
        else rest[k] = v;
      }
      if (Object.keys(rest).length) e.properties = rest;
      this.queue.push(e);
      return e.event_id;
    }
    // -- named events ------------------------------------------------------------
    page(props) {
      return this.track("page_view", {
        url: location.href,
        path: location.pathname,
        title: document.title,
        referrer: document.referrer || void 0,
        ...props || {}
      });
    }
    productView(itemId, props) {
      return this.track("product_view", { ...props || {}, item_id: itemId });
    }
    addToCart(itemId, quantity, props) {
      return this.track("add_to_cart", { ...props || {}, item_id: itemId, quantity: quantity || 1 });
    }
    removeFromCart(itemId, props) {
      return this.track("remove_from_cart", { ...props || {}, item_id: itemId });
    }
    checkout(props) {
      return this.track("checkout", props || {});
    }
    purchase(orderId, props) {
      return this.track("purchase", { ...props || {}, order_id: orderId });
    }
    search(query, props) {
      return this.track("search", { ...props || {}, query });
    }
    signUp(customerId, props) {
      if (customerId) this.identify(customerId);
      return this.track("sign_up", props || {});
    }
    /** Send what is queued now (returns a promise). */
    flush() {
      this._need();
      return this.queue.flush();
    }
    /** Events waiting to be sent (for tests and debugging). */
    pending() {
      return this.queue ? this.queue.size() : 0;
    }
    /**
     * Render a recommendation block into a container and report its impression and
     * clicks as events (recommendation_impression, recommendation_click).
     * Options: {block, n, items, container, template, products, category, recentItems}; `items`
     * (the product page's or cart's items) go with a named block.
     */
    recommend(options) {
      this._need();
      return renderRecommendations(this, options || {});
    }
    /** POST a JSON body to the CIP host with the browser key (used by the widget). */
    _post(path, body) {
      const url = `${this.cfg.host}${path}?key=${encodeURIComponent(this.cfg.key)}`;
      return fetch(url, {
        method: "POST",
        headers: { "Content-Type": "text/plain" },
        body: JSON.stringify(body),
        credentials: "omit",
        mode: "cors"
      });
    }
  };
  var cip = new Tracker();
  window.cip = cip;
  var index_default = cip;
})();
