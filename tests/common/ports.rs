//! Loopback ports for the processes a test starts.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

/// Returns a port that was free a moment ago. Another process can take it
/// before the caller binds it, so callers retry on a bind failure.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding an ephemeral loopback port");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// A loopback port that refuses connections and that no other process can
/// bind while this value lives.
///
/// The port is the local end of a connected TCP socket pair held by the
/// test: no listener exists on it, so a connection attempt gets a reset,
/// and a bind to it fails with "address in use", also with `SO_REUSEADDR`,
/// because the connected socket does not set that option.
pub struct UnusedPort {
    pub port: u16,
    _client: TcpStream,
    _server: TcpStream,
}

impl UnusedPort {
    pub fn new() -> UnusedPort {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding an ephemeral loopback port");
        let client = TcpStream::connect(listener.local_addr().expect("a bound listener has an address"))
            .expect("connecting to a local listener");
        let (server, _) = listener.accept().expect("accepting a local connection");
        let port = client.local_addr().expect("a connected socket has an address").port();
        UnusedPort { port, _client: client, _server: server }
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Frees the port for a process about to bind it, and returns it.
    ///
    /// The server end closes first and the client end only after it has
    /// read the end of the stream, so the port's socket closes passively and
    /// leaves no TIME_WAIT entry on the port.
    pub fn release(self) -> u16 {
        let UnusedPort { port, _client: mut client, _server: server } = self;
        drop(server);
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("setting a read timeout");
        let _ = std::io::Read::read(&mut client, &mut [0u8; 16]);
        drop(client);
        port
    }
}
