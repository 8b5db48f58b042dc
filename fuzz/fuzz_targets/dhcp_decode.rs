//! DHCP server input: `codec::decode` on any datagram, then the server's pure
//! decision logic (`server_logic::handle`) on whatever decodes, against a
//! lease store that already holds a few leases, an offer and a quarantined
//! address. An OFFER that waits for a ping check gets its `probe_done`. When
//! the fuzzed message earns an OFFER, the client's follow-up REQUEST and
//! RELEASE are played too (through `codec::encode`/`decode`).
//!
//! Properties: nothing panics; every reply encodes and decodes again; a client
//! that takes our offer gets an ACK, and may then release that lease.

#![no_main]

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::Decodable;
use gateway::dhcp::codec;
use gateway::dhcp::lease_store::{ClientKey, Lease, LeaseStore};
use gateway::dhcp::server_logic::{self, Kind, Outcome, Settings, StaticEntry};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::OnceLock;

const NOW: u64 = 1_000_000;
const MAX_LEASES: usize = 8;

fn settings() -> Settings {
    Settings {
        // A small pool, so exhaustion and reuse of expired leases are reachable.
        range_start: Ipv4Addr::new(192, 168, 1, 100),
        range_end: Ipv4Addr::new(192, 168, 1, 110),
        statics: vec![StaticEntry {
            mac: [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc],
            ip: Ipv4Addr::new(192, 168, 1, 50),
            hostname: Some("printer".into()),
        }],
        // The rest as in a default configuration (192.168.1.1/24, ping check on).
        ..Settings::default()
    }
}

/// The lease file lives in a per-process directory under $GATEHOUSE_FUZZ_TMP
/// (scripts/fuzz-smoke sets it and removes it afterwards), else on tmpfs when
/// there is one: `LeaseStore::open` writes (and fsyncs) it once per run.
/// `handle` never writes, so every run reopens the same empty store. The
/// directory is removed when libFuzzer exits normally.
fn lease_path() -> &'static PathBuf {
    extern "C" fn remove_dir() {
        if let Some(file) = PATH.get() {
            let _ = std::fs::remove_dir_all(file.parent().unwrap());
        }
    }
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let base = match std::env::var_os("GATEHOUSE_FUZZ_TMP") {
            Some(dir) => PathBuf::from(dir),
            None if std::path::Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        let dir = base.join(format!("gatehouse-fuzz-dhcp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // SAFETY: registers a plain function; it runs once, at exit.
        unsafe { libc::atexit(remove_dir) };
        dir.join("leases.json")
    })
}

fn store() -> LeaseStore {
    let mut store = LeaseStore::open(lease_path(), MAX_LEASES).expect("opening the lease store");
    let other = |last: u8| ClientKey {
        mac: [0x02, 0, 0, 0, 0, last],
        id: None,
    };
    let lease = |last: u8, expires: u64| Lease {
        mac: other(last).mac,
        ip: Ipv4Addr::new(192, 168, 1, last),
        hostname: Some(format!("host{last}")),
        expires,
        client_id: None,
    };
    // Active, expired, and active with a client id.
    store.bind(lease(100, NOW + 600), NOW).unwrap();
    store.bind(lease(101, NOW - 10), NOW).unwrap();
    let mut with_id = lease(102, NOW + 600);
    with_id.client_id = Some("01020000000066".into());
    store.bind(with_id, NOW).unwrap();
    store.quarantine(Ipv4Addr::new(192, 168, 1, 103), NOW, NOW + 600);
    store.reserve(&other(104), Ipv4Addr::new(192, 168, 1, 104), NOW, NOW + 60);
    store
}

/// Replies must survive the trip to the wire and back.
fn check_reply(out: &Outcome) {
    if let Some(reply) = &out.reply {
        let bytes = reply
            .encode()
            .unwrap_or_else(|e| panic!("reply does not encode ({e}): {out:?}"));
        if let Err(e) = v4::Message::from_bytes(&bytes) {
            panic!("encoded reply does not decode ({e}): {out:?}");
        }
    }
}

/// `msg` with its message type replaced and `extra` options set, sent through
/// the codec as a client would send it.
fn follow_up(msg: &v4::Message, ty: MessageType, extra: &[DhcpOption]) -> v4::Message {
    let mut opts: Vec<DhcpOption> = msg
        .opts()
        .iter()
        .filter(|(code, _)| {
            !matches!(
                code,
                OptionCode::MessageType
                    | OptionCode::RequestedIpAddress
                    | OptionCode::ServerIdentifier
            )
        })
        .map(|(_, o)| o.clone())
        .collect();
    opts.insert(0, DhcpOption::MessageType(ty));
    opts.extend_from_slice(extra);
    let bytes = codec::encode(msg, &opts).expect("encoding a follow-up request");
    codec::decode(&bytes).unwrap_or_else(|e| panic!("follow-up request does not decode: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = codec::decode(data) else {
        return;
    };
    let s = settings();
    let server = s.server_ip;
    let mut store = store();

    let mut out = server_logic::handle(&s, &mut store, &msg, NOW);
    check_reply(&out);
    // An OFFER waiting for its ping check: the server pings, then reports. The
    // input's last bit says whether the first address tried answers.
    let mut attempt = 1;
    while let Some(ip) = out.probe {
        let answered = attempt == 1 && data[data.len() - 1] & 1 == 1;
        out = server_logic::probe_done(&s, &mut store, &msg, ip, answered, attempt, NOW);
        check_reply(&out);
        attempt += 1;
        assert!(
            attempt <= 2 * server_logic::MAX_PROBES,
            "ping checks do not end"
        );
    }

    // Decoded messages re-encode (in the reply path the header is reused).
    let opts: Vec<DhcpOption> = msg.opts().iter().map(|(_, o)| o.clone()).collect();
    let again = codec::encode(&msg, &opts).expect("re-encoding a decoded request");
    let again = codec::decode(&again).expect("re-encoded request does not decode");
    assert_eq!(again.opts().msg_type(), msg.opts().msg_type());
    assert_eq!(again.chaddr(), msg.chaddr());

    if out.kind != Kind::Offer {
        return;
    }
    let offered = out.reply.as_ref().map(|r| r.header.yiaddr()).unwrap();
    // SELECTING: the client takes our offer.
    let req = follow_up(
        &msg,
        MessageType::Request,
        &[
            DhcpOption::RequestedIpAddress(offered),
            DhcpOption::ServerIdentifier(server),
        ],
    );
    let ack = server_logic::handle(&s, &mut store, &req, NOW + 1);
    check_reply(&ack);
    assert_eq!(
        ack.kind,
        Kind::Ack,
        "REQUEST for the offered {offered} was not ACKed: {}",
        ack.log
    );

    let mut rel = follow_up(
        &msg,
        MessageType::Release,
        &[DhcpOption::ServerIdentifier(server)],
    );
    rel.set_ciaddr(offered);
    let released = server_logic::handle(&s, &mut store, &rel, NOW + 2);
    assert_eq!(
        released.kind,
        Kind::Release,
        "RELEASE of {offered} refused: {}",
        released.log
    );
});
