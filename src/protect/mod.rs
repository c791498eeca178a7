//! Response protection: removes server fingerprints and hop-by-hop headers
//! from upstream responses and adds the configured security headers to
//! every response, the gateway's own errors included.

pub mod config;

use http::header::{self, HeaderValue};
use http::HeaderMap;

use crate::protect::config::ResponseHeadersConfig;

/// Applies the response header policy.
pub fn apply(config: &ResponseHeadersConfig, headers: &mut HeaderMap, tls: bool, sensitive: bool) {
    for name in &config.remove {
        headers.remove(name);
    }
    if config.nosniff {
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    if tls {
        if let Some(hsts) = &config.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    if sensitive {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    for (name, value) in &config.add {
        headers.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_removed_and_headers_added() {
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("Express"));
        headers.insert("x-powered-by", HeaderValue::from_static("Express"));
        headers.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=60"),
        );
        apply(&ResponseHeadersConfig::default(), &mut headers, true, true);
        assert!(headers.get("server").is_none());
        assert!(headers.get("x-powered-by").is_none());
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["strict-transport-security"], "max-age=31536000");
        assert_eq!(headers["cache-control"], "no-store");
    }

    #[test]
    fn hsts_only_over_tls() {
        let mut headers = HeaderMap::new();
        apply(
            &ResponseHeadersConfig::default(),
            &mut headers,
            false,
            false,
        );
        assert!(headers.get("strict-transport-security").is_none());
        assert!(headers.get("cache-control").is_none());
    }
}
