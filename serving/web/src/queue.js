// A durable event queue: localStorage-backed, batched, retried with backoff.
//
// Events stay in the queue until the service answered for them: 2xx (accepted or
// rejected one by one) or a 4xx that retrying cannot fix. Network errors, 5xx, 408
// and 429 keep them and retry after retryBase * 2^failures ms (at most retryMax,
// with jitter). On page hide the queue goes out with navigator.sendBeacon; what the
// browser took is removed (kept while the service is failing), the rest waits for
// the site's next page.

const RETRY = new Set([408, 425, 429]);
const BEACON_MAX = 60000; // bytes: browsers cap a page's beacons near 64 KB

export function createQueue(opt) {
  let items = load();
  let timer = null;
  let inFlight = null; // ids being sent
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
      // storage full: keep the newest half
      items = items.slice(Math.floor(items.length / 2));
      try {
        opt.store.setItem(opt.storageKey, JSON.stringify(items));
      } catch (e2) {
        /* in memory only */
      }
    }
  }

  function wire(batch) {
    return JSON.stringify({
      events: batch.map((e) => {
        const { _purpose, ...rest } = e;
        return rest;
      }),
    });
  }

  function remove(ids) {
    const gone = new Set(ids);
    // reread: other tabs of the site may have queued events meanwhile
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
        mode: "cors",
      });
      if (r.ok || (r.status >= 400 && r.status < 500 && !RETRY.has(r.status))) {
        if (!r.ok) console.warn(`cip: ${r.status} from /events; ${batch.length} event(s) dropped`);
        remove(inFlight);
        ok = true;
      }
    } catch (e) {
      ok = false; // unreachable: keep them
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
      // a beacon's fate is unknown: while the service answers, what the browser took is
      // gone; while it is failing, the events stay queued for the site's next page
      // (at least once: a duplicate has the same event_id)
      if (sent && failures === 0) remove(batch.map((e) => e.event_id));
    },
  };
}
