// The management page of plugctl serve: lists plugins from /api/v1/plugins, runs their
// lifecycle actions and executes them. Plain DOM, no dependencies, nothing from other hosts.
"use strict";

(() => {
  const API = "/api/v1";
  const REFRESH_MS = 5000;
  const ACTIONS = ["reload", "unload", "enable", "disable"];
  const DONE = { reload: "reloaded", unload: "unloaded", enable: "enabled", disable: "disabled" };
  const DOING = { reload: "Reloading", unload: "Unloading", enable: "Enabling", disable: "Disabling" };

  const $ = (id) => document.getElementById(id);
  const ui = {
    host: $("host"),
    tokenForm: $("token-form"),
    token: $("token"),
    tokenClear: $("token-clear"),
    status: $("status"),
    notice: $("notice"),
    plugins: $("plugins"),
    empty: $("empty"),
    updated: $("updated"),
    refresh: $("refresh"),
    template: $("plugin-card"),
    form: $("execute-form"),
    plugin: $("execute-plugin"),
    label: $("execute-label"),
    values: $("execute-values"),
    valuesError: $("execute-values-error"),
    submit: $("execute-submit"),
    meta: $("execute-meta"),
    result: $("execute-result"),
  };

  /** An error the API answered, or a failure to reach it. */
  class ApiError extends Error {
    constructor(status, kind, message) {
      super(message);
      this.status = status;
      this.kind = kind;
    }
  }

  // The token lives in this closure only: never in storage, a cookie or the DOM, where a
  // page a plugin route serves on this origin could read it. Reloading the page forgets it.
  let apiToken = "";

  function currentToken() {
    return apiToken;
  }

  /** Calls the API; resolves to the parsed JSON body, rejects with an ApiError. */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const token = currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new ApiError(0, "network", `Cannot reach the server (${err.message}). Is it still running?`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (response.ok) return data;
    const error = data && typeof data === "object" && data.error ? data.error : {};
    if (response.status === 401) {
      const why = error.message ? ` (${error.message})` : "";
      throw new ApiError(401, "unauthorized", token
        ? `The server refused the API token${why}. Enter the right one in the token field above.`
        : `The API needs a token${why}: enter it in the token field above; it is sent as "Authorization: Bearer".`);
    }
    const message = error.message
      || `${method} ${API}${path} answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, error.kind || "http", message);
  }

  // ---- status line and notice ----

  function setStatus(text, kind) {
    ui.status.textContent = text;
    ui.status.className = `status${kind ? ` ${kind}` : ""}`;
  }

  function showNotice(err) {
    ui.notice.textContent = err ? err.message : "";
    ui.notice.hidden = !err;
    ui.tokenForm.classList.toggle("needs-token", Boolean(err && err.status === 401));
  }

  // ---- the plugin list ----

  /** Accepts `[...]` and `{ "plugins": [...] }`. */
  function pluginsOf(data) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data.plugins)) return data.plugins;
    throw new ApiError(200, "format", "GET /api/v1/plugins answered something that is not a list of plugins.");
  }

  function stateOf(plugin) {
    const state = plugin.state;
    if (state && typeof state === "object") return String(state.state || "unknown");
    return String(state || "unknown");
  }

  function reasonOf(plugin) {
    if (plugin.state && typeof plugin.state === "object" && plugin.state.reason) return String(plugin.state.reason);
    return plugin.reason ? String(plugin.reason) : "";
  }

  function versionOf(plugin) {
    return String(plugin.version || (plugin.active && plugin.active.version) || "");
  }

  function number(value) {
    return Number.isFinite(value) ? String(value) : "–";
  }

  function routeItem(route) {
    const li = document.createElement("li");
    if (typeof route === "string") {
      li.textContent = route;
      return li;
    }
    const method = document.createElement("span");
    method.className = "method";
    method.textContent = String(route.method || "ANY").toUpperCase();
    li.append(method, String(route.route || route.path || ""));
    if (route.label) {
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = ` → ${route.label}`;
      li.append(label);
    }
    return li;
  }

  /** Which actions make sense in `state`; the API still has the last word. */
  function allowed(action, state) {
    switch (action) {
      case "reload": return state !== "disabled" && state !== "unloading";
      case "unload": return state === "active" || state === "failed";
      case "enable": return state !== "active" && state !== "unloading";
      case "disable": return state !== "disabled";
      default: return false;
    }
  }

  function fillCard(card, plugin) {
    const state = stateOf(plugin);
    card.dataset.state = state;
    card.querySelector(".name").textContent = plugin.name;
    card.querySelector(".version").textContent = versionOf(plugin);
    const badge = card.querySelector(".badge");
    badge.textContent = state;
    badge.dataset.state = state;
    const reason = reasonOf(plugin);
    const reasonEl = card.querySelector(".reason");
    reasonEl.textContent = reason;
    reasonEl.hidden = !reason;
    card.querySelector(".in-flight").textContent = number(plugin.calls_in_flight);
    const stuck = card.querySelector(".stuck");
    stuck.textContent = number(plugin.stuck_calls);
    stuck.classList.toggle("alert", plugin.stuck_calls > 0);
    card.querySelector(".retained").textContent = number(plugin.retained_libraries);
    const routes = card.querySelector(".routes");
    const list = Array.isArray(plugin.routes) ? plugin.routes : [];
    routes.replaceChildren(...list.map(routeItem));
    if (list.length === 0) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = "none";
      routes.append(none);
    }
    for (const button of card.querySelectorAll("button[data-action]")) {
      const action = button.dataset.action;
      button.disabled = card.getAttribute("aria-busy") === "true" || !allowed(action, state);
      button.setAttribute("aria-label", `${button.textContent} ${plugin.name}`);
    }
  }

  function newCard(name) {
    const card = ui.template.content.firstElementChild.cloneNode(true);
    card.dataset.plugin = name;
    card.setAttribute("aria-label", `Plugin ${name}`);
    return card;
  }

  /** Updates the cards in place (so a button is never swapped under the pointer). */
  function renderPlugins(plugins) {
    const existing = new Map([...ui.plugins.children].map((card) => [card.dataset.plugin, card]));
    const cards = plugins.map((plugin) => {
      const name = String(plugin.name);
      const card = existing.get(name) || newCard(name);
      existing.delete(name);
      const signature = JSON.stringify(plugin);
      if (card.dataset.signature !== signature) {
        card.dataset.signature = signature;
        fillCard(card, plugin);
      }
      return card;
    });
    for (const gone of existing.values()) gone.remove();
    cards.forEach((card, i) => {
      if (ui.plugins.children[i] !== card) ui.plugins.insertBefore(card, ui.plugins.children[i] || null);
    });
    ui.empty.hidden = plugins.length !== 0;
    renderSelect(plugins);
  }

  function renderSelect(plugins) {
    const chosen = ui.plugin.value;
    const names = plugins.map((p) => String(p.name));
    const same = names.length === ui.plugin.options.length
      && names.every((name, i) => ui.plugin.options[i].value === name);
    if (!same) {
      ui.plugin.replaceChildren(...names.map((name) => new Option(name, name)));
    }
    plugins.forEach((plugin, i) => {
      const option = ui.plugin.options[i];
      const state = stateOf(plugin);
      option.textContent = state === "active" ? option.value : `${option.value} (${state})`;
    });
    if (names.includes(chosen)) ui.plugin.value = chosen;
    else {
      const active = plugins.find((p) => stateOf(p) === "active");
      if (active) ui.plugin.value = String(active.name);
    }
    ui.submit.disabled = names.length === 0;
  }

  let loading = null;
  let queued = null;

  /** Reloads the list: one load at a time, and a load asked for during one runs after it,
   * so that what an action changed is always shown. */
  function refresh() {
    if (!loading) {
      loading = loadPlugins().finally(() => {
        loading = null;
      });
      return loading;
    }
    if (!queued) {
      queued = loading.then(() => {
        queued = null;
        return refresh();
      });
    }
    return queued;
  }

  async function loadPlugins() {
    ui.plugins.setAttribute("aria-busy", "true");
    try {
      const plugins = pluginsOf(await api("GET", "/plugins"));
      renderPlugins(plugins);
      showNotice(null);
      ui.plugins.dataset.list = "ready";
      ui.updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      showNotice(err);
      ui.plugins.dataset.list = "error";
      ui.updated.textContent = "";
      if (ui.plugins.children.length === 0) ui.empty.hidden = true;
    } finally {
      ui.plugins.setAttribute("aria-busy", "false");
    }
  }

  // ---- actions ----

  function outcome(action, name, data) {
    if (data && typeof data.message === "string") return data.message;
    const version = data && typeof data === "object"
      ? data.to || data.version || (data.plugin && data.plugin.version) || ""
      : "";
    let text = `${DONE[action]} ${name}${version ? ` ${version}` : ""}`;
    const drain = data && typeof data === "object"
      ? (data.drain && typeof data.drain === "object" ? data.drain : data)
      : null;
    if (drain && drain.drain === "stuck") {
      text += ` (${drain.calls} call${drain.calls === 1 ? "" : "s"} ignore cancellation and still run on the old version)`;
    }
    return text;
  }

  async function runAction(card, action) {
    const name = card.dataset.plugin;
    card.setAttribute("aria-busy", "true");
    for (const button of card.querySelectorAll("button[data-action]")) button.disabled = true;
    setStatus(`${DOING[action]} ${name}…`, "busy");
    try {
      const data = await api("POST", `/plugins/${encodeURIComponent(name)}/${action}`);
      setStatus(outcome(action, name, data), "ok");
    } catch (err) {
      setStatus(`${DOING[action]} ${name} failed: ${err.message}`, "error");
    } finally {
      card.removeAttribute("aria-busy");
      card.dataset.signature = "";
      await refresh();
    }
  }

  ui.plugins.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const card = button.closest("[data-plugin]");
    if (card && ACTIONS.includes(button.dataset.action)) runAction(card, button.dataset.action);
  });

  // ---- execute ----

  function showResult(text, failed) {
    ui.result.textContent = text;
    ui.result.classList.toggle("error", failed);
    ui.result.hidden = false;
  }

  ui.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = ui.plugin.value;
    if (!name) return;
    let values;
    try {
      values = JSON.parse(ui.values.value.trim() || "{}");
    } catch (err) {
      ui.values.setAttribute("aria-invalid", "true");
      ui.valuesError.textContent = `Values are not valid JSON: ${err.message}`;
      ui.valuesError.hidden = false;
      ui.values.focus();
      return;
    }
    ui.values.removeAttribute("aria-invalid");
    ui.valuesError.hidden = true;
    const body = { values };
    const label = ui.label.value.trim();
    if (label) body.label = label;
    ui.submit.disabled = true;
    ui.meta.textContent = `Executing ${name}…`;
    const started = performance.now();
    try {
      const data = await api("POST", `/plugins/${encodeURIComponent(name)}/execute`, body);
      showResult(JSON.stringify(data, null, 2), false);
      ui.meta.textContent = `${name} answered in ${Math.round(performance.now() - started)} ms`;
    } catch (err) {
      showResult(`${err.kind}: ${err.message}`, true);
      ui.meta.textContent = `${name} failed${err.status ? ` (HTTP ${err.status})` : ""}`;
    } finally {
      ui.submit.disabled = false;
      refresh();
    }
  });

  // ---- token ----

  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    apiToken = ui.token.value.trim();
    // Out of the field (and so of the DOM) once read.
    ui.token.value = "";
    ui.token.placeholder = apiToken ? "Token set (kept in this page only)" : "Bearer token";
    setStatus(apiToken ? "Token set for this page." : "No token: calls go without one.", "ok");
    refresh();
  });

  ui.tokenClear.addEventListener("click", () => {
    ui.token.value = "";
    apiToken = "";
    ui.token.placeholder = "Bearer token";
    setStatus("Token cleared.", "ok");
    refresh();
  });

  ui.refresh.addEventListener("click", () => refresh());

  // ---- start ----

  ui.host.textContent = location.host;
  refresh();
  setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
})();
