//! Routing: matches the method and canonical path of a request to a
//! configured route. A request that matches no route is never forwarded
//! (default deny).

pub mod config;

use std::sync::Arc;

use http::Method;

use crate::route::config::RouteConfig;

/// The reason no route takes a request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path matches, the method does not; carries the `Allow` value.
    MethodNotAllowed {
        allow: String,
    },
}

/// Routes grouped by path pattern, each pattern with its methods.
pub struct Router {
    paths: matchit::Router<usize>,
    /// Per pattern: (method, route) pairs and the precomputed `Allow` value.
    entries: Vec<PathEntry>,
}

struct PathEntry {
    methods: Vec<(Method, Arc<RouteConfig>)>,
    allow: String,
}

/// A matched route and its path parameters.
pub struct Matched {
    pub route: Arc<RouteConfig>,
    pub params: Vec<(String, String)>,
}

impl Router {
    /// Builds the router. Configuration validation has already rejected
    /// conflicting patterns, so insertion cannot fail here.
    pub fn new(routes: Vec<Arc<RouteConfig>>) -> Self {
        let mut paths = matchit::Router::new();
        let mut entries: Vec<PathEntry> = Vec::new();
        let mut index_of: std::collections::HashMap<String, usize> = Default::default();
        for route in routes {
            let index = *index_of.entry(route.path.clone()).or_insert_with(|| {
                entries.push(PathEntry {
                    methods: Vec::new(),
                    allow: String::new(),
                });
                paths
                    .insert(route.path.clone(), entries.len() - 1)
                    .expect("patterns were validated");
                entries.len() - 1
            });
            for method in &route.methods {
                entries[index].methods.push((method.clone(), route.clone()));
            }
        }
        for entry in &mut entries {
            let mut allow: Vec<&str> = entry.methods.iter().map(|(m, _)| m.as_str()).collect();
            if allow.contains(&"GET") && !allow.contains(&"HEAD") {
                allow.push("HEAD");
            }
            entry.allow = allow.join(", ");
        }
        Router { paths, entries }
    }

    /// Finds the route for a method and canonical path. `HEAD` is served by
    /// a `GET` route unless a `HEAD` route exists.
    pub fn find(&self, method: &Method, path: &str) -> Result<Matched, RouteError> {
        let found = self.paths.at(path).map_err(|_| RouteError::NotFound)?;
        let entry = &self.entries[*found.value];
        let route = entry
            .methods
            .iter()
            .find(|(m, _)| m == method)
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| entry.methods.iter().find(|(m, _)| m == Method::GET))
                    .flatten()
            })
            .map(|(_, route)| route.clone())
            .ok_or_else(|| RouteError::MethodNotAllowed {
                allow: entry.allow.clone(),
            })?;
        let params = found
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Matched { route, params })
    }
}
