//! The route table: which plugin serves which method and path, rebuilt from the manager on
//! every lifecycle event and published without a lock on the request path.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::Method;
use parking_lot::Mutex;
use plugin_host::manifest::{HttpMethod, Route};
use plugin_host::{PluginManager, PluginState};
use serde::Serialize;

/// The `http_services.driver` values this server serves (compared ignoring case).
pub(crate) const DRIVERS: [&str; 2] = ["axum", "beego"];

/// Paths the server keeps for itself: `/` exactly, and these prefixes with everything under
/// them.
pub(crate) const RESERVED_PREFIXES: [&str; 3] = [crate::API_PREFIX, "/metrics", "/assets"];

/// A plugin route being served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct MountedRoute {
    /// The plugin serving it.
    pub(crate) plugin: String,
    /// The HTTP method (`GET`, ...).
    pub(crate) method: String,
    /// The route as `plugin.json` declares it (`/api/plugin/sample/:id`).
    pub(crate) route: String,
    /// The route as matched (`/api/plugin/sample/{id}`).
    pub(crate) pattern: String,
    /// The label the plugin is called with.
    pub(crate) label: String,
}

/// A route a plugin declares that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct RouteRefusal {
    /// The plugin declaring it.
    pub(crate) plugin: String,
    /// The HTTP method.
    pub(crate) method: String,
    /// The route as declared.
    pub(crate) route: String,
    /// Why it is not served, and how to fix that.
    pub(crate) reason: String,
}

/// The routes one active plugin declares.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) plugin: String,
    pub(crate) driver: String,
    pub(crate) routes: Vec<Route>,
}

/// What a request's method and path lead to.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A plugin route, with the path's parameters (still percent-encoded).
    Found {
        route: Arc<MountedRoute>,
        params: Vec<(String, String)>,
    },
    /// The path is served, but not for this method; these methods serve it.
    WrongMethod { allow: Vec<&'static str> },
    /// No plugin serves the path.
    NotFound,
}

/// One published table.
#[derive(Default)]
pub(crate) struct Table {
    routers: HashMap<HttpMethod, matchit::Router<Arc<MountedRoute>>>,
    mounted: Vec<MountedRoute>,
    refusals: Vec<RouteRefusal>,
    /// (method, route with parameter names erased) -> the plugin serving it.
    owners: HashMap<(HttpMethod, String), String>,
}

/// The plugin routes in effect, swapped whole on every rebuild.
#[derive(Default)]
pub(crate) struct RouteTable {
    current: ArcSwap<Table>,
    /// Serialises rebuilds, so the last one published read the manager last.
    rebuilding: Mutex<()>,
}

impl RouteTable {
    /// Rebuilds the table from the plugins active in `manager`.
    pub(crate) fn rebuild(&self, manager: &PluginManager) {
        let _one_at_a_time = self.rebuilding.lock();
        let declared: Vec<Declared> = manager
            .list()
            .into_iter()
            .filter(|status| status.state == PluginState::Active)
            .filter_map(|status| {
                let services = status.active?.manifest.http_services?;
                Some(Declared {
                    plugin: status.name,
                    driver: services.driver,
                    routes: services.routes,
                })
            })
            .collect();
        let previous = self.current.load_full();
        let table = Table::build(&declared, &previous);
        for refusal in &table.refusals {
            if !previous.refusals.contains(refusal) {
                tracing::warn!(
                    plugin = %refusal.plugin,
                    method = %refusal.method,
                    route = %refusal.route,
                    "route not served: {}",
                    refusal.reason
                );
            }
        }
        self.current.store(Arc::new(table));
    }

    /// The routes served now, sorted by route then method.
    pub(crate) fn routes(&self) -> Vec<MountedRoute> {
        self.current.load().mounted.clone()
    }

    /// The declared routes not served now, and why.
    pub(crate) fn refusals(&self) -> Vec<RouteRefusal> {
        self.current.load().refusals.clone()
    }

    /// What `method` and `path` lead to.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Lookup {
        self.current.load().lookup(method, path)
    }
}

