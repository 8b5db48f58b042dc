//! The live traffic WebSocket against the real axum router on loopback: updates arrive, a
//! subscriber that stops reading is disconnected without holding up the publisher or the
//! other subscribers.

mod common;

use futures_util::StreamExt;
use gateway::traffic::{LiveTick, Traffic};
use gateway::web::session::Auth;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use traffic_history::Counts;

fn tick(t_ms: u64, flows: usize) -> Arc<LiveTick> {
    let c = Counts {
        up_bytes: 1500,
        down_bytes: 60,
        up_packets: 1,
        down_packets: 1,
    };
    Arc::new(LiveTick {
        t_ms,
        flows: (0..flows)
            .map(|i| {
                let ip = IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i as u32));
                ([2, 0, 0, 0, (i >> 8) as u8, i as u8], ip, c)
            })
            .collect(),
    })
}

struct Server {
    addr: std::net::SocketAddr,
    cookie: String,
}

impl Server {
    /// A logged-in WebSocket request for `path`.
    fn ws(&self, path: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        let mut r = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        r.headers_mut()
            .insert("cookie", self.cookie.parse().unwrap());
        r
    }
}

async fn start() -> (Server, Arc<Traffic>, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let auth = Arc::new(Auth::open(&dir.0));
    let (token, _) = auth.start_session(Instant::now());
    let (app, traffic) = common::app(&dir.0, auth, common::idle_update(&dir.0));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let server = Server {
        addr,
        cookie: format!("gh_session={token}"),
    };
    (server, traffic, dir)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "gh-live-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn wait_subscribers(t: &Traffic, n: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while t.live.receiver_count() < n {
        assert!(Instant::now() < until, "subscribers did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_arrive_filtered_by_client() {
    let (srv, t, _d) = start().await;
    let anonymous = format!("ws://{}/api/traffic/live", srv.addr);
    assert!(
        tokio_tungstenite::connect_async(anonymous).await.is_err(),
        "the live stream answered without a session"
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(srv.ws("/api/traffic/live?client=02:00:00:00:00:01"))
            .await
            .unwrap();
    wait_subscribers(&t, 1).await;
    t.live.send(tick(1_000, 3)).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("no live update")
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(v["t_ms"], 1_000);
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{v}");
    assert_eq!(flows[0]["client"], "02:00:00:00:00:01");
    assert_eq!(flows[0]["remote"], "198.51.100.1");
    assert_eq!(flows[0]["up_bytes"], 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_dropped_and_blocks_nobody() {
    let (srv, t, _d) = start().await;
    // Generous, so a busy machine does not drop the reading subscriber too.
    t.live_send_timeout_ms.store(2_000, Relaxed);
    // Connected, then never read again.
    let (_stalled, _) = tokio_tungstenite::connect_async(srv.ws("/api/traffic/live"))
        .await
        .unwrap();
    let (mut good, _) = tokio_tungstenite::connect_async(srv.ws("/api/traffic/live"))
        .await
        .unwrap();
    wait_subscribers(&t, 2).await;
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        let mut last = 0u64;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), good.next()).await
        {
            let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
            last = v["t_ms"].as_u64().unwrap();
            n += 1;
        }
        (n, last)
    });
    // ~150 KB per update: the stalled socket's buffers fill within a few dozen.
    let ticks = 300u64;
    let mut slowest = Duration::ZERO;
    for i in 1..=ticks {
        let big = tick(i, 1000);
        let t0 = Instant::now();
        let _ = t.live.send(big);
        slowest = slowest.max(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        slowest < Duration::from_millis(50),
        "publishing blocked for {slowest:?}"
    );
    let (n, last) = reader.await.unwrap();
    assert_eq!(
        last, ticks,
        "the reading subscriber missed the newest update"
    );
    assert!(
        n >= ticks / 2,
        "the reading subscriber got only {n} updates"
    );
    let until = Instant::now() + Duration::from_secs(10);
    while t.counters.live_slow_dropped.load(Relaxed) == 0 {
        assert!(
            Instant::now() < until,
            "the stalled subscriber was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(t.counters.live_slow_dropped.load(Relaxed), 1);
}
