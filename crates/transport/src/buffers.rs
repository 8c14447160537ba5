//! Buffers of encoded outgoing messages, reused: a node encodes each outgoing vector once and its
//! links share the bytes; when the last link is done with them, the buffer comes back here for
//! the next message.
//!
//! A fresh buffer per message cost a launched LeNet run page faults and cache misses on every
//! encoded byte: the encoding (`put_values`) was the largest copy left once co-located nodes
//! handed their messages over in shared memory.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Kept buffers for encoding outgoing messages (clones share them).
#[derive(Clone, Debug, Default)]
pub struct SendBuffers {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SendBuffers {
    /// At most this many buffers are kept (a node has its x and y messages of an iteration or
    /// two in flight)...
    pub const KEEP: usize = 8;
    /// ...and at most this many bytes of them.
    pub const KEEP_BYTES: usize = 256 << 20;

    /// An empty buffer with room for `len` bytes: the one given back last, if any.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        buf.clear();
        buf.reserve(len);
        buf
    }

    /// `buf` as bytes the links can share; it comes back here when the last of them drops it.
    pub fn share(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returned { buf, home: self.clone() })
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn give(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < Self::KEEP && held + buf.capacity() <= Self::KEEP_BYTES {
            free.push(buf);
        }
    }
}

/// A shared buffer's owner: gives the buffer back when dropped.
struct Returned {
    buf: Vec<u8>,
    home: SendBuffers,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.home.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_the_last_link_drops_its_bytes() {
        let pool = SendBuffers::default();
        let mut buf = pool.take(1000);
        buf.extend_from_slice(&[7; 1000]);
        let at = buf.as_ptr();
        let bytes = pool.share(buf);
        let (a, b) = (bytes.clone(), bytes.slice(10..20));
        assert_eq!((bytes.as_ptr(), &b[..], a.len()), (at, &[7u8; 10][..], 1000), "shared, not copied");
        drop((bytes, a));
        assert!(pool.is_empty(), "a link still holds a slice");
        drop(b);
        assert_eq!(pool.len(), 1);
        let again = pool.take(500);
        assert_eq!((again.as_ptr(), again.len(), pool.len()), (at, 0, 0), "the same buffer, emptied");
    }

    #[test]
    fn it_keeps_a_bounded_number_of_buffers() {
        let pool = SendBuffers::default();
        let shared: Vec<Bytes> = (0..SendBuffers::KEEP + 3).map(|_| pool.share(pool.take(64))).collect();
        drop(shared);
        assert_eq!(pool.len(), SendBuffers::KEEP);
        let big = pool.share(Vec::with_capacity(SendBuffers::KEEP_BYTES));
        pool.take(0);
        drop(big);
        assert_eq!(pool.len(), SendBuffers::KEEP - 1, "over the byte bound: dropped");
    }
}