impl Table {
    /// The table serving `declared` (sorted by plugin name), given the one in effect before.
    pub(crate) fn build(declared: &[Declared], previous: &Table) -> Table {
        let mut table = Table::default();
        let mut candidates = Vec::new();
        for plugin in declared {
            let driver_ok = DRIVERS
                .iter()
                .any(|d| d.eq_ignore_ascii_case(plugin.driver.trim()));
            for route in &plugin.routes {
                let refuse = |reason: String| RouteRefusal {
                    plugin: plugin.plugin.clone(),
                    method: route.method.to_string(),
                    route: route.route.clone(),
                    reason,
                };
                if !driver_ok {
                    table.refusals.push(refuse(format!(
                        "plugin `{}` declares http_services.driver `{}`, which this server does \
                         not serve; set it to `axum` or `beego` in its plugin.json",
                        plugin.plugin, plugin.driver
                    )));
                    continue;
                }
                let pattern = to_pattern(&route.route);
                if let Some(prefix) = reserved(&pattern) {
                    table.refusals.push(refuse(format!(
                        "`{prefix}` belongs to the server (the page at `/`, its assets under \
                         `/assets`, metrics at `/metrics`, the management API under `{}`); move \
                         the route elsewhere in plugin `{}`'s plugin.json, e.g. under \
                         `/api/plugin/`",
                        crate::API_PREFIX,
                        plugin.plugin
                    )));
                    continue;
                }
                let shape = shape(&pattern);
                let kept =
                    previous.owners.get(&(route.method, shape.clone())) == Some(&plugin.plugin);
                candidates.push((kept, plugin, route, pattern, shape));
            }
        }
        // Routes a plugin served before first, then the rest by plugin name (stable, so a
        // plugin's routes stay in their declared order).
        candidates.sort_by(|a, b| (!a.0, &a.1.plugin).cmp(&(!b.0, &b.1.plugin)));
        let mut patterns: HashMap<(HttpMethod, String), String> = HashMap::new();
        for (_, plugin, route, pattern, shape) in candidates {
            let mounted = MountedRoute {
                plugin: plugin.plugin.clone(),
                method: route.method.to_string(),
                route: route.route.clone(),
                pattern: pattern.clone(),
                label: route.label.clone(),
            };
            let router = table.routers.entry(route.method).or_default();
            match router.insert(pattern.clone(), Arc::new(mounted.clone())) {
                Ok(()) => {
                    patterns.insert((route.method, pattern), plugin.plugin.clone());
                    table
                        .owners
                        .insert((route.method, shape), plugin.plugin.clone());
                    table.mounted.push(mounted);
                }
                Err(err) => {
                    let reason = conflict_reason(&mounted, &err, &patterns, previous);
                    table.refusals.push(RouteRefusal {
                        plugin: mounted.plugin,
                        method: mounted.method,
                        route: mounted.route,
                        reason,
                    });
                }
            }
        }
        table
            .mounted
            .sort_by(|a, b| (&a.pattern, &a.method).cmp(&(&b.pattern, &b.method)));
        table
    }

    fn lookup(&self, method: &Method, path: &str) -> Lookup {
        let wanted = http_method(method);
        let found = wanted
            .and_then(|m| self.at(m, path))
            // A HEAD request falls back on the GET route (hyper sends no body for HEAD).
            .or_else(|| {
                (wanted == Some(HttpMethod::Head)).then(|| self.at(HttpMethod::Get, path))?
            });
        if let Some(found) = found {
            return found;
        }
        let mut allow: Vec<&'static str> = HttpMethod::ALL
            .into_iter()
            .filter(|m| self.at(*m, path).is_some())
            .map(HttpMethod::as_str)
            .collect();
        if allow.is_empty() {
            return Lookup::NotFound;
        }
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        Lookup::WrongMethod { allow }
    }

