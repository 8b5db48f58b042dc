//! The protocol of PID 1's log socket (`/run/gatehouse/log.sock`, root only).
//!
//! ```text
//! request:  "<tail|follow> <N> <source|*>\n"
//! response: the last N lines of that source (every source, merged in order,
//!           for "*"), one per line; "follow" then keeps sending new lines
//!           until the client goes away. A bad request gets "error: ...".
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

pub const SOCKET: &str = "/run/gatehouse/log.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub follow: bool,
    pub lines: usize,
    /// None: every source.
    pub source: Option<String>,
}

impl Request {
    pub fn line(&self) -> String {
        format!(
            "{} {} {}\n",
            if self.follow { "follow" } else { "tail" },
            self.lines,
            self.source.as_deref().unwrap_or("*")
        )
    }
}

pub fn parse_request(line: &str) -> Result<Request, String> {
    let mut w = line.split_whitespace();
    let follow = match w.next() {
        Some("tail") => false,
        Some("follow") => true,
        _ => return Err("expected: tail|follow N SOURCE|*".into()),
    };
    let lines = w
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or("N must be a number")?;
    let source = match w.next() {
        Some("*") => None,
        Some(s) => Some(s.to_string()),
        None => return Err("missing SOURCE (or *)".into()),
    };
    if w.next().is_some() {
        return Err("trailing words".into());
    }
    Ok(Request {
        follow,
        lines,
        source,
    })
}

/// Sends one request to the socket at `path` and hands each line to `each`
/// until the server closes or `each` returns false.
pub fn read(path: &str, req: &Request, mut each: impl FnMut(&str) -> bool) -> std::io::Result<()> {
    let mut s = UnixStream::connect(path)?;
    s.write_all(req.line().as_bytes())?;
    for line in BufReader::new(s).lines() {
        if !each(&line?) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let r = parse_request("follow 20 gatewayd\n").unwrap();
        assert_eq!(
            r,
            Request {
                follow: true,
                lines: 20,
                source: Some("gatewayd".into())
            }
        );
        assert_eq!(parse_request(&r.line()).unwrap(), r);
        assert_eq!(parse_request("tail 5 *").unwrap().source, None);
        for bad in [
            "",
            "tail",
            "tail x *",
            "tail 5",
            "peek 5 *",
            "tail 5 * extra",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }
}
