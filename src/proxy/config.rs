//! Configuration of the downstream listener and of the upstreams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use crate::config::reader::{found, MapReader};
use crate::config::resolve_path;
use crate::normalize::forwarded::TrustedProxies;
use crate::normalize::path::PathOptions;

/// The public listener: where clients connect and what they may send.
#[derive(Debug)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub address: SocketAddr,
    /// TLS settings; plain HTTP (with h2c) when absent.
    pub tls: Option<TlsConfig>,
    /// Accept HTTP/2 (h2c prior knowledge on plain listeners, ALPN `h2`
    /// with TLS). Default true.
    pub http2: bool,
    pub timeouts: ServerTimeouts,
    pub limits: ServerLimits,
    /// Peers whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: TrustedProxies,
    pub path: PathOptions,
    /// IPv6 prefix length client addresses are grouped by for rate-limit
    /// keys. Default 64.
    pub ipv6_prefix: u8,
    /// Write one access log line per request. Default true.
    pub access_log: bool,
    /// Refuse requests with a payment card number in the path or query
    /// (400 `pan_in_url`). Default true.
    pub reject_pan_in_url: bool,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Lowest TLS version accepted: 1.2 (default) or 1.3.
    pub min_version_13: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// Time a client has to send the request line and headers. Default 10s.
    pub request_header: Duration,
    /// A connection with no request in flight and no bytes moving is
    /// closed after this. Default 60s.
    pub idle: Duration,
    /// On SIGTERM or SIGINT, in-flight requests get this long to finish
    /// before connections are closed. Default 30s.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Bytes of request line plus headers. Default 16 KiB; at least 8 KiB
    /// because of the HTTP/1 parser's smallest buffer.
    pub max_header_bytes: usize,
    /// Number of request header fields. Default 100.
    pub max_headers: usize,
    /// Request body bytes, for routes that set no limit of their own.
    /// Default 1 MiB.
    pub max_body_bytes: u64,
    /// Client connections open at once. Default 10 000.
    pub max_connections: usize,
}

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

pub fn read_server(top: &MapReader, base_dir: &Path) -> Option<ServerConfig> {
    let default = || ServerConfig {
        address: DEFAULT_ADDRESS.parse().unwrap(),
        tls: None,
        http2: true,
        timeouts: ServerTimeouts {
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        },
        limits: ServerLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1 << 20,
            max_connections: 10_000,
        },
        trusted_proxies: TrustedProxies::default(),
        path: PathOptions::default(),
        ipv6_prefix: 64,
        access_log: true,
        reject_pan_in_url: true,
    };
    let Some(server) = top.map("server") else {
        return if top.get("server").is_some() {
            None
        } else {
            Some(default())
        };
    };
    let mut config = default();
    let mut ok = true;

    if let Some(address) = read_address(&server, "address") {
        config.address = address;
    } else if server.get("address").is_some() {
        ok = false;
    }
    if server.get("tls").is_some() {
        config.tls = read_tls(&server, base_dir);
        ok &= config.tls.is_some();
    }
    config.http2 = server.bool("http2").unwrap_or(true);
    if let Some(timeouts) = server.map("timeouts") {
        let t = &mut config.timeouts;
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(3600));
        t.request_header = timeouts
            .duration("request_header", min, max)
            .unwrap_or(t.request_header);
        t.idle = timeouts.duration("idle", min, max).unwrap_or(t.idle);
        t.shutdown_grace = timeouts
            .duration("shutdown_grace", Duration::ZERO, max)
            .unwrap_or(t.shutdown_grace);
        timeouts.finish();
    }
    if let Some(limits) = server.map("limits") {
        let l = &mut config.limits;
        l.max_header_bytes = limits
            .byte_size("max_header_bytes", 8 * 1024, 1 << 20)
            .map_or(l.max_header_bytes, |v| v as usize);
        l.max_headers = limits
            .integer("max_headers", 1, 10_000)
            .map_or(l.max_headers, |v| v as usize);
        l.max_body_bytes = limits
            .byte_size("max_body_bytes", 0, 1 << 40)
            .unwrap_or(l.max_body_bytes);
        l.max_connections = limits
            .integer("max_connections", 1, 1_000_000)
            .map_or(l.max_connections, |v| v as usize);
        limits.finish();
    }
    if let Some(items) = server.list("trusted_proxies") {
        let mut networks = Vec::new();
        for (path, node) in items {
            let text = crate::config::reader::scalar_text(node).unwrap_or_default();
            match text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(Into::into))
            {
                Ok(network) => networks.push(network),
                Err(_) => {
                    let message = format!(
                        "expected an IP address or CIDR network such as 10.0.0.0/8, found {}",
                        found(node)
                    );
                    server.problems.at(node, &path, message);
                }
            }
        }
        config.trusted_proxies = TrustedProxies(networks);
    }
    if let Some(path) = server.map("path") {
        config.path.allow_encoded_slash = path.bool("allow_encoded_slash").unwrap_or(false);
        config.path.allow_encoded_backslash = path.bool("allow_encoded_backslash").unwrap_or(false);
        path.finish();
    }
    config.ipv6_prefix = server
        .integer("ipv6_prefix", 1, 128)
        .map_or(64, |v| v as u8);
    config.access_log = server.bool("access_log").unwrap_or(true);
    config.reject_pan_in_url = server.bool("reject_pan_in_url").unwrap_or(true);
    server.finish();
    ok.then_some(config)
}

