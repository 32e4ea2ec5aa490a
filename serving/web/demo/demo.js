// The demo storefront: products of the served workspace, the CIP tracker and widget.
(async function () {
  const cfg = await (await fetch("config.json")).json();
  const products = await (await fetch("products.json")).json();
  const byId = Object.fromEntries(products.map((p) => [p.item_id, p]));
  const $ = (s) => document.querySelector(s);
  const log = (text) => {
    const li = document.createElement("li");
    li.textContent = text;
    $("#log").prepend(li);
  };
  cip.init({ host: cfg.host || location.origin, key: cfg.key, retryBase: 500, retryMax: 4000 });
  const track = (type, fn) => {
    const id = fn();
    log(id ? type : `${type} (not sent: consent)`);
  };
  $("#c-analytics").checked = cip.allowed("analytics");
  $("#c-personalization").checked = cip.allowed("personalization");
  for (const p of ["analytics", "personalization"]) {
    $(`#c-${p}`).addEventListener("change", (ev) => {
      cip.consent({ [p]: ev.target.checked });
      log(`consent ${p}: ${ev.target.checked}`);
      showRecs();
    });
  }
  const cart = [];
  const showCart = () => {
    $("#cart").replaceChildren(...cart.map((id) => {
      const li = document.createElement("li");
      li.textContent = (byId[id] && byId[id].title) || id;
      return li;
    }));
    $("#cart-n").textContent = String(cart.length);
  };
  const money = (v) => (v === null || v === undefined ? "" : `€${Number(v).toFixed(2)}`);
  const recTemplate = (it) =>
    `<a class="cip-rec-item" href="#${encodeURIComponent(it.item_id)}">` +
    `<div>${esc(it.title || it.item_id)}</div><div class="cat">${esc(it.category || "")}</div>` +
    `<div class="price">${money(it.price)}</div></a>`;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  async function showRecs() {
    try {
      const res = await cip.recommend({
        container: "#recs", n: 4, template: recTemplate, products: byId,
      });
      log(`recommendations: ${res.strategy}`);
    } catch (e) {
      log(String(e.message || e));
    }
  }
  const grid = $("#products");
  for (const p of products.slice(0, 24)) {
    const card = document.createElement("div");
    card.className = "card" + (p.in_stock === false ? " out" : "");
    card.dataset.item = p.item_id;
    card.innerHTML =
      `<div>${esc(p.title || p.item_id)}</div><div class="cat">${esc(p.category || "")}</div>` +
      `<div class="price">${money(p.price)}</div>` +
      `<button class="view">View</button><button class="add">Add to cart</button>`;
    card.querySelector(".view").addEventListener("click", () => {
      track(`product_view ${p.item_id}`, () => cip.productView(p.item_id));
      setTimeout(showRecs, 300); // the session changes the recommendations
    });
    card.querySelector(".add").addEventListener("click", () => {
      track(`add_to_cart ${p.item_id}`, () => cip.addToCart(p.item_id, 1));
      cart.push(p.item_id);
      showCart();
    });
    grid.appendChild(card);
  }
  $("#search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = ev.target.q.value;
    track(`search "${q}"`, () => cip.search(q));
  });
  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const cid = ev.target.cid.value.trim();
    if (!cid) return;
    cip.identify(cid);
    $("#who").textContent = `customer ${cid}`;
    log(`identify ${cid}`);
    showRecs();
  });
  if (cip.customerId()) $("#who").textContent = `customer ${cip.customerId()}`;
  $("#checkout").addEventListener("click", () => track("checkout", () => cip.checkout({ items: cart.length })));
  $("#buy").addEventListener("click", () => {
    const order = "web-" + Date.now();
    track(`purchase ${order}`, () => cip.purchase(order, { items: cart.slice() }));
    cart.length = 0;
    showCart();
  });
  setInterval(() => { $("#pending").textContent = String(cip.pending()); }, 300);
  track("page_view", () => cip.page());
  await showRecs();
  document.body.dataset.ready = "1";
})();
