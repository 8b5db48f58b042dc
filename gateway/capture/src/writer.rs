//! pcap / pcapng encoding of a snapshot, via the `pcap-file` crate.

use std::borrow::Cow;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::ring::RecHdr;

/// Options are length-prefixed with a u16 and pcap-file does not check it,
/// so longer strings are cut (at a char boundary) rather than corrupt a file.
const MAX_OPT_STR: usize = 4096;

/// Fixed byte order so files are identical on any router CPU; readers
/// handle both.
const ENDIAN: Endianness = Endianness::Little;

const NS: u64 = 1_000_000_000;

fn cut(s: &str) -> &str {
    if s.len() <= MAX_OPT_STR {
        return s;
    }
    let mut end = MAX_OPT_STR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// pcap with nanosecond timestamps (magic a1b23c4d), LINKTYPE_RAW.
pub(crate) fn pcap<'a>(
    snaplen: u32,
    packets: impl Iterator<Item = (RecHdr, &'a [u8])>,
    size_hint: usize,
) -> Vec<u8> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen,
        datalink: DataLink::RAW,
        ts_resolution: TsResolution::NanoSecond,
        endianness: ENDIAN,
    };
    let mut w = PcapWriter::with_header(Vec::with_capacity(size_hint), header)
        .expect("writing to a Vec cannot fail");
    for (h, data) in packets {
        // Raw packets: the checked path would reject timestamps past 2106
        // instead of wrapping them the way every pcap writer does.
        let raw = RawPcapPacket {
            ts_sec: (h.ts_ns / NS) as u32,
            ts_frac: (h.ts_ns % NS) as u32,
            incl_len: h.caplen,
            orig_len: h.orig_len,
            data: Cow::Borrowed(data),
        };
        w.write_raw_packet(&raw)
            .expect("writing to a Vec cannot fail");
    }
    w.into_writer()
}

/// pcapng: SHB (optional comment), one IDB (if_name, if_tsresol=9,
/// LINKTYPE_RAW), one EPB per packet.
pub(crate) fn pcapng<'a>(
    snaplen: u32,
    if_name: &str,
    comment: Option<&str>,
    packets: impl Iterator<Item = (RecHdr, &'a [u8])>,
    size_hint: usize,
) -> Vec<u8> {
    let mut shb_opts = vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
        "Gatehouse",
    ))];
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        shb_opts.push(SectionHeaderOption::Comment(Cow::Owned(cut(c).to_string())));
    }
    let shb = SectionHeaderBlock {
        endianness: ENDIAN,
        major_version: 1,
        minor_version: 0,
        section_length: -1,
        options: shb_opts,
    };
    let mut w = PcapNgWriter::with_section_header(Vec::with_capacity(size_hint), shb)
        .expect("writing to a Vec cannot fail");
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed(cut(if_name))),
            // pcap-file always writes EPB times in ns, so say so.
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    };
    w.write_pcapng_block(idb)
        .expect("writing to a Vec cannot fail");
    for (h, data) in packets {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(h.ts_ns),
            original_len: h.orig_len,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        w.write_pcapng_block(epb)
            .expect("interface 0 was written above");
    }
    w.into_inner()
}
