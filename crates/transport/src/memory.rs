//! Shared memory between nodes on one host: a sender writes a message's bytes into a slot of a
//! segment its receiver created, and its gRPC chunk carries the slot instead of the bytes.
//!
//! Over loopback TCP every byte of a message is copied about five times (into tonic's encode
//! buffer, into the kernel, out of it, into tonic's decode buffer, into the decoded vector) and
//! walks the kernel's TCP path; through a slot it is copied twice (into the slot, and decoded out
//! of it). MPI and NCCL hand data between processes of one machine the same way.
//!
//! The receiver owns each segment: a `memfd` of fixed size, sealed against shrinking and
//! growing, so that nothing a sender does can make the receiver's reads fault. The sender opens
//! it through `/proc/<pid>/fd/<fd>` (possible only for processes of the same user on the same
//! host) and checks the 128-bit key the receiver wrote at its start and named in its
//! authenticated reply. A segment belongs to one sender; the receiver keeps at most two per
//! sender (a new request replaces the older).
//!
//! Layout: a 64-byte header (magic, key, generation, slot count, slot size), then per slot two
//! counters, `ready` (the sequence of the message the sender last wrote there) and `done` (the
//! sequence of the message the receiver last read out of it), then the slots, each a multiple of
//! 64 bytes. A slot is free for the sender when `done` equals the sequence it last placed there;
//! the receiver reads a slot only if `ready` holds the sequence its chunk names. Both counters
//! are atomics in the shared mapping (release on store, acquire on load), so a message's bytes
//! are visible before its slot is named. A sender that finds no free slot, or a message larger
//! than a slot, sends the bytes in its chunks as before.
//!
//! What a sender writes into a slot is untrusted input like any chunk: the receiver bounds every
//! index and length and decodes it with the same checks (lengths, indices, finite values). A
//! sender rewriting a slot while it is read can only garble its own message.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use crate::pb;

/// "dproxmem", little endian.
const MAGIC: u64 = u64::from_le_bytes(*b"dproxmem");
const HEADER: usize = 64;
/// Slots per segment: x and y messages of two iterations can be in flight.
pub const SLOTS: usize = 4;
/// The largest segment a receiver creates; messages of larger models travel in chunks.
pub const MAX_SEGMENT: usize = 256 << 20;

/// What a segment holds, as the receiver's reply names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Slots.
    pub slots: usize,
    /// Bytes per slot (a multiple of 64).
    pub slot_bytes: usize,
}

impl Shape {
    /// [`SLOTS`] slots large enough for a dense message of `dim` parameters, if the segment stays
    /// within [`MAX_SEGMENT`].
    pub fn for_dim(dim: usize) -> Option<Shape> {
        let slot_bytes = (4 * dim + 256).next_multiple_of(64);
        let shape = Shape { slots: SLOTS, slot_bytes };
        (shape.len() <= MAX_SEGMENT).then_some(shape)
    }

    fn counters(&self) -> usize {
        (16 * self.slots).next_multiple_of(64)
    }

    fn offset(&self, k: usize) -> usize {
        HEADER + self.counters() + k * self.slot_bytes
    }

    /// The segment's size in bytes.
    pub fn len(&self) -> usize {
        self.offset(self.slots)
    }

    /// Whether the segment has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }
}

/// A mapped segment (the receiver's, or a sender's view of it).
#[derive(Debug)]
pub struct Segment {
    ptr: NonNull<u8>,
    shape: Shape,
    /// The receiver's descriptor (kept open: senders open the segment through it).
    fd: OwnedFd,
    key: [u64; 2],
    generation: u64,
}

