//! Wire-level helpers. The forwarder relays the client's own bytes (only the ID
//! is rewritten), so unknown types, classes and EDNS options survive intact;
//! hickory is used to validate queries, match questions and build our own replies.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

pub const HEADER_LEN: usize = 12;
/// UDP payload limit for clients that do not speak EDNS0 (RFC 1035 4.2.1).
pub const MIN_UDP: usize = 512;
/// The EDNS0 buffer size we advertise in replies we build ourselves (DNS flag day 2020).
pub const OUR_EDNS_PAYLOAD: u16 = 1232;
const TC_BIT: u8 = 0x02;

#[cfg(test)]
pub fn id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

/// Overwrites the ID in place; messages too short to have one are left alone.
pub fn set_id(msg: &mut [u8], id: u16) {
    if let Some(head) = msg.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
}

pub fn is_truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & TC_BIT != 0)
}

fn count(msg: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]))
}

/// Whether the section counts could possibly fit in the message. hickory
/// pre-allocates by the claimed counts, so this keeps a 30-byte packet from
/// costing megabytes.
pub fn counts_plausible(msg: &[u8]) -> bool {
    if msg.len() < HEADER_LEN {
        return false;
    }
    // A question takes at least 5 bytes (root name, type, class), a record 11.
    let need = count(msg, 4) * 5 + (count(msg, 6) + count(msg, 8) + count(msg, 10)) * 11;
    need <= msg.len() - HEADER_LEN
}

/// Same question: name compared case-insensitively (clients randomise case), type, class.
pub fn same_question(a: &Query, b: &Query) -> bool {
    a.query_type() == b.query_type()
        && a.query_class() == b.query_class()
        && a.name().to_lowercase().eq_case(&b.name().to_lowercase())
}

/// Header, first question (if any) and where the question section ends.
/// Only this much is decoded, so replies whose records hickory cannot parse
/// can still be matched and relayed.
fn header_and_question(msg: &[u8]) -> Option<(Header, Option<(Query, usize)>)> {
    let mut dec = BinDecoder::new(msg);
    let header = Header::read(&mut dec).ok()?;
    if header.query_count() == 0 {
        return Some((header, None));
    }
    let q = Query::read(&mut dec).ok()?;
    Some((header, Some((q, dec.index()))))
}

/// Is `reply` the genuine answer to the query we sent with `id` and `question`?
pub fn is_reply_to(reply: &[u8], id: u16, question: &Query) -> bool {
    let Some((h, Some((q, _)))) = header_and_question(reply) else {
        return false;
    };
    h.message_type() == MessageType::Response
        && h.id() == id
        && h.query_count() == 1
        && same_question(&q, question)
}

/// What to do with an incoming message.
#[derive(Debug)]
pub enum Parsed {
    /// A well-formed standard query with one question.
    Query(Message),
    /// Not forwardable; answer with this error reply (its rcode alongside).
    Refuse(Vec<u8>, ResponseCode),
    /// Garbage or a response: drop silently (answering invites reflection loops).
    Drop,
}

pub fn parse_query(bytes: &[u8]) -> Parsed {
    if !counts_plausible(bytes) {
        return Parsed::Drop;
    }
    let Ok(msg) = Message::from_vec(bytes) else {
        return Parsed::Drop;
    };
    if msg.message_type() != MessageType::Query {
        return Parsed::Drop;
    }
    let rcode = if msg.op_code() != OpCode::Query {
        ResponseCode::NotImp
    } else if msg.queries().len() != 1 {
        ResponseCode::FormErr
    } else if matches!(
        msg.queries()[0].query_type(),
        RecordType::AXFR | RecordType::IXFR
    ) {
        // Zone transfers are multi-message over TCP; a LAN forwarder has no business relaying them.
        ResponseCode::Refused
    } else {
        return Parsed::Query(msg);
    };
    match error_reply(&msg, rcode) {
        Some(r) => Parsed::Refuse(r, rcode),
        None => Parsed::Drop,
    }
}

/// Skeleton response to `req`: same ID, opcode, question and flags the client
/// cares about, plus OPT if the client sent one (RFC 6891 6.1.1).
pub fn response_to(req: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(req.checking_disabled());
    m.add_queries(req.queries().iter().cloned());
    if let Some(e) = req.extensions() {
        let mut opt = Edns::new();
        opt.set_max_payload(OUR_EDNS_PAYLOAD);
        opt.set_dnssec_ok(e.flags().dnssec_ok);
        m.set_edns(opt);
    }
    m
}

pub fn error_reply(req: &Message, rcode: ResponseCode) -> Option<Vec<u8>> {
    let mut m = response_to(req);
    m.set_response_code(rcode);
    m.to_vec().ok()
}

/// Largest UDP reply the client said it can take.
pub fn udp_limit(req: &Message) -> usize {
    req.extensions()
        .as_ref()
        .map_or(MIN_UDP, |e| usize::from(e.max_payload()).max(MIN_UDP))
}

