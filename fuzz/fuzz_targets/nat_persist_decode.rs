//! Saved NAT table input: `persist::decode_header` on the file's first bytes
//! and `persist::decode` on a slot, as `persist::open` reads a file left in
//! the run dir by an earlier gatewayd (whole, cut short, or damaged). Random
//! bytes rarely carry a right CRC-32, so each is also tried with its checksum
//! fixed up, which lets the field checks behind it run.
//!
//! Properties: nothing panics; a slot of any length but `RECORD_LEN` is
//! damaged; a record that decodes encodes to a slot that decodes to the same
//! record, and an accepted header re-encodes to the same first 32 bytes and
//! the same WAN address.

#![no_main]

use gateway::nat::persist::{self, Damaged, RECORD_LEN};
use libfuzzer_sys::fuzz_target;

/// `data` as one slot: cut or zero-padded to `RECORD_LEN`.
fn slot(data: &[u8]) -> [u8; RECORD_LEN] {
    let mut b = [0u8; RECORD_LEN];
    let n = data.len().min(RECORD_LEN);
    b[..n].copy_from_slice(&data[..n]);
    b
}

fn check_record(b: &[u8]) {
    let res = persist::decode(b);
    if b.len() != RECORD_LEN {
        assert_eq!(res, Err(Damaged), "a slot of {} bytes decoded", b.len());
        return;
    }
    let Ok(Some(rec)) = res else {
        return;
    };
    let again = persist::encode(&rec);
    assert_eq!(
        persist::decode(&again),
        Ok(Some(rec.clone())),
        "a decoded record does not survive encode and decode"
    );
    // Encoding is a function of the record alone.
    assert_eq!(persist::encode(&rec), again);
}

fn check_header(b: &[u8]) {
    let Ok(wan) = persist::decode_header(b) else {
        return;
    };
    let again = persist::encode_header(wan);
    assert_eq!(
        &again[..32],
        &b[..32],
        "an accepted header re-encodes differently"
    );
    assert_eq!(persist::decode_header(&again), Ok(wan));
}

fuzz_target!(|data: &[u8]| {
    check_record(data);
    check_header(data);

    // The same bytes as a slot with a right checksum (CRC-32 of bytes 4..256 at 0).
    let mut b = slot(data);
    let sum = crc32fast::hash(&b[4..]);
    b[..4].copy_from_slice(&sum.to_le_bytes());
    check_record(&b);

    // And as a header with a right checksum (CRC-32 of bytes 0..28 at 28).
    let mut h = slot(data);
    let sum = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&sum.to_le_bytes());
    check_header(&h);
});
