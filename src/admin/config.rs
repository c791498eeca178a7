//! Configuration of the admin listener.

use std::net::SocketAddr;

use crate::config::reader::MapReader;

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The address `/healthz`, `/readyz` and `/metrics` are served on. Default
    /// `127.0.0.1:9090`: keep it off public interfaces.
    pub address: Option<SocketAddr>,
}

pub fn read(top: &MapReader) -> Option<AdminConfig> {
    let default_address = Some("127.0.0.1:9090".parse().unwrap());
    let Some(admin) = top.map("admin") else {
        let present = top.get("admin").is_some();
        return (!present).then_some(AdminConfig {
            address: default_address,
        });
    };
    let enabled = admin.bool("enabled").unwrap_or(true);
    let address = crate::proxy::config::read_address(&admin, "address");
    let failed = admin.get("address").is_some() && address.is_none();
    admin.finish();
    if failed {
        return None;
    }
    Some(AdminConfig {
        address: if enabled {
            address.or(default_address)
        } else {
            None
        },
    })
}
