// CIP browser tracker and recommendation widget.
//
//   <script src="https://cip.shop.example/web/cip.js"></script>
//   <script>
//     cip.init({ host: "https://cip.shop.example", key: "pk_..." });
//     cip.page();
//   </script>
//
// Everything goes to `host` only (no third-party requests). Events are queued in
// localStorage, sent in batches, retried with exponential backoff while the service
// is unreachable, and flushed with navigator.sendBeacon when the page is hidden.
// Nothing is queued or sent for a purpose the visitor refused (cip.consent).

import { createQueue } from "./queue.js";
import { renderRecommendations } from "./widget.js";

const DEFAULTS = {
  host: "", // CIP service origin; "" = the page's own origin
  key: "", // publishable browser key (pk_...); never a shop key
  cookieName: "cip_aid", // first-party anonymous id cookie
  cookieDays: 365,
  cookieDomain: "", // e.g. ".shop.example" to share the id across subdomains
  batchSize: 20, // events per request
  flushInterval: 1000, // ms to wait for more events before sending a batch
  retryBase: 1000, // first retry delay (ms), doubled on each failure
  retryMax: 30000, // longest retry delay (ms)
  maxQueue: 1000, // events kept while the service is unreachable (oldest dropped)
  storagePrefix: "cip_",
  consent: { analytics: true, personalization: true }, // defaults until cip.consent()
  channel: "web",
};

// purposes the service records (consent events); "analytics" is the tracker's own
const SERVER_PURPOSES = ["email", "sms", "push", "personalization", "profiling"];
const ITEM_FIELDS = ["item_id", "order_id", "session_id", "rating", "event_id"];

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
    return null; // private mode or blocked: an in-memory queue only
  }
}

class Tracker {
  constructor() {
    this.cfg = null;
    this.queue = null;
  }

  /** Configure the tracker; call once per page before anything else. */
  init(config) {
    const cfg = { ...DEFAULTS, ...(config || {}) };
    cfg.consent = { ...DEFAULTS.consent, ...(config && config.consent) };
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
      maxQueue: cfg.maxQueue,
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
      ts: new Date().toISOString(),
      anonymous_id: this.anonymousId(),
      channel: this.cfg.channel,
      _purpose: purpose,
    };
    const cid = this.customerId();
    if (cid) e.customer_id = cid;
    const sid = this._session();
    if (sid) e.session_id = sid;
    const rest = {};
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined) continue;
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
      referrer: document.referrer || undefined,
      ...(props || {}),
    });
  }
  productView(itemId, props) {
    return this.track("product_view", { ...(props || {}), item_id: itemId });
  }
  addToCart(itemId, quantity, props) {
    return this.track("add_to_cart", { ...(props || {}), item_id: itemId, quantity: quantity || 1 });
  }
  removeFromCart(itemId, props) {
    return this.track("remove_from_cart", { ...(props || {}), item_id: itemId });
  }
  checkout(props) {
    return this.track("checkout", props || {});
  }
  purchase(orderId, props) {
    return this.track("purchase", { ...(props || {}), order_id: orderId });
  }
  search(query, props) {
    return this.track("search", { ...(props || {}), query });
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
      mode: "cors",
    });
  }
}

const cip = new Tracker();
window.cip = cip;
export default cip;
