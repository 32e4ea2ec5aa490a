// The recommendation widget: cip.recommend({block, n, items, container, template, products}).
//
// Asks /recommend (for the customer and the anonymous visitor when personalization is
// allowed, for nobody otherwise), renders each item with the shop's template into the
// container, reports one recommendation_impression when the block is seen and a
// recommendation_click per click, both with the block, position and strategy, so
// each block can be measured.

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(v) {
  return String(v === undefined || v === null ? "" : v).replace(/[&<>"']/g, (c) => ESC[c]);
}

/** "{{title}} costs {{price}}" -> the item's fields, HTML-escaped. */
export function fillTemplate(template, item) {
  return template.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, (_, k) => escapeHtml(item[k]));
}

const DEFAULT_TEMPLATE =
  '<a class="cip-rec-item" href="{{url}}"><span class="cip-rec-title">{{title}}</span></a>';

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

export async function renderRecommendations(cip, opt) {
  const container = resolveContainer(opt.container);
  const block = opt.block || "recommended";
  const body = { n: opt.n || 4 };
  if (opt.block) body.block = opt.block; // named blocks, where the service has them
  if (opt.category) body.category = opt.category;
  if (opt.recentItems) body.recent_items = opt.recentItems;
  if (opt.block && opt.items) body.items = opt.items; // the page's context: product, cart
  if (cip.allowed("personalization")) {
    body.anonymous_id = cip.anonymousId();
    const cid = cip.customerId();
    if (cid) body.customer_id = cid;
  }
  const r = await cip._post("/recommend", body);
  if (!r.ok) {
    let msg = `${r.status}`;
    try {
      msg += ` ${(await r.json()).error}`;
    } catch (e) {
      /* not JSON */
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
    block,
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
  const meta = { block, strategy: res.strategy, model_version: res.model_version || undefined };
  const shown = items.map((i) => i.item_id);
  const impression = () =>
    cip.track("recommendation_impression", { ...meta, items: shown, n: shown.length });
  if (items.length) {
    if (window.IntersectionObserver) {
      const io = new IntersectionObserver(
        (entries) => {
          if (entries.some((e) => e.isIntersecting)) {
            io.disconnect();
            impression();
          }
        },
        { threshold: 0.3 },
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
      cip.track("recommendation_click", {
        ...m,
        item_id: el.getAttribute("data-cip-item"),
        position: Number(el.getAttribute("data-cip-position")),
      });
      cip.queue.beacon(); // the click may navigate away: send now
    });
  }
  container.__cipMeta = meta;
  return { ...res, items };
}