// SAFETY: the mapping lives as long as the segment; the counters are accessed as atomics and
// the slots by raw copies, from any thread.
unsafe impl Send for Segment {}
// SAFETY: as above; no method hands out a reference that another can invalidate.
unsafe impl Sync for Segment {}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr` was mapped with this length and is unmapped once, here.
        let _ = unsafe { munmap(self.ptr.cast(), self.shape.len()) };
    }
}

/// Why a sender could not use a receiver's segment (it then sends the bytes in its chunks).
#[derive(Debug, thiserror::Error)]
#[error("shared memory unavailable: {0}")]
pub struct Unavailable(pub String);

fn unavailable(what: impl std::fmt::Display) -> Unavailable {
    Unavailable(what.to_string())
}

/// Maps `len` bytes of `fd` shared, readable and writable.
fn map(fd: &OwnedFd, len: usize) -> nix::Result<NonNull<u8>> {
    let len = NonZeroUsize::new(len).ok_or(nix::errno::Errno::EINVAL)?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh mapping of a file whose size is `len` or more, sealed against shrinking.
    let ptr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, fd, 0)? };
    Ok(ptr.cast())
}

/// 128 bits from the operating system's randomness (std seeds its hashers from it).
fn random_key() -> [u64; 2] {
    let word = || std::collections::hash_map::RandomState::new().build_hasher().finish();
    [word(), word() ^ u64::from(std::process::id())]
}

/// This host and pid namespace, as a string two processes share only if each can open the
/// other's descriptors through `/proc`.
pub fn host() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{} {ns}", boot.trim())
}

impl Segment {
    /// A new segment of `shape` (the receiver's side), numbered `generation`.
    pub fn create(shape: Shape, generation: u64) -> std::io::Result<Segment> {
        let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
        let fd = memfd_create("dprox-gossip", flags)?;
        let file = File::from(fd);
        file.set_len(shape.len() as u64)?;
        let fd = OwnedFd::from(file);
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        let ptr = map(&fd, shape.len())?;
        let seg = Segment { ptr, shape, fd, key: random_key(), generation };
        for (i, w) in [MAGIC, seg.key[0], seg.key[1], generation, shape.slots as u64, shape.slot_bytes as u64]
            .into_iter()
            .enumerate()
        {
            seg.word(i).store(w, Ordering::Release);
        }
        Ok(seg)
    }

    /// The reply naming this segment to a sender.
    pub fn reply(&self) -> pb::OpenMemoryReply {
        pb::OpenMemoryReply {
            host: host(),
            pid: std::process::id(),
            fd: self.fd.as_raw_fd(),
            key0: self.key[0],
            key1: self.key[1],
            generation: self.generation,
            slots: self.shape.slots as u32,
            slot_bytes: self.shape.slot_bytes as u64,
        }
    }

    /// Opens the segment `reply` names (the sender's side), checking that it is on this host,
    /// sealed, of the size named, and carries the key named.
    pub fn open(reply: &pb::OpenMemoryReply) -> Result<Segment, Unavailable> {
        if reply.host != host() {
            return Err(unavailable("the receiver is on another host or in another pid namespace"));
        }
        let shape = Shape { slots: reply.slots as usize, slot_bytes: reply.slot_bytes as usize };
        let bounded = (1..=64).contains(&shape.slots) && shape.slot_bytes <= MAX_SEGMENT;
        if !bounded || !shape.slot_bytes.is_multiple_of(64) || shape.len() > MAX_SEGMENT {
            return Err(unavailable(format!("a segment of {shape:?}")));
        }
        let path = format!("/proc/{}/fd/{}", reply.pid, reply.fd);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(unavailable)?;
        let size = file.metadata().map_err(unavailable)?.len();
        if size != shape.len() as u64 {
            return Err(unavailable(format!("{path} has {size} bytes, not {}", shape.len())));
        }
        let fd = OwnedFd::from(file);
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(unavailable)?;
        let need = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        if !SealFlag::from_bits_truncate(seals).contains(need) {
            return Err(unavailable(format!("{path} is not sealed against resizing")));
        }
        let ptr = map(&fd, shape.len()).map_err(unavailable)?;
        let seg = Segment { ptr, shape, fd, key: [reply.key0, reply.key1], generation: reply.generation };
        let header: Vec<u64> = (0..6).map(|i| seg.word(i).load(Ordering::Acquire)).collect();
        let want =
            [MAGIC, reply.key0, reply.key1, reply.generation, shape.slots as u64, shape.slot_bytes as u64];
        if header != want {
            return Err(unavailable(format!("{path} is not the segment the receiver named")));
        }
        Ok(seg)
    }

    /// The segment's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Its generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Header word `i` (< 8).
    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < HEADER / 8);
        // SAFETY: within the header, 8-aligned (the mapping is page-aligned); atomics are the only
        // access to these bytes.
        unsafe { &*self.ptr.as_ptr().add(8 * i).cast::<AtomicU64>() }
    }

    /// Slot `k`'s counter `which` (0: ready, 1: done).
    fn counter(&self, k: usize, which: usize) -> &AtomicU64 {
        assert!(k < self.shape.slots);
        // SAFETY: within the counters' area, 8-aligned; only accessed as atomics.
        unsafe { &*self.ptr.as_ptr().add(HEADER + 16 * k + 8 * which).cast::<AtomicU64>() }
    }

    /// Copies `data` into slot `k` and marks it written as message `sequence` (the sender's side;
    /// the slot must be free and `data` no longer than a slot).
    pub fn write(&self, k: usize, sequence: u64, data: &[u8]) {
        assert!(k < self.shape.slots && data.len() <= self.shape.slot_bytes);
        // SAFETY: the destination lies within slot `k` of the mapping; the receiver does not
        // read a free slot until `ready` names the sequence below.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.shape.offset(k)),
                data.len(),
            );
        }
        self.counter(k, 0).store(sequence, Ordering::Release);
    }

    /// Whether slot `k` is free for a sender whose last message there was `sequence`.
    pub fn is_free(&self, k: usize, sequence: u64) -> bool {
        self.counter(k, 1).load(Ordering::Acquire) == sequence
    }

    /// Runs `read` on the `len` bytes of slot `index` if it holds message `sequence` (the
    /// receiver's side), then frees the slot; an error names what is wrong with the reference.
    pub fn read<T>(
        &self,
        slot: &pb::MemorySlot,
        len: usize,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, String> {
        let k = slot.index as usize;
        if slot.generation != self.generation {
            return Err(format!("names segment {}, not the current {}", slot.generation, self.generation));
        }
        if k >= self.shape.slots {
            return Err(format!("names slot {k} of {}", self.shape.slots));
        }
        if len > self.shape.slot_bytes {
            return Err(format!("is {len} bytes long, more than a slot's {}", self.shape.slot_bytes));
        }
        let ready = self.counter(k, 0).load(Ordering::Acquire);
        if ready != slot.sequence {
            return Err(format!("names message {} of slot {k}, which holds message {ready}", slot.sequence));
        }
        // SAFETY: within slot `k` of the mapping, which is sealed against shrinking. A sender may
        // write it concurrently only by breaking the protocol, which garbles this message only.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(self.shape.offset(k)), len) };
        let out = read(bytes);
        self.counter(k, 1).store(slot.sequence, Ordering::Release);
        Ok(out)
    }
}

/// A receiver's segments: per sender its current one and the one before, so that messages a
/// replaced link had already sent (a new membership epoch opens new links) still read.
#[derive(Debug)]
pub struct Segments {
    shape: Shape,
    by_sender: Mutex<HashMap<usize, Vec<Arc<Segment>>>>,
    generation: AtomicU64,
}

/// Why [`Segments::get`] found no segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The sender holds none here.
    Sender,
    /// It holds none of that generation (any more).
    Generation,
}

/// Segments a receiver keeps per sender.
const KEEP: usize = 2;

impl Segments {
    /// Segments of `shape`, none yet.
    pub fn new(shape: Shape) -> Segments {
        Segments { shape, by_sender: Mutex::default(), generation: AtomicU64::new(0) }
    }

    /// A new segment for sender `from` (dropping all but its latest earlier one), and the reply
    /// naming it.
    pub fn open(&self, from: usize) -> std::io::Result<pb::OpenMemoryReply> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let seg = Segment::create(self.shape, generation)?;
        let reply = seg.reply();
        let mut by_sender = self.by_sender.lock().unwrap_or_else(|e| e.into_inner());
        let held = by_sender.entry(from).or_default();
        held.push(Arc::new(seg));
        let extra = held.len().saturating_sub(KEEP);
        held.drain(..extra);
        Ok(reply)
    }

    /// Sender `from`'s segment of `generation`, or which of the two it lacks.
    pub fn get(&self, from: usize, generation: u64) -> Result<Arc<Segment>, Missing> {
        let by_sender = self.by_sender.lock().unwrap_or_else(|e| e.into_inner());
        let held = by_sender.get(&from).ok_or(Missing::Sender)?;
        held.iter().find(|s| s.generation == generation).cloned().ok_or(Missing::Generation)
    }

    /// Segments held, over all senders.
    pub fn len(&self) -> usize {
        self.by_sender.lock().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sender's use of one receiver's segment: which slot holds which of its messages.
#[derive(Debug)]
pub struct Outbox {
    segment: Segment,
    /// Per slot, the sequence of the last message placed there (0: none).
    placed: Vec<u64>,
    sequence: u64,
    next: usize,
}

impl Outbox {
    /// Starts writing into `segment`.
    pub fn new(segment: Segment) -> Outbox {
        let placed = vec![0; segment.shape.slots];
        Outbox { segment, placed, sequence: 0, next: 0 }
    }

    /// Writes `data` into a free slot and returns the reference for the chunk; `None` when it is
    /// larger than a slot or every slot still holds an unread message.
    pub fn place(&mut self, data: &[u8]) -> Option<pb::MemorySlot> {
        let shape = self.segment.shape;
        if data.len() > shape.slot_bytes {
            return None;
        }
        let k = (0..shape.slots)
            .map(|i| (self.next + i) % shape.slots)
            .find(|&k| self.segment.is_free(k, self.placed[k]))?;
        self.sequence += 1;
        self.placed[k] = self.sequence;
        self.next = (k + 1) % shape.slots;
        self.segment.write(k, self.sequence, data);
        Some(pb::MemorySlot { generation: self.segment.generation, index: k as u32, sequence: self.sequence })
    }
}

/// Bytes a message of `n` bytes handed over in `slot` costs: the bytes, and the gRPC chunk with
/// its header and slot. Sender and receiver count the same figure.
pub fn framed_in_memory(header: &pb::Header, slot: &pb::MemorySlot, n: usize) -> u64 {
    use prost::encoding::message::encoded_len;
    // The chunk's fields 1 (header) and 3 (slot), priced without building it.
    let chunk = encoded_len(1, header) + encoded_len(3, slot);
    n as u64 + chunk as u64 + 5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dim: usize) -> (Segment, Outbox) {
        let seg = Segment::create(Shape::for_dim(dim).unwrap(), 7).unwrap();
        let view = Segment::open(&seg.reply()).unwrap();
        (seg, Outbox::new(view))
    }

    #[test]
    fn a_sender_writes_slots_the_receiver_reads_and_frees() {
        let (seg, mut out) = pair(100);
        assert_eq!(seg.shape(), Shape { slots: SLOTS, slot_bytes: 704 });
        let msgs: Vec<Vec<u8>> = (0..SLOTS as u8).map(|i| vec![i; 10 + i as usize]).collect();
        let slots: Vec<_> = msgs.iter().map(|m| out.place(m).unwrap()).collect();
        let idx: Vec<(u32, u64)> = slots.iter().map(|s| (s.index, s.sequence)).collect();
        assert_eq!(idx, vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert!(out.place(&[9; 5]).is_none(), "every slot holds an unread message");
        // Read out of order: slot 2 frees first and takes the next message.
        assert_eq!(seg.read(&slots[2], msgs[2].len(), |b| b.to_vec()).unwrap(), msgs[2]);
        let again = out.place(&[9; 5]).unwrap();
        assert_eq!((again.index, again.sequence), (2, 5));
        assert_eq!(seg.read(&again, 5, |b| b.to_vec()).unwrap(), vec![9; 5]);
        assert_eq!(seg.read(&slots[0], msgs[0].len(), |b| b.to_vec()).unwrap(), msgs[0]);
        assert!(out.place(&[0; 705]).is_none(), "larger than a slot");
        assert_eq!(out.place(&[1; 704]).unwrap().index, 0);
    }

    #[test]
    fn the_receiver_refuses_references_that_do_not_match_its_segment() {
        let (seg, mut out) = pair(100);
        let s = out.place(&[1; 8]).unwrap();
        let err = |slot: pb::MemorySlot, len| seg.read(&slot, len, |_| ()).unwrap_err();
        assert_eq!(err(pb::MemorySlot { generation: 6, ..s }, 8), "names segment 6, not the current 7");
        assert_eq!(err(pb::MemorySlot { index: 4, ..s }, 8), "names slot 4 of 4");
        assert_eq!(err(s, 705), "is 705 bytes long, more than a slot's 704");
        assert_eq!(
            err(pb::MemorySlot { sequence: 2, ..s }, 8),
            "names message 2 of slot 0, which holds message 1"
        );
        assert_eq!(
            err(pb::MemorySlot { index: 1, ..s }, 8),
            "names message 1 of slot 1, which holds message 0"
        );
        // A refused reference frees nothing; the real one still reads.
        assert_eq!(seg.read(&s, 8, |b| b.to_vec()).unwrap(), vec![1; 8]);
    }

    #[test]
    fn a_segment_is_sealed_and_checked_before_use() {
        let (seg, _) = pair(10);
        // Nobody can shrink it under the receiver's reads.
        let path = format!("/proc/self/fd/{}", seg.fd.as_raw_fd());
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert_eq!(file.set_len(64).unwrap_err().raw_os_error(), Some(nix::errno::Errno::EPERM as i32));
        let reply = seg.reply();
        let open = |r: pb::OpenMemoryReply| Segment::open(&r).unwrap_err().to_string();
        let wrong_key = open(pb::OpenMemoryReply { key1: reply.key1 ^ 1, ..reply.clone() });
        assert!(wrong_key.ends_with("is not the segment the receiver named"), "{wrong_key}");
        let elsewhere = open(pb::OpenMemoryReply { host: "another".into(), ..reply.clone() });
        assert!(elsewhere.contains("another host"), "{elsewhere}");
        let size = open(pb::OpenMemoryReply { slot_bytes: reply.slot_bytes + 64, ..reply.clone() });
        assert!(size.contains("bytes, not"), "{size}");
        let huge = open(pb::OpenMemoryReply { slots: u32::MAX, slot_bytes: u64::MAX - 63, ..reply.clone() });
        assert!(huge.contains("a segment of"), "{huge}");
        // A plain file of the right size is not a sealed segment.
        let plain = tempfile::tempfile().unwrap();
        plain.set_len(seg.shape().len() as u64).unwrap();
        let fd = plain.as_raw_fd();
        let unsealed = open(pb::OpenMemoryReply { fd, ..reply });
        assert!(unsealed.contains("Invalid argument") || unsealed.contains("not sealed"), "{unsealed}");
    }

    #[test]
    fn a_receiver_keeps_each_senders_current_and_previous_segment() {
        let segments = Segments::new(Shape::for_dim(10).unwrap());
        assert_eq!(segments.get(3, 1).unwrap_err(), Missing::Sender, "no segment of node 3 yet");
        let gens: Vec<u64> = (0..3).map(|_| segments.open(3).unwrap().generation).collect();
        assert_eq!(gens, vec![1, 2, 3]);
        assert_eq!(segments.open(4).unwrap().generation, 4);
        assert_eq!(segments.get(3, 1).unwrap_err(), Missing::Generation, "the oldest went");
        assert_eq!(segments.get(3, 2).unwrap().generation(), 2);
        assert_eq!(segments.get(3, 3).unwrap().generation(), 3);
        assert_eq!(segments.get(3, 4).unwrap_err(), Missing::Generation, "node 4's segment is not node 3's");
        assert_eq!(segments.len(), 3);
    }

    #[test]
    fn large_models_get_no_segment() {
        assert!(Shape::for_dim(16_000_000).is_some());
        assert!(Shape::for_dim(17_000_000).is_none(), "four 68 MB slots exceed the cap");
    }

    #[test]
    fn the_framed_figure_counts_the_bytes_and_the_chunk() {
        let h = pb::Header { length: 1000, ..Default::default() };
        let s = pb::MemorySlot { generation: 1, index: 2, sequence: 3 };
        // Chunk: header field (2 + 3) + slot field (2 + 6) + gRPC prefix 5.
        assert_eq!(framed_in_memory(&h, &s, 1000), 1000 + 5 + 8 + 5);
    }
}
