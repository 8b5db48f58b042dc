//! HTTPS: the self-signed certificate is made once and kept, a client that trusts it gets
//! the admin pages over TLS, login (which needs the peer address) works, and the served
//! certificate is the one whose fingerprint the console shows.

mod common;

use gateway::web::session::Auth;
use gateway::web::tls;
use reqwest::header;
use std::sync::Arc;

#[tokio::test]
async fn pages_and_login_over_https_with_the_stored_certificate() {
    let dir = std::env::temp_dir().join(format!("gh-webtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let auth = Arc::new(Auth::open(&dir));
    auth.set_password("tls-test-pw").unwrap();
    let (app, _) = common::app(&dir, auth, common::idle_update(&dir));
    let names = vec!["gatehouse".to_string(), "127.0.0.1".to_string()];
    let (id, made) = tls::load_or_create(&dir, &names).unwrap();
    assert!(made);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let served = tls::load_or_create(&dir, &names).unwrap().0;
    tokio::spawn(async move { tls::serve(listener, app, &served).await });

    // A client that trusts exactly this certificate (as an owner who accepted it).
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&id.cert_der).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .build()
        .unwrap();
    let r = http.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    let peer = info.peer_certificate().unwrap();
    let on_console =
        std::fs::read_to_string(dir.join(tls::DIR).join(tls::FINGERPRINT_FILE)).unwrap();
    assert_eq!(
        on_console.trim(),
        format!("SHA256 {}", tls::fingerprint(peer))
    );

    let (cookie, _csrf) = common::log_in(&http, &base, "tls-test-pw").await;
    let page = http
        .get(format!("{base}/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // A client that does not trust it gets no page.
    let strict = reqwest::Client::builder().build().unwrap();
    assert!(strict.get(format!("{base}/login")).send().await.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