pub fn read_address(map: &MapReader, key: &'static str) -> Option<SocketAddr> {
    let node = map.get(key)?;
    let parsed =
        crate::config::reader::scalar_text(node).and_then(|text| text.parse::<SocketAddr>().ok());
    if parsed.is_none() {
        let message = format!(
            "expected an IP address and port such as 127.0.0.1:8080, found {}",
            found(node)
        );
        map.problems.at(node, &map.child_path(key), message);
    }
    parsed
}

fn read_tls(server: &MapReader, base_dir: &Path) -> Option<TlsConfig> {
    let tls = server.map("tls")?;
    let certificate = tls.required_string("certificate", "the path of a PEM certificate chain");
    let key = tls.required_string("key", "the path of a PEM private key");
    let min_version = tls.choice("min_version", &["1.2", "1.3"]);
    let failed_version = min_version.is_none() && tls.get("min_version").is_some();
    let mut result = None;
    if let (Some(certificate), Some(key)) = (certificate, key) {
        let certificate = resolve_path(base_dir, &certificate);
        let key = resolve_path(base_dir, &key);
        let mut ok = !failed_version;
        for (field, path) in [("certificate", &certificate), ("key", &key)] {
            if !path.is_file() {
                let message = format!("file not found: {}", path.display());
                tls.problems
                    .at(tls.get(field).unwrap(), &tls.child_path(field), message);
                ok = false;
            }
        }
        if ok {
            result = Some(TlsConfig {
                certificate,
                key,
                min_version_13: min_version == Some("1.3"),
            });
        }
    }
    tls.finish();
    result
}

/// One protected API the gateway forwards to.
#[derive(Debug)]
pub struct UpstreamConfig {
    pub name: String,
    /// Scheme, host and port (`http` or `https`); a path prefix is
    /// prepended to every forwarded path.
    pub url: Uri,
    pub connect_timeout: Duration,
    /// Time from sending the request to receiving the response headers.
    pub response_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream host.
    pub max_idle_connections: usize,
    /// Send the client's `Host` (true, the default) or the upstream's.
    pub preserve_host: bool,
}

impl UpstreamConfig {
    /// Path prefix of the upstream URL without its trailing slash.
    pub fn path_prefix(&self) -> &str {
        self.url.path().trim_end_matches('/')
    }
}

pub fn read_upstreams(top: &MapReader) -> Option<HashMap<String, Arc<UpstreamConfig>>> {
    let Some(section) = top.map("upstreams") else {
        if top.get("upstreams").is_none() {
            top.missing("upstreams", "a mapping of upstream names to { url: ... }");
        }
        return None;
    };
    let mut upstreams = HashMap::new();
    let mut ok = true;
    for (name, _, node) in section.named_entries() {
        let path = section.child_path(&name);
        let Some(map) = MapReader::open(node, &path, section.problems) else {
            ok = false;
            continue;
        };
        match read_upstream(&map, &name) {
            Some(upstream) => {
                upstreams.insert(name, Arc::new(upstream));
            }
            None => ok = false,
        }
        map.finish();
    }
    if upstreams.is_empty() && ok {
        section.problems.at(
            section.node,
            &section.path,
            "expected at least one upstream",
        );
        ok = false;
    }
    ok.then_some(upstreams)
}

fn read_upstream(map: &MapReader, name: &str) -> Option<UpstreamConfig> {
    let url = map.required_string(
        "url",
        "an http:// or https:// URL such as http://127.0.0.1:3000",
    );
    let url = url.and_then(|text| {
        let parsed = text.parse::<Uri>().ok().filter(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && uri.query().is_none()
        });
        if parsed.is_none() {
            let node = map.get("url").unwrap();
            let message = format!(
                "expected an http:// or https:// URL without a query, found {}",
                found(node)
            );
            map.problems.at(node, &map.child_path("url"), message);
        }
        parsed
    });
    let (min, max) = (Duration::from_millis(1), Duration::from_secs(3600));
    let mut upstream = UpstreamConfig {
        name: name.to_string(),
        url: url?,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(30),
        pool_idle_timeout: Duration::from_secs(90),
        max_idle_connections: 256,
        preserve_host: true,
    };
    if let Some(timeouts) = map.map("timeouts") {
        upstream.connect_timeout = timeouts
            .duration("connect", min, max)
            .unwrap_or(upstream.connect_timeout);
        upstream.response_timeout = timeouts
            .duration("response", min, max)
            .unwrap_or(upstream.response_timeout);
        upstream.pool_idle_timeout = timeouts
            .duration("pool_idle", min, max)
            .unwrap_or(upstream.pool_idle_timeout);
        timeouts.finish();
    }
    upstream.max_idle_connections = map
        .integer("max_idle_connections", 0, 100_000)
        .map_or(upstream.max_idle_connections, |v| v as usize);
    upstream.preserve_host = map
        .choice("host_header", &["preserve", "upstream"])
        .is_none_or(|v| v == "preserve");
    Some(upstream)
}
