//! nfqueue input: `nfqueue::parse_datagram` on any datagram read from the
//! netlink socket, as the datapath (`nat::queue`) parses every datagram of a
//! `recvmmsg` batch before it slices each packet's payload out of it to
//! translate it in place.
//!
//! Properties: nothing panics; every packet's payload range lies within the
//! datagram (start <= end <= len) and slices without a panic, after the
//! netlink, nfgenmsg and attribute headers; payloads of successive packets do
//! not overlap; a packet's real length is never less than its copy.

#![no_main]

use gateway::nat::nfqueue::{self, Msg};
use libfuzzer_sys::fuzz_target;

/// Netlink header, nfgenmsg and one attribute header: the earliest a payload
/// can start.
const MIN_PAYLOAD_START: usize = 16 + 4 + 4;

fuzz_target!(|data: &[u8]| {
    let mut prev_end = 0;
    nfqueue::parse_datagram(data, |m| {
        let Ok(Msg::Packet(meta)) = m else {
            return;
        };
        let r = meta.payload.clone();
        assert!(
            r.start <= r.end && r.end <= data.len(),
            "payload {r:?} outside a datagram of {} bytes",
            data.len()
        );
        assert!(
            r.start >= MIN_PAYLOAD_START,
            "payload {r:?} overlaps the headers"
        );
        assert!(
            r.start >= prev_end,
            "payload {r:?} overlaps the previous packet's (ended at {prev_end})"
        );
        prev_end = r.end;
        let payload = &data[r];
        assert_eq!(payload.len(), meta.payload.len());
        assert!(meta.orig_len >= payload.len());
        assert_eq!(meta.truncated(), meta.orig_len > payload.len());
        // As the datapath does: the payload sliced out of a mutable copy.
        let mut copy = data.to_vec();
        let buf = &mut copy[meta.payload.clone()];
        assert_eq!(buf, payload);
    });
});
