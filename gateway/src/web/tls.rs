//! HTTPS for the admin pages, with a self-signed certificate made on first start.
//!
//! No CA will sign a certificate for 192.168.1.1, so the router makes its own and keeps it on
//! the data partition (it must not change at every boot, or the browser's exception would not
//! stick). The owner checks it by its SHA-256 fingerprint, which the serial console's status
//! screen and gatewayd's log show, against what the browser shows.
//!
//! TLS is served beside plain HTTP with the same router: rustls (via tokio-rustls) for the
//! handshake, hyper for HTTP on top. Each handshake runs in its own task with a time limit,
//! so a client that stalls it holds up nobody else.

use crate::atomic_file;
use axum::extract::ConnectInfo;
use axum::Router;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// Where the certificate lives, under the data directory.
pub const DIR: &str = "ui";
const CERT_DER: &str = "https-cert.der";
const CERT_PEM: &str = "https-cert.pem";
const KEY_DER: &str = "https-key.der";
/// One line, "SHA256 AB:CD:...", for the serial console.
pub const FINGERPRINT_FILE: &str = "https-fingerprint";
/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Identity {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    /// "AB:CD:..." (SHA-256 of the certificate, as browsers show it).
    pub fingerprint: String,
}

/// Colon-separated upper-case hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn paths(data_dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let d = data_dir.join(DIR);
    (
        d.join(CERT_DER),
        d.join(KEY_DER),
        d.join(CERT_PEM),
        d.join(FINGERPRINT_FILE),
    )
}

/// The stored certificate, or a new one for `names` (host names and addresses) when there is
/// none yet or the stored one does not load. Returns whether it was made now.
pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<(Identity, bool), String> {
    let (cert_p, key_p, pem_p, fp_p) = paths(data_dir);
    if let (Ok(cert_der), Ok(key_der)) = (std::fs::read(&cert_p), std::fs::read(&key_p)) {
        if server_config(&cert_der, &key_der).is_ok() {
            let fingerprint = fingerprint(&cert_der);
            return Ok((
                Identity {
                    cert_der,
                    key_der,
                    fingerprint,
                },
                false,
            ));
        }
        eprintln!("web: the stored HTTPS certificate does not load; making a new one");
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    let cert_der = made.cert.der().to_vec();
    let key_der = made.signing_key.serialize_der();
    let fp = fingerprint(&cert_der);
    let dir = data_dir.join(DIR);
    let io = |e: std::io::Error| format!("cannot store the certificate in {}: {e}", dir.display());
    std::fs::create_dir_all(&dir).map_err(io)?;
    // The key first, and only readable by root; the certificate (what marks the pair as
    // complete on the next start) last.
    atomic_file::write(&dir, &key_p, &key_der).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_p, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    atomic_file::write(&dir, &pem_p, made.cert.pem().as_bytes()).map_err(io)?;
    atomic_file::write(&dir, &fp_p, format!("SHA256 {fp}\n").as_bytes()).map_err(io)?;
    atomic_file::write(&dir, &cert_p, &cert_der).map_err(io)?;
    Ok((
        Identity {
            cert_der,
            key_der,
            fingerprint: fp,
        },
        true,
    ))
}

fn server_config(cert_der: &[u8], key_der: &[u8]) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        )
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `app` over TLS on `listener` forever. Handlers see the peer's address as with
/// plain HTTP (`ConnectInfo<SocketAddr>`, the login throttle's key).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    id: &Identity,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
        server_config(&id.cert_der, &id.key_der).map_err(anyhow::Error::msg)?,
    ));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                eprintln!("web: https accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                // Browsers drop the first connection when they do not trust the certificate:
                // routine, not worth a log line each.
                _ => return,
            };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let mut app = app.clone();
                    async move {
                        use tower_service::Service;
                        app.call(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded_with_the_same_fingerprint() {
        let dir = std::env::temp_dir().join(format!("gh-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = vec!["gatehouse.lan".to_string(), "192.168.1.1".to_string()];
        let (a, made) = load_or_create(&dir, &names).unwrap();
        assert!(made);
        let (b, made) = load_or_create(&dir, &names).unwrap();
        assert!(!made);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let line = std::fs::read_to_string(dir.join(DIR).join(FINGERPRINT_FILE)).unwrap();
        assert_eq!(line, format!("SHA256 {}\n", a.fingerprint));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(DIR).join(KEY_DER))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        // A damaged pair is replaced rather than served.
        std::fs::write(dir.join(DIR).join(KEY_DER), b"junk").unwrap();
        let (c, made) = load_or_create(&dir, &names).unwrap();
        assert!(made);
        assert_ne!(c.fingerprint, a.fingerprint);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprint_format() {
        assert!(fingerprint(b"x").starts_with("2D:71:16:42"));
    }
}
