//! DNS over TLS to upstream resolvers (RFC 7858), on rustls with the ring
//! provider: the certificate must chain to a web PKI root (or to a CA from
//! `tls_ca_file`) and carry the configured name. Connections are kept for
//! reuse (a handshake per query would dominate the cost); a reused connection
//! that turns out dead is replaced once, transparently.

use super::upstream::exchange_framed;
use super::Counters;
use hickory_proto::op::Query;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 4;

type Conn = TlsStream<TcpStream>;

pub struct TlsClient {
    connector: TlsConnector,
    idle: Mutex<HashMap<(SocketAddr, String), Vec<Conn>>>,
}

/// Web PKI roots plus the PEM certificates in `extra_ca`, if given.
pub fn root_store(extra_ca: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("{}: no certificate found", path.display());
        }
    }
    Ok(roots)
}

impl TlsClient {
    pub fn new(extra_ca: Option<&Path>) -> anyhow::Result<TlsClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(root_store(extra_ca)?)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"dot".to_vec()];
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            idle: Mutex::new(HashMap::new()),
        })
    }

    fn take_idle(&self, addr: SocketAddr, name: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get_mut(&(addr, name.to_string()))?.pop()
    }

    fn put_idle(&self, addr: SocketAddr, name: &str, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = idle.entry((addr, name.to_string())).or_default();
        if v.len() < MAX_IDLE {
            v.push(conn);
        }
    }

    async fn connect(&self, addr: SocketAddr, name: &str) -> io::Result<Conn> {
        let server = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        self.connector.connect(server, tcp).await
    }

    /// One query over TLS; the caller bounds the time.
    pub async fn exchange(
        &self,
        addr: SocketAddr,
        name: &str,
        query: &[u8],
        question: &Query,
        counters: &Counters,
    ) -> io::Result<Vec<u8>> {
        if let Some(mut conn) = self.take_idle(addr, name) {
            // The server may have closed an idle connection: then start afresh.
            if let Ok(reply) = exchange_framed(&mut conn, query, question, counters).await {
                self.put_idle(addr, name, conn);
                return Ok(reply);
            }
        }
        let mut conn = self.connect(addr, name).await?;
        let reply = exchange_framed(&mut conn, query, question, counters).await?;
        self.put_idle(addr, name, conn);
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_load_and_bad_ca_file_is_an_error() {
        let n = root_store(None).unwrap().len();
        assert!(n > 50, "web PKI roots: {n}");
        let dir = std::env::temp_dir().join(format!("gh-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(root_store(Some(&empty)).is_err());
        assert!(root_store(Some(&dir.join("absent.pem"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(TlsClient::new(None).is_ok());
    }
}
