// Switchyard dashboard: polls the REST API and redraws the tables. Plain DOM, no build step.
"use strict";

// The page lives at <basePath>/dashboard/, the API at <basePath>/api/.
const API = new URL("../api/", window.location.href);
const REFRESH_MS = Number(new URLSearchParams(window.location.search).get("refresh")) || 2000;
let filterText = "";
let lastData = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function age(seconds) {
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
}

function plural(count, word) {
  return count + " " + word + (count === 1 ? "" : "s");
}

function badge(text) {
  return el("span", { class: "badge " + text }, text);
}

function trafficCells(traffic) {
  const t = traffic || {};
  return [
    el("td", { class: "num", "data-field": "open" }, t.openConnections || 0),
    el("td", { class: "num" }, t.totalConnections || 0),
    el("td", { class: "num" }, bytes(t.bytesIn)),
    el("td", { class: "num" }, bytes(t.bytesOut)),
  ];
}

function matchesFilter(item, ...fields) {
  if (!filterText) return true;
  return fields.some((f) => String(item[f] || "").toLowerCase().includes(filterText));
}

// Rows for one element plus, below it, a row listing its errors.
function elementRows(item, cells, columns) {
  const rows = [el("tr", { class: item.status, "data-name": item.name }, cells)];
  if (item.error && item.error.length) {
    const cls = item.status === "disabled" ? "error" : "warn";
    rows.push(el("tr", { class: item.status + " errors" },
      el("td", { colspan: columns },
        el("ul", { class: "messages" }, item.error.map((e) => el("li", { class: cls }, e))))));
  }
  return rows;
}

function fillTable(id, rows, columns, emptyText) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: columns, class: "empty" }, emptyText))]));
}

function renderOverview(overview, entrypoints) {
  const tcp = overview.tcp;
  const http = overview.http;
  const traffic = (overview.switchyard || {}).traffic || {};
  const card = (label, section) => el("div", { class: "card" },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, section.total),
    el("div", { class: "detail" },
      el("span", { class: section.warnings ? "warn" : "muted" }, plural(section.warnings, "warning")),
      el("span", { class: section.errors ? "error" : "muted" }, plural(section.errors, "error"))));
  document.getElementById("overview").replaceChildren(
    card("TCP routers", tcp.routers),
    card("TCP services", tcp.services),
    card("TCP middlewares", tcp.middlewares),
    card("HTTP routers", http.routers),
    card("HTTP services", http.services),
    card("HTTP middlewares", http.middlewares),
    el("div", { class: "card" },
      el("div", { class: "label" }, "Open connections"),
      el("div", { class: "value", id: "open-connections" }, traffic.openConnections || 0),
      el("div", { class: "detail muted" }, (traffic.totalConnections || 0) + " total")),
    el("div", { class: "card" },
      el("div", { class: "label" }, "Bytes from clients"),
      el("div", { class: "value" }, bytes(traffic.bytesIn)),
      el("div", { class: "detail muted" }, bytes(traffic.bytesOut) + " to clients")),
    el("div", { class: "card" },
      el("div", { class: "label" }, "Entry points"),
      el("div", { class: "value" }, entrypoints.length),
      el("div", { class: "detail muted" },
        "providers: " + ((overview.providers || []).join(", ") || "none"))));

  const config = (overview.switchyard || {}).config || {};
  const reload = document.getElementById("reload");
  reload.textContent = config.reloads + " config reloads" +
    (config.lastReloadSuccess ? ", last " + new Date(config.lastReloadSuccess).toLocaleTimeString() : "");
}

function renderProblems(overview, routers, services, middlewares, http) {
  const items = [];
  const config = (overview.switchyard || {}).config || {};
  for (const [provider, message] of Object.entries(config.providerErrors || {})) {
    items.push(el("li", { class: "error" },
      `provider "${provider}": configuration not applied: ${message}`));
  }
  for (const issue of config.issues || []) {
    const where = issue.source + (issue.line ? ":" + issue.line : "");
    items.push(el("li", { class: issue.severity === "error" ? "error" : "warn" },
      `${where}: ${issue.path ? issue.path + ": " : ""}${issue.message}`));
  }
  for (const [kind, list] of [["router", routers], ["service", services], ["middleware", middlewares],
    ["HTTP router", http.routers], ["HTTP service", http.services],
    ["HTTP middleware", http.middlewares]]) {
    for (const item of list) {
      for (const error of item.error || []) {
        items.push(el("li", { class: item.status === "disabled" ? "error" : "warn" },
          `${kind} "${item.name}": ${error}`));
      }
    }
  }
  document.getElementById("problems-section").hidden = items.length === 0;
  document.getElementById("problems").replaceChildren(...items);
}