    fn at(&self, method: HttpMethod, path: &str) -> Option<Lookup> {
        let matched = self.routers.get(&method)?.at(path).ok()?;
        Some(Lookup::Found {
            route: matched.value.clone(),
            params: matched
                .params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }
}

/// Why `mounted` could not be inserted: who holds the route it conflicts with, and how to fix.
fn conflict_reason(
    mounted: &MountedRoute,
    err: &matchit::InsertError,
    patterns: &HashMap<(HttpMethod, String), String>,
    previous: &Table,
) -> String {
    let matchit::InsertError::Conflict { with } = err else {
        return format!(
            "the route cannot be served ({err}); fix it in plugin `{}`'s plugin.json",
            mounted.plugin
        );
    };
    let method = HttpMethod::ALL
        .into_iter()
        .find(|m| m.as_str() == mounted.method);
    let owner = method.and_then(|m| patterns.get(&(m, with.clone())));
    match owner {
        Some(owner) if *owner != mounted.plugin => {
            let why =
                if method.is_some_and(|m| previous.owners.get(&(m, shape(with))) == Some(owner)) {
                    "it served the route first"
                } else {
                    "its name sorts first"
                };
            format!(
                "`{} {}` conflicts with `{} {with}` of plugin `{owner}`, which keeps it ({why}); \
                 change the route in plugin `{}`'s plugin.json, or unload or change plugin \
                 `{owner}`",
                mounted.method, mounted.pattern, mounted.method, mounted.plugin
            )
        }
        _ => format!(
            "`{} {}` conflicts with `{} {with}`, declared by the same plugin; patterns that \
             differ only in parameter names match the same paths: change one of them in plugin \
             `{}`'s plugin.json",
            mounted.method, mounted.pattern, mounted.method, mounted.plugin
        ),
    }
}

/// The route in matchit's syntax: beego's `:id` becomes `{id}`; `{id}` stays.
pub(crate) fn to_pattern(route: &str) -> String {
    route
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The pattern with parameter names erased: two patterns with the same shape match the same
/// paths.
fn shape(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The reserved path `path` is, or is under: `/` itself, or one of [`RESERVED_PREFIXES`].
pub(crate) fn reserved(path: &str) -> Option<&'static str> {
    if path == "/" {
        return Some("/");
    }
    RESERVED_PREFIXES.into_iter().find(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

fn http_method(method: &Method) -> Option<HttpMethod> {
    HttpMethod::ALL
        .into_iter()
        .find(|m| m.as_str() == method.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: HttpMethod, route: &str, label: &str) -> Route {
        Route {
            route: route.to_owned(),
            method,
            label: label.to_owned(),
        }
    }

    fn declared(plugin: &str, driver: &str, routes: Vec<Route>) -> Declared {
        Declared {
            plugin: plugin.to_owned(),
            driver: driver.to_owned(),
            routes,
        }
    }

    fn serving(table: &Table, method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        match table.lookup(&Method::from_bytes(method.as_bytes()).unwrap(), path) {
            Lookup::Found { route, params } => Some((route.plugin.clone(), params)),
            _ => None,
        }
    }

    #[test]
    fn beego_and_axum_params_become_matchit_params() {
        assert_eq!(
            to_pattern("/api/plugin/sample/:id"),
            "/api/plugin/sample/{id}"
        );
        assert_eq!(to_pattern("/a/{id}/b/:x"), "/a/{id}/b/{x}");
        assert_eq!(shape("/a/{id}/b/{x}"), "/a/{}/b/{}");
        let table = Table::build(
            &[declared(
                "p",
                "beego",
                vec![route(HttpMethod::Get, "/s/:id/t/{n}", "l")],
            )],
            &Table::default(),
        );
        let (plugin, params) = serving(&table, "GET", "/s/7/t/x%20y").unwrap();
        assert_eq!(plugin, "p");
        assert_eq!(
            params,
            vec![
                ("id".to_owned(), "7".to_owned()),
                ("n".to_owned(), "x%20y".to_owned())
            ]
        );
    }

    #[test]
    fn the_first_name_wins_a_new_route_and_the_owner_keeps_it_later() {
        let a = declared("a", "axum", vec![route(HttpMethod::Get, "/x/:id", "a.get")]);
        let b = declared(
            "b",
            "axum",
            vec![route(HttpMethod::Get, "/x/{name}", "b.get")],
        );
        let table = Table::build(&[a.clone(), b.clone()], &Table::default());
        assert_eq!(serving(&table, "GET", "/x/1").unwrap().0, "a");
        assert_eq!(table.refusals.len(), 1);
        let refusal = &table.refusals[0];
        assert_eq!(
            (refusal.plugin.as_str(), refusal.method.as_str()),
            ("b", "GET")
        );
        assert!(refusal.reason.contains("plugin `a`"), "{}", refusal.reason);
        assert!(refusal.reason.contains("sorts first"), "{}", refusal.reason);

        // `b` alone takes it; then `a` comes back, and `b`, the owner, keeps it.
        let only_b = Table::build(std::slice::from_ref(&b), &table);
        assert_eq!(serving(&only_b, "GET", "/x/1").unwrap().0, "b");
        let both = Table::build(&[a, b], &only_b);
        assert_eq!(serving(&both, "GET", "/x/1").unwrap().0, "b");
        assert_eq!(both.refusals[0].plugin, "a");
        assert!(both.refusals[0].reason.contains("served the route first"));
    }

    #[test]
    fn reserved_paths_and_unknown_drivers_are_refused() {
        let routes = vec![
            route(HttpMethod::Get, "/", "root"),
            route(HttpMethod::Get, "/api/v1/plugins", "api"),
            route(HttpMethod::Post, "/api/v1", "api"),
            route(HttpMethod::Get, "/metrics", "metrics"),
            route(HttpMethod::Get, "/assets/:file", "assets"),
            route(HttpMethod::Get, "/api/v10", "fine"),
            route(HttpMethod::Get, "/metricsx", "fine"),
        ];
        let table = Table::build(
            &[
                declared("p", "Axum", routes),
                declared("q", "gin", vec![route(HttpMethod::Get, "/q", "q")]),
            ],
            &Table::default(),
        );
        let refused: Vec<_> = table.refusals.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(
            refused,
            [
                "/",
                "/api/v1/plugins",
                "/api/v1",
                "/metrics",
                "/assets/:file",
                "/q"
            ]
        );
        assert!(table.refusals[1]
            .reason
            .contains("`/api/v1` belongs to the server"));
        assert!(table.refusals[5].reason.contains("driver `gin`"));
        let mounted: Vec<_> = table.mounted.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(mounted, ["/api/v10", "/metricsx"]);
    }

    #[test]
    fn a_path_served_for_other_methods_lists_them() {
        let table = Table::build(
            &[declared(
                "p",
                "axum",
                vec![
                    route(HttpMethod::Get, "/r/:id", "get"),
                    route(HttpMethod::Delete, "/r/:id", "delete"),
                ],
            )],
            &Table::default(),
        );
        match table.lookup(&Method::POST, "/r/1") {
            Lookup::WrongMethod { allow } => assert_eq!(allow, ["GET", "DELETE", "HEAD"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(table.lookup(&Method::GET, "/r"), Lookup::NotFound));
        assert!(matches!(
            table.lookup(&Method::GET, "/r/1/2"),
            Lookup::NotFound
        ));
        assert_eq!(serving(&table, "HEAD", "/r/1").unwrap().0, "p");
    }
}
