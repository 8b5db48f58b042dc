//! One client's packets as a byte stream of records spread over fixed-size
//! chunks. Chunks rather than one big ring so that memory follows what is
//! held: a quiet client costs little, and evicting its oldest packets hands
//! whole chunks back to the allocator, which is what lets the total cap
//! really bound memory. Records may straddle chunk boundaries, so nothing is
//! wasted at chunk ends.

use std::collections::VecDeque;

/// Per-record header: ts_ns u64, orig_len u32, caplen u32, little-endian.
pub(crate) const REC_HDR: usize = 16;

/// What one held chunk costs besides its bytes: the boxed-slice pointer in
/// the deque.
pub(crate) const CHUNK_PTR: usize = std::mem::size_of::<Box<[u8]>>();

pub(crate) struct Ring {
    chunk: usize,
    chunks: VecDeque<Box<[u8]>>,
    /// Offset of the oldest record inside `chunks[0]`.
    head: usize,
    /// Record bytes held (headers + data).
    len: usize,
    packets: usize,
    data_bytes: usize,
    last_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecHdr {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub caplen: u32,
}

impl RecHdr {
    pub(crate) fn encode(&self) -> [u8; REC_HDR] {
        let mut b = [0u8; REC_HDR];
        b[..8].copy_from_slice(&self.ts_ns.to_le_bytes());
        b[8..12].copy_from_slice(&self.orig_len.to_le_bytes());
        b[12..].copy_from_slice(&self.caplen.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        RecHdr {
            ts_ns: u64::from_le_bytes(b[..8].try_into().unwrap()),
            orig_len: u32_at(8),
            caplen: u32_at(12),
        }
    }
}

impl Ring {
    pub(crate) fn new(chunk: usize) -> Self {
        Ring {
            chunk,
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
            packets: 0,
            data_bytes: 0,
            last_ns: 0,
        }
    }

    pub(crate) fn packets(&self) -> usize {
        self.packets
    }

    pub(crate) fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    pub(crate) fn last_ns(&self) -> Option<u64> {
        (self.packets > 0).then_some(self.last_ns)
    }

    /// Bytes this ring holds on the heap right now.
    pub(crate) fn memory(&self) -> usize {
        self.chunks.len() * (self.chunk + CHUNK_PTR)
    }

    /// Heap bytes after appending a record of `rec` bytes.
    pub(crate) fn memory_after(&self, rec: usize) -> usize {
        (self.head + self.len + rec).div_ceil(self.chunk) * (self.chunk + CHUNK_PTR)
    }

    /// Heap bytes an otherwise empty ring needs for one record of `rec` bytes.
    pub(crate) fn memory_alone(chunk: usize, rec: usize) -> usize {
        rec.div_ceil(chunk) * (chunk + CHUNK_PTR)
    }

    pub(crate) fn front(&self) -> Option<RecHdr> {
        (self.packets > 0).then(|| self.hdr_at(self.head))
    }

    fn hdr_at(&self, pos: usize) -> RecHdr {
        let mut b = [0u8; REC_HDR];
        self.copy_out(pos, &mut b);
        RecHdr::decode(&b)
    }

    /// Copies stream bytes starting at `pos` (offset from the start of
    /// `chunks[0]`) into `dst`.
    fn copy_out(&self, mut pos: usize, dst: &mut [u8]) {
        let mut done = 0;
        while done < dst.len() {
            let (ci, off) = (pos / self.chunk, pos % self.chunk);
            let n = (self.chunk - off).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&self.chunks[ci][off..off + n]);
            done += n;
            pos += n;
        }
    }

    fn copy_in(&mut self, mut pos: usize, src: &[u8]) {
        let mut done = 0;
        while done < src.len() {
            let (ci, off) = (pos / self.chunk, pos % self.chunk);
            let n = (self.chunk - off).min(src.len() - done);
            self.chunks[ci][off..off + n].copy_from_slice(&src[done..done + n]);
            done += n;
            pos += n;
        }
    }

    /// Appends a record; the caller has already made room under its caps.
    pub(crate) fn push(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) {
        let rec = REC_HDR + data.len();
        let need = (self.head + self.len + rec).div_ceil(self.chunk);
        while self.chunks.len() < need {
            self.chunks
                .push_back(vec![0u8; self.chunk].into_boxed_slice());
        }
        let hdr = RecHdr {
            ts_ns,
            orig_len,
            caplen: data.len() as u32,
        };
        let pos = self.head + self.len;
        self.copy_in(pos, &hdr.encode());
        self.copy_in(pos + REC_HDR, data);
        self.len += rec;
        self.packets += 1;
        self.data_bytes += data.len();
        self.last_ns = ts_ns;
    }

    /// Drops the oldest record. Returns false when there was none.
    pub(crate) fn pop_front(&mut self) -> bool {
        let Some(h) = self.front() else { return false };
        let rec = REC_HDR + h.caplen as usize;
        self.head += rec;
        self.len -= rec;
        self.packets -= 1;
        self.data_bytes -= h.caplen as usize;
        if self.len == 0 {
            // Empty: give every chunk back and start the stream afresh.
            self.chunks.clear();
            self.head = 0;
        } else {
            while self.head >= self.chunk {
                self.chunks.pop_front();
                self.head -= self.chunk;
            }
        }
        true
    }

    /// Appends all records, oldest first, to `out` as one contiguous stream.
    pub(crate) fn copy_all(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        let mut pos = self.head;
        let end = self.head + self.len;
        for c in &self.chunks {
            if pos >= end {
                break;
            }
            let n = (self.chunk - pos % self.chunk).min(end - pos);
            let off = pos % self.chunk;
            out.extend_from_slice(&c[off..off + n]);
            pos += n;
        }
    }

    /// Calls `f` for every record, oldest first. Records that straddle a
    /// chunk boundary are handed over from a scratch buffer.
    pub(crate) fn for_each(&self, mut f: impl FnMut(RecHdr, &[u8])) {
        let mut scratch = Vec::new();
        let mut pos = self.head;
        let end = self.head + self.len;
        while pos < end {
            let h = self.hdr_at(pos);
            let start = pos + REC_HDR;
            let n = h.caplen as usize;
            let (ci, off) = (start / self.chunk, start % self.chunk);
            if n == 0 {
                // May sit exactly at the end of the last chunk: no slice there.
                f(h, &[]);
            } else if off + n <= self.chunk {
                f(h, &self.chunks[ci][off..off + n]);
            } else {
                scratch.resize(n, 0);
                self.copy_out(start, &mut scratch);
                f(h, &scratch);
            }
            pos = start + n;
        }
    }
}