function renderEntryPoints(entrypoints) {
  fillTable("entrypoints", entrypoints.map((ep) => el("tr", { "data-name": ep.name },
    el("td", {}, ep.name),
    el("td", {}, el("code", {}, ep.listening || ep.address)),
    ep.traffic ? trafficCells(ep.traffic)
      : el("td", { colspan: 4, class: "muted" }, "API / dashboard / metrics"))), 6, "No entry point");
}

function renderRouters(routers) {
  const rows = routers.filter((r) => matchesFilter(r, "name", "rule", "service")).flatMap((r) =>
    elementRows(r, [
      el("td", {}, badge(r.status)),
      el("td", {}, r.name),
      el("td", {}, el("code", {}, r.rule || "")),
      el("td", {}, (r.using || r.entryPoints || []).join(", ")),
      el("td", { class: "num" }, r.priorityStr || r.priority || 0),
      el("td", {}, (r.middlewares || []).join(", ")),
      el("td", {}, r.service || ""),
      el("td", {}, r.tls ? (r.tls.passthrough ? "passthrough" : "terminate") : ""),
      ...trafficCells(r.traffic),
    ], 12));
  fillTable("routers", rows, 12, "No TCP router");
}

function renderServices(services) {
  const rows = services.filter((s) => matchesFilter(s, "name")).flatMap((s) => {
    let servers = [];
    if (s.loadBalancer) {
      servers = (s.loadBalancer.servers || []).map((server) => {
        const status = (s.serverStatus || {})[server.address];
        const traffic = (s.serverTraffic || {})[server.address] || {};
        const ejected = (s.passiveEjections || {})[server.address];
        const weight = server.weight === undefined ? "" : ` weight ${server.weight}`;
        return el("span", { class: "server" },
          status ? badge(status) : "", " ", el("code", {}, server.address),
          el("span", { class: "muted" }, `${weight} ${traffic.openConnections || 0} open` +
            (ejected ? `, taken out ${ejected}x by passive health` : "")));
      });
      if (s.loadBalancer.strategy) {
        servers.unshift(el("span", { class: "muted" }, `strategy ${s.loadBalancer.strategy} `));
      }
    } else if (s.weighted) {
      servers = (s.weighted.services || []).map((child) =>
        el("span", { class: "server" }, child.name, el("span", { class: "muted" },
          " weight " + (child.weight === undefined ? 1 : child.weight))));
    }
    return elementRows(s, [
      el("td", {}, badge(s.status)),
      el("td", {}, s.name),
      el("td", {}, s.type || ""),
      el("td", {}, servers),
      el("td", {}, (s.usedBy || []).join(", ")),
      ...trafficCells(s.traffic),
    ], 9);
  });
  fillTable("services", rows, 9, "No TCP service");
}

function middlewareSettings(m) {
  if (m.ipAllowList) return "allow " + (m.ipAllowList.sourceRange || []).join(", ");
  if (m.ipWhiteList) return "allow " + (m.ipWhiteList.sourceRange || []).join(", ");
  if (m.inFlightConn) {
    const scope = { router: "for the router", global: "in all" }[m.inFlightConn.scope] ||
      "per client IP";
    return "at most " + (m.inFlightConn.amount || 0) + " connections " + scope;
  }
  if (m.rateLimit) {
    return `${m.rateLimit.average || 0} connections per ${m.rateLimit.period || "1s"}, burst ` +
      `${m.rateLimit.burst || 1}` + (m.rateLimit.redis ? ", shared in Redis" : "");
  }
  return "";
}

function renderMiddlewares(middlewares) {
  const rows = middlewares.filter((m) => matchesFilter(m, "name")).flatMap((m) =>
    elementRows(m, [
      el("td", {}, badge(m.status)),
      el("td", {}, m.name),
      el("td", {}, m.type || ""),
      el("td", {}, [middlewareSettings(m), m.rejections ?
        el("span", { class: "muted" }, ` (${m.rejections} refused)`) : ""]),
      el("td", {}, (m.usedBy || []).join(", ")),
    ], 5));
  fillTable("middlewares", rows, 5, "No TCP middleware");
}

function renderHTTPRouters(routers) {
  const rows = routers.filter((r) => matchesFilter(r, "name", "rule", "service")).flatMap((r) =>
    elementRows(r, [
      el("td", {}, badge(r.status)),
      el("td", {}, r.name),
      el("td", {}, el("code", {}, r.rule || "")),
      el("td", {}, (r.using || r.entryPoints || []).join(", ")),
      el("td", { class: "num" }, r.priorityStr || r.priority || 0),
      el("td", {}, (r.middlewares || []).join(", ")),
      el("td", {}, r.service || ""),
      el("td", {}, r.tls ? (r.tls.certResolver ? "resolver " + r.tls.certResolver : "yes") : ""),
    ], 8));
  fillTable("http-routers", rows, 8, "No HTTP router");
}