/// A reply larger than `limit` is cut to header + question with TC set, so the
/// client retries over TCP (RFC 7766 5).
pub fn fit(reply: Vec<u8>, limit: usize) -> Vec<u8> {
    if reply.len() <= limit {
        return reply;
    }
    let (qd, end) = match header_and_question(&reply) {
        Some((_, Some((_, end)))) => (1u16, end),
        _ => (0, HEADER_LEN),
    };
    let mut out = reply[..end.min(reply.len())].to_vec();
    if out.len() < HEADER_LEN {
        return Vec::new();
    }
    out[2] |= TC_BIT;
    out[4..6].copy_from_slice(&qd.to_be_bytes());
    out[6..12].fill(0);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::rr::{DNSClass, Name};

    pub fn query_msg(name: &str, qtype: RecordType, id: u16) -> Message {
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    #[test]
    fn id_rewrite_touches_only_first_two_bytes() {
        let mut q = query_msg("example.test.", RecordType::A, 0x1234)
            .to_vec()
            .unwrap();
        let orig = q.clone();
        assert_eq!(id(&q), Some(0x1234));
        set_id(&mut q, 0xbeef);
        assert_eq!(id(&q), Some(0xbeef));
        assert_eq!(&q[..2], &[0xbe, 0xef]);
        assert_eq!(&q[2..], &orig[2..]);
        let mut short = vec![7u8];
        set_id(&mut short, 1);
        assert_eq!(short, vec![7]);
        assert_eq!(id(&short), None);
    }

    #[test]
    fn question_matching() {
        let q = |n: &str, t| Query::query(Name::from_ascii(n).unwrap(), t);
        assert!(same_question(
            &q("WwW.Example.TEST.", RecordType::A),
            &q("www.example.test.", RecordType::A)
        ));
        assert!(!same_question(
            &q("www.example.test.", RecordType::A),
            &q("www.example.test.", RecordType::AAAA)
        ));
        assert!(!same_question(
            &q("www.example.test.", RecordType::A),
            &q("ww.example.test.", RecordType::A)
        ));
        let mut chaos = q("www.example.test.", RecordType::A);
        chaos.set_query_class(DNSClass::CH);
        assert!(!same_question(
            &chaos,
            &q("www.example.test.", RecordType::A)
        ));
    }

    #[test]
    fn reply_acceptance() {
        let query = query_msg("a.test.", RecordType::A, 77);
        let question = query.queries()[0].clone();
        let mut reply = query.clone();
        reply.set_message_type(MessageType::Response);
        let bytes = reply.to_vec().unwrap();
        assert!(is_reply_to(&bytes, 77, &question));
        assert!(!is_reply_to(&bytes, 78, &question), "wrong id");
        // The query itself echoed back is not an answer.
        assert!(!is_reply_to(&query.to_vec().unwrap(), 77, &question));
        let other = query_msg("b.test.", RecordType::A, 77);
        let mut other_reply = other.clone();
        other_reply.set_message_type(MessageType::Response);
        assert!(!is_reply_to(&other_reply.to_vec().unwrap(), 77, &question));
        assert!(!is_reply_to(&bytes[..14], 77, &question), "cut short");
        assert!(!is_reply_to(&[], 77, &question));
    }

    #[test]
    fn parse_query_classifies() {
        let good = query_msg("a.test.", RecordType::A, 1).to_vec().unwrap();
        assert!(matches!(parse_query(&good), Parsed::Query(_)));
        assert!(matches!(parse_query(&good[..5]), Parsed::Drop));
        assert!(matches!(
            parse_query(b"\x00\x01garbage garbage"),
            Parsed::Drop
        ));
        // Claims 65535 questions in 12 bytes.
        let mut huge = good[..12].to_vec();
        huge[4..6].copy_from_slice(&[0xff, 0xff]);
        assert!(matches!(parse_query(&huge), Parsed::Drop));
        let mut resp = query_msg("a.test.", RecordType::A, 1);
        resp.set_message_type(MessageType::Response);
        assert!(matches!(parse_query(&resp.to_vec().unwrap()), Parsed::Drop));
        let mut two = query_msg("a.test.", RecordType::A, 1);
        two.add_query(Query::query(
            Name::from_ascii("b.test.").unwrap(),
            RecordType::A,
        ));
        match parse_query(&two.to_vec().unwrap()) {
            Parsed::Refuse(r, ResponseCode::FormErr) => assert_eq!(id(&r), Some(1)),
            other => panic!("{other:?}"),
        }
        let mut notify = query_msg("a.test.", RecordType::SOA, 1);
        notify.set_op_code(OpCode::Notify);
        assert!(matches!(
            parse_query(&notify.to_vec().unwrap()),
            Parsed::Refuse(_, ResponseCode::NotImp)
        ));
    }

    #[test]
    fn oversize_reply_is_truncated_to_question() {
        let mut m = query_msg("big.test.", RecordType::TXT, 9);
        m.set_message_type(MessageType::Response);
        let q = m.to_vec().unwrap();
        let mut big = q.clone();
        big.extend(std::iter::repeat_n(0u8, 600));
        big[6..8].copy_from_slice(&[0, 40]); // pretend answers follow
        let cut = fit(big, MIN_UDP);
        assert_eq!(cut.len(), q.len());
        assert!(is_truncated(&cut));
        let parsed = Message::from_vec(&cut).unwrap();
        assert_eq!(parsed.answer_count(), 0);
        assert_eq!(parsed.queries()[0].name().to_ascii(), "big.test.");
        assert_eq!(fit(q.clone(), MIN_UDP), q);
    }
}
