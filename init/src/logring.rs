//! Per-service log rings in PID 1's memory, and the socket that serves them.
//!
//! Every line a service writes (stdout and stderr) and every line init logs
//! lands in the ring of its source with a sequence number and two clocks
//! (wall time and seconds since boot). Each ring is bounded in bytes; the
//! oldest lines go first. `logs` (the CLI) and gatewayd's UI read them through
//! `/run/gatehouse/log.sock` (root only; the protocol is in the log-socket crate).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

/// Per source. 64 KiB holds several hundred lines of a chatty daemon.
pub const RING_BYTES: usize = 64 * 1024;
const MAX_CLIENTS: usize = 8;
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub wall: SystemTime,
    pub boot: f64,
    pub source: String,
    pub text: String,
}

impl Entry {
    pub fn render(&self) -> String {
        format!(
            "{} [{:10.3}] {}: {}",
            humantime::format_rfc3339_millis(self.wall),
            self.boot,
            self.source,
            self.text
        )
    }
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Entry>,
    bytes: usize,
}

#[derive(Default)]
struct State {
    next: u64,
    rings: BTreeMap<String, Ring>,
}

/// All rings, shared by the output readers, init's logger and the socket.
pub struct Rings {
    cap: usize,
    state: Mutex<State>,
    grew: Condvar,
}

impl Rings {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            state: Mutex::default(),
            grew: Condvar::new(),
        }
    }

    pub fn push(&self, source: &str, text: &str, wall: SystemTime, boot: f64) {
        let mut text = text.to_string();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [cut]");
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = st.next;
        st.next += 1;
        let ring = st.rings.entry(source.to_string()).or_default();
        ring.bytes += text.len();
        ring.lines.push_back(Entry {
            seq,
            wall,
            boot,
            source: source.to_string(),
            text,
        });
        while ring.bytes > self.cap {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.text.len(),
                None => break,
            }
        }
        drop(st);
        self.grew.notify_all();
    }

    /// The last `n` lines of `source` (None: every source) with seq >= `from`.
    pub fn tail(&self, source: Option<&str>, n: usize, from: u64) -> Vec<Entry> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Entry> = st
            .rings
            .iter()
            .filter(|(name, _)| source.is_none_or(|s| s == name.as_str()))
            .flat_map(|(_, r)| r.lines.iter().filter(|e| e.seq >= from).cloned())
            .collect();
        out.sort_by_key(|e| e.seq);
        let skip = out.len().saturating_sub(n);
        out.split_off(skip)
    }

    /// The sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// Blocks until a line newer than `seq` exists or `timeout` passes.
    pub fn wait_past(&self, seq: u64, timeout: Duration) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .grew
            .wait_timeout_while(st, timeout, |st| st.next <= seq);
    }

    pub fn sources(&self) -> Vec<String> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.rings.keys().cloned().collect()
    }
}

pub use log_socket::{parse_request, read, Request, SOCKET};

fn serve_client(rings: &Rings, stream: UnixStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(256)
        .read_line(&mut line)?;
    let mut out = std::io::BufWriter::new(stream);
    let req = match parse_request(&line) {
        Ok(r) => r,
        Err(e) => return writeln!(out, "error: {e}"),
    };
    let src = req.source.as_deref();
    let mut next = 0;
    for e in rings.tail(src, req.lines, 0) {
        next = e.seq + 1;
        writeln!(out, "{}", e.render())?;
    }
    out.flush()?;
    if !req.follow {
        return Ok(());
    }
    next = next.max(rings.next_seq());
    loop {
        rings.wait_past(next, Duration::from_secs(1));
        for e in rings.tail(src, usize::MAX, next) {
            next = e.seq + 1;
            writeln!(out, "{}", e.render())?;
        }
        // A write to a departed client fails here and ends the thread.
        out.flush()?;
    }
}

/// Listens on `path` in a thread; each client gets its own thread, at most
/// MAX_CLIENTS at a time.
pub fn serve(rings: Arc<Rings>, path: &str) -> std::io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let clients = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::sync::atomic::Ordering::SeqCst;
            if clients.fetch_add(1, SeqCst) >= MAX_CLIENTS {
                clients.fetch_sub(1, SeqCst);
                let _ = (&stream).write_all(b"error: too many readers\n");
                continue;
            }
            let (rings, clients) = (rings.clone(), clients.clone());
            std::thread::spawn(move || {
                let _ = serve_client(&rings, stream);
                clients.fetch_sub(1, SeqCst);
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(r: &Rings, src: &str, text: &str) {
        r.push(src, text, SystemTime::UNIX_EPOCH, 1.5);
    }

    #[test]
    fn rings_are_bounded_per_source_and_merge_in_order() {
        let r = Rings::new(30);
        push(&r, "a", "0123456789");
        push(&r, "b", "b-one");
        push(&r, "a", "abcdefghij");
        push(&r, "a", "ABCDEFGHIJ");
        push(&r, "a", "klmnopqrst");
        let a: Vec<_> = r
            .tail(Some("a"), 10, 0)
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(
            a,
            ["abcdefghij", "ABCDEFGHIJ", "klmnopqrst"],
            "oldest dropped"
        );
        let all: Vec<_> = r.tail(None, 2, 0).into_iter().map(|e| e.text).collect();
        assert_eq!(all, ["ABCDEFGHIJ", "klmnopqrst"]);
        assert_eq!(r.tail(Some("b"), 10, 0)[0].text, "b-one", "b keeps its own");
        assert_eq!(r.sources(), ["a", "b"]);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let r = Rings::new(RING_BYTES);
        push(&r, "a", &"é".repeat(MAX_LINE));
        let t = &r.tail(None, 1, 0)[0].text;
        assert!(t.ends_with(" [cut]") && t.len() <= MAX_LINE + 6);
    }

    #[test]
    fn renders_both_clocks() {
        let e = Entry {
            seq: 0,
            wall: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            boot: 12.5,
            source: "gatewayd".into(),
            text: "hello".into(),
        };
        assert_eq!(
            e.render(),
            "2026-11-18T11:06:40.123Z [    12.500] gatewayd: hello"
        );
    }

    #[test]
    fn socket_serves_tail_and_follow() {
        let dir = std::env::temp_dir().join(format!("ghlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let rings = Arc::new(Rings::new(RING_BYTES));
        push(&rings, "init", "one");
        push(&rings, "gatewayd", "two");
        let p = path.to_str().unwrap();
        serve(rings.clone(), p).unwrap();
        let mut got = vec![];
        let req = parse_request("tail 10 *").unwrap();
        read(p, &req, |l| {
            got.push(l.to_string());
            true
        })
        .unwrap();
        assert!(
            got[0].ends_with("init: one") && got[1].ends_with("gatewayd: two"),
            "{got:?}"
        );

        let r3 = rings.clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            push(&r3, "init", "not mine");
            push(&r3, "gatewayd", "three");
        });
        let mut followed = vec![];
        let req = parse_request("follow 1 gatewayd").unwrap();
        read(p, &req, |l| {
            followed.push(l.to_string());
            followed.len() < 2
        })
        .unwrap();
        pusher.join().unwrap();
        assert!(
            followed[0].ends_with("two") && followed[1].ends_with("three"),
            "{followed:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