function renderHTTPServices(services) {
  const rows = services.filter((s) => matchesFilter(s, "name")).flatMap((s) => {
    let servers = [];
    if (s.loadBalancer) {
      servers = (s.loadBalancer.servers || []).map((server) => {
        const status = (s.serverStatus || {})[server.url];
        return el("span", { class: "server" }, status ? badge(status) : "", " ",
          el("code", {}, server.url));
      });
    } else if (s.weighted) {
      servers = (s.weighted.services || []).map((child) =>
        el("span", { class: "server" }, child.name, el("span", { class: "muted" },
          " weight " + (child.weight === undefined ? 1 : child.weight))));
    } else if (s.failover) {
      servers = [el("span", { class: "server" }, s.failover.service),
        el("span", { class: "server muted" }, "fallback " + s.failover.fallback)];
    } else if (s.mirroring) {
      servers = [el("span", { class: "server" }, s.mirroring.service),
        ...(s.mirroring.mirrors || []).map((m) => el("span", { class: "server muted" },
          "mirror " + m.name + " " + (m.percent || 0) + "%"))];
    }
    return elementRows(s, [
      el("td", {}, badge(s.status)),
      el("td", {}, s.name),
      el("td", {}, s.type || ""),
      el("td", {}, servers),
      el("td", {}, (s.usedBy || []).join(", ")),
    ], 5);
  });
  fillTable("http-services", rows, 5, "No HTTP service");
}

function renderHTTPMiddlewares(middlewares) {
  const rows = middlewares.filter((m) => matchesFilter(m, "name")).flatMap((m) =>
    elementRows(m, [
      el("td", {}, badge(m.status)),
      el("td", {}, m.name),
      el("td", {}, m.type || ""),
      el("td", {}, (m.usedBy || []).join(", ")),
    ], 4));
  fillTable("http-middlewares", rows, 4, "No HTTP middleware");
}

function renderConnections(connections) {
  document.getElementById("connections-count").textContent = "(" + connections.length + ")";
  fillTable("connections", connections.map((c) => el("tr", {},
    el("td", {}, el("code", {}, c.client)),
    el("td", {}, c.entryPoint),
    el("td", {}, c.router),
    el("td", {}, c.server ? el("code", {}, c.server) : ""),
    el("td", {}, c.sni),
    el("td", {}, c.state),
    el("td", { class: "num" }, age(c.age)),
    el("td", { class: "num" }, bytes(c.bytesIn)),
    el("td", { class: "num" }, bytes(c.bytesOut)))), 9, "No open connection");
}

function render(data) {
  renderOverview(data.overview, data.entrypoints);
  renderProblems(data.overview, data.routers, data.services, data.middlewares, data.http);
  renderEntryPoints(data.entrypoints);
  renderRouters(data.routers);
  renderServices(data.services);
  renderMiddlewares(data.middlewares);
  renderHTTPRouters(data.http.routers);
  renderHTTPServices(data.http.services);
  renderHTTPMiddlewares(data.http.middlewares);
  renderConnections(data.connections);
}

async function getJSON(path) {
  const response = await fetch(new URL(path, API), { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

async function refresh() {
  try {
    const [overview, version, entrypoints, routers, services, middlewares, connections,
      httpRouters, httpServices, httpMiddlewares] =
      await Promise.all([
        getJSON("overview"), getJSON("version"), getJSON("entrypoints?per_page=1000"),
        getJSON("tcp/routers?per_page=10000"), getJSON("tcp/services?per_page=10000"),
        getJSON("tcp/middlewares?per_page=10000"), getJSON("tcp/connections?per_page=200"),
        getJSON("http/routers?per_page=10000"), getJSON("http/services?per_page=10000"),
        getJSON("http/middlewares?per_page=10000"),
      ]);
    document.getElementById("version").textContent = "v" + version.Version;
    const http = { routers: httpRouters, services: httpServices, middlewares: httpMiddlewares };
    lastData = { overview, entrypoints, routers, services, middlewares, connections, http };
    render(lastData);
    document.getElementById("offline").hidden = true;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (error) {
    document.getElementById("offline").hidden = false;
    console.error(error);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.getElementById("filter").addEventListener("input", (event) => {
  filterText = event.target.value.trim().toLowerCase();
  if (lastData) render(lastData);
});

refresh();
