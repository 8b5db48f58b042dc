//! DNS forwarder input, client side: the fast path's `wire::parse_question`
//! (cache key, blocked-name reply, UDP cut) and the full path's
//! `message::parse_query` (error replies, UDP limit); upstream side, on the
//! same bytes taken as a reply: `message::is_reply_to`, `message::fit`,
//! `wire::walk` and `wire::first_address`.
//!
//! Properties: nothing panics; the fast path only takes queries the full path
//! accepts; replies we make match their query (`is_reply_to`) and fit the
//! client's UDP limit once cut; `fit` never grows a message and marks a cut.

#![no_main]

use gateway::dns::message::{self, Parsed};
use gateway::dns::wire;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use std::str::FromStr;

fn check_fit(reply: &[u8], limit: usize) {
    let out = message::fit(reply.to_vec(), limit);
    if reply.len() <= limit {
        assert_eq!(out, reply, "fit changed a reply within its limit");
    } else {
        assert!(out.len() <= reply.len(), "fit grew a reply");
        assert!(
            out.is_empty() || message::is_truncated(&out),
            "fit cut a reply without setting TC"
        );
    }
}

/// The fast path on `data`; returns whether it took the query.
fn fast_path(data: &[u8], question: Option<&Query>) -> bool {
    let Some(q) = wire::parse_question(data) else {
        return false;
    };
    let key = wire::Key::new(&q);
    assert!(key.as_bytes().len() <= wire::MAX_KEY);
    assert_eq!(key.name().len(), q.name().len());
    let mut name = String::new();
    wire::write_name(key.name(), &mut name);
    let _ = q.labels.iter().rev().nth(1);
    for start in q.labels.iter() {
        assert!(start < q.name().len());
    }
    let _ = (q.cd(), q.ad(), q.dnssec());
    let limit = q.udp_limit();
    assert!(limit >= message::MIN_UDP);

    // Blocked-name replies, with and without an answer record.
    let mut out = Vec::new();
    for answer in [None, Some((wire::TYPE_A, 60, &[0u8; 4][..]))] {
        for rcode in [wire::RCODE_NOERROR, wire::RCODE_NXDOMAIN] {
            wire::synth_reply(&q, rcode, answer, &mut out);
            if let Some(question) = question {
                assert!(
                    message::is_reply_to(&out, q.id, question),
                    "synthesised reply does not match its query"
                );
            }
            let walked = wire::walk(&out).expect("synthesised reply does not walk");
            assert_eq!(walked.rcode, rcode);
            assert_eq!(
                walked.records.len(),
                usize::from(answer.is_some()) + usize::from(q.edns.is_some())
            );
        }
    }
    // A cached reply too big for the client: cut to the question (+ OPT) with TC.
    let mut big = out.clone();
    big.resize(limit + 1, 0);
    wire::fit_udp(&mut big, &q);
    assert!(
        big.len() <= limit,
        "fit_udp left {} bytes over {limit}",
        big.len()
    );
    assert!(message::is_truncated(&big));
    true
}

fuzz_target!(|data: &[u8]| {
    // Client side: the full path.
    let _ = message::counts_plausible(data);
    let mut question = None;
    match message::parse_query(data) {
        Parsed::Query(req) => {
            let q = req.queries()[0].clone();
            let limit = message::udp_limit(&req);
            assert!(limit >= message::MIN_UDP);
            let _ = message::error_reply(&req, ResponseCode::ServFail);
            // What an upstream would answer must match the query.
            let mut reply = message::response_to(&req);
            reply.set_response_code(ResponseCode::NoError);
            if let Ok(bytes) = reply.to_vec() {
                assert!(
                    message::is_reply_to(&bytes, req.id(), &q),
                    "our own response does not match its query"
                );
                check_fit(&bytes, limit);
            }
            question = Some(q);
        }
        Parsed::Refuse(bytes, _rcode) => {
            assert!(bytes.len() >= message::HEADER_LEN);
        }
        Parsed::Drop => {}
    }

    // Client side: the fast path, which must never answer what the full path
    // would refuse or drop.
    if fast_path(data, question.as_ref()) {
        assert!(
            question.is_some(),
            "the fast path took a query the full path rejects"
        );
    }

    // Upstream side: the same bytes as a reply to a fixed question and to the
    // question they carry.
    let fixed = Query::query(Name::from_str("www.example.test.").unwrap(), RecordType::A);
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    let _ = message::is_reply_to(data, id, &fixed);
    if let Some(q) = &question {
        let _ = message::is_reply_to(data, id, q);
    }
    let _ = message::is_truncated(data);
    if let Some(reply) = wire::walk(data) {
        assert!(reply.qend <= data.len());
        for r in &reply.records {
            assert!(r.rdata.0 <= r.rdata.1 && r.rdata.1 <= data.len());
            assert!(r.ttl_at + 4 <= data.len());
        }
        let _ = wire::first_address(data, &reply);
    }
    let _ = wire::skip_name(data, wire::HEADER_LEN);
    for limit in [0, message::HEADER_LEN, data.len() / 2, message::MIN_UDP] {
        check_fit(data, limit);
    }
    let mut copy = data.to_vec();
    message::set_id(&mut copy, 0xbeef);
    assert_eq!(copy.len(), data.len());
    if copy.len() >= 2 {
        assert_eq!(&copy[2..], &data[2..]);
    }
});
