//! The names LAN clients looked up, by the addresses the answers gave: the traffic history
//! labels remote IPs with them. Fed from upstream answers only (cache hits repeat a name we
//! already hold), bounded LRU so a flood of lookups cannot grow it.

use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

const CAPACITY: usize = 65_536;

pub struct LookedUp {
    map: Mutex<lru::LruCache<IpAddr, Arc<str>>>,
}

impl Default for LookedUp {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl std::fmt::Debug for LookedUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookedUp")
            .field("len", &self.len())
            .finish()
    }
}

impl LookedUp {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            map: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(n.max(1)).expect("non-zero"),
            )),
        }
    }

    /// Labels every A/AAAA address in `reply` with the name the client asked for (not a CNAME
    /// target: "video.example" means more to the owner than a CDN's host name).
    pub fn record_reply(&self, reply: &[u8]) {
        let Ok(m) = Message::from_vec(reply) else {
            return;
        };
        let Some(q) = m.queries().first() else {
            return;
        };
        let name = q.name().to_utf8();
        let name: Arc<str> = Arc::from(name.trim_end_matches('.').to_ascii_lowercase());
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        for r in m.answers() {
            let ip = match r.data() {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            map.put(ip, name.clone());
        }
    }

    pub fn get(&self, ip: &IpAddr) -> Option<Arc<str>> {
        self.map.lock().ok()?.peek(ip).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, Query};
    use hickory_proto::rr::{rdata, Name, Record, RecordType};
    use std::str::FromStr;

    fn reply(qname: &str, answers: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response);
        m.add_query(Query::query(Name::from_str(qname).unwrap(), RecordType::A));
        m.add_answers(answers);
        m.to_vec().unwrap()
    }

    #[test]
    fn labels_addresses_with_the_asked_name_through_cnames() {
        let n = LookedUp::default();
        let cdn = Name::from_str("edge.cdn.example.").unwrap();
        let bytes = reply(
            "Video.Example.",
            vec![
                Record::from_rdata(
                    Name::from_str("video.example.").unwrap(),
                    60,
                    RData::CNAME(rdata::CNAME(cdn.clone())),
                ),
                Record::from_rdata(cdn.clone(), 60, RData::A(rdata::A::new(203, 0, 113, 7))),
                Record::from_rdata(
                    cdn,
                    60,
                    RData::AAAA(rdata::AAAA::from_str("2001:db8::7").unwrap()),
                ),
            ],
        );
        n.record_reply(&bytes);
        assert_eq!(
            n.get(&"203.0.113.7".parse().unwrap()).as_deref(),
            Some("video.example")
        );
        assert_eq!(
            n.get(&"2001:db8::7".parse().unwrap()).as_deref(),
            Some("video.example")
        );
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn bounded_and_ignores_garbage() {
        let n = LookedUp::with_capacity(2);
        n.record_reply(b"\x00\x01garbage");
        assert!(n.is_empty());
        for i in 1..=3u8 {
            let a = Record::from_rdata(
                Name::from_str("x.example.").unwrap(),
                60,
                RData::A(rdata::A::new(198, 51, 100, i)),
            );
            n.record_reply(&reply("x.example.", vec![a]));
        }
        assert_eq!(n.len(), 2);
        assert!(n.get(&"198.51.100.1".parse().unwrap()).is_none());
    }
}
