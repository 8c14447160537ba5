//! A link's call: the messages one node sends to one neighbour leave back to back in one `Push`
//! call that stays open while the link lasts, each message starting with its header chunk.
//!
//! A call per message cost each message a stream's headers both ways, a task on the receiver and
//! a round trip before the next message could leave; in a launched LeNet run that fixed cost
//! was larger than the cost of the bytes. Here a message leaves as soon as it is queued, and the
//! peer's acknowledgement of the call says that every message of it was taken.

use std::sync::Mutex;

use bytes::Bytes;
use dprox_core::Exchange;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::gossip::{CHUNK_BYTES, MemoryLink, PeerClient, SendStats, TransportError, describe, framed_len};
use crate::memory::framed_in_memory;
use crate::pb;
use crate::shape::Shaper;

/// A message queued on a link: its header and its encoded bytes.
pub type Queued = (pb::Header, Bytes);

/// Chunks handed to HTTP/2 ahead of the one it is sending (they share the message's bytes).
const AHEAD: usize = 2;

/// How a link's call ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// The queue closed and the peer acknowledged every message.
    Drained,
    /// The peer ended the call while the queue was open (it stopped serving). A message taken
    /// from the queue meanwhile is not delivered; the next one needs a new call.
    PeerStopped,
}

impl PeerClient {
    /// Sends `first`, then every message `queue` yields, in one call, each after the link's
    /// shaping delay; `sent` gets each message's bytes as it is handed to HTTP/2. Returns once the
    /// queue has closed and the peer has acknowledged the call, or when the peer ends it.
    pub async fn push_queue(
        &mut self,
        first: Queued,
        queue: &mut mpsc::UnboundedReceiver<Queued>,
        mut shaper: Option<&mut Shaper>,
        mut sent: impl FnMut(SendStats),
    ) -> Result<CallEnd, TransportError> {
        self.open_memory(&first.0).await;
        let memory = self.memory.clone();
        let (tx, rx) = mpsc::channel::<pb::Chunk>(AHEAD);
        let mut client = self.client.clone();
        let call = client.push(ReceiverStream::new(rx));
        tokio::pin!(call);
        // Shared by the two halves of the call (a `Send` future needs `Sync` here).
        let in_flight = Mutex::new(label(&first.0));
        let current = &in_flight;
        let feed = async move {
            let mut next = Some(first);
            while let Some((header, data)) = next {
                *current.lock().unwrap_or_else(|e| e.into_inner()) = label(&header);
                let n = data.len();
                if let Some(s) = shaper.as_deref_mut() {
                    let d = s.delay(n, n.div_ceil(CHUNK_BYTES).max(1));
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                }
                let (framed, chunks) = match place(&memory, &data) {
                    Some(slot) => {
                        (framed_in_memory(&header, &slot, n), Chunks::Slot(Some(in_slot(header, slot))))
                    }
                    None => (framed_len(&header, n), Chunks::Bytes(chunks(header, data))),
                };
                for chunk in chunks {
                    if tx.send(chunk).await.is_err() {
                        return; // the call ended: its outcome says why
                    }
                }
                sent(SendStats { payload: n as u64, framed });
                next = queue.recv().await;
            }
            // Dropping the sender ends the call's stream: the peer acknowledges once it has
            // taken every message.
        };
        let (drained, result) = tokio::select! {
            r = &mut call => (false, r),
            () = feed => (true, call.await),
        };
        match result {
            Ok(_) if drained => Ok(CallEnd::Drained),
            Ok(_) => {
                // Whatever serves the peer's address next holds no segment of this link's.
                self.forget_memory();
                Ok(CallEnd::PeerStopped)
            }
            Err(status) => {
                let (iteration, exchange) = *in_flight.lock().unwrap_or_else(|e| e.into_inner());
                Err(TransportError::Send {
                    peer: self.peer,
                    address: self.address.clone(),
                    iteration,
                    exchange,
                    message: describe(&status),
                })
            }
        }
    }
}

/// Writes `data` into a free slot of the link's shared memory, if it has some.
fn place(memory: &Mutex<MemoryLink>, data: &[u8]) -> Option<pb::MemorySlot> {
    match &mut *memory.lock().unwrap_or_else(|e| e.into_inner()) {
        MemoryLink::Open(outbox) => outbox.place(data),
        _ => None,
    }
}

/// The one chunk of a message handed over in `slot`.
fn in_slot(header: pb::Header, slot: pb::MemorySlot) -> pb::Chunk {
    pb::Chunk { header: Some(header), data: Bytes::new(), slot: Some(slot) }
}

/// A message's chunks: its slot, or its bytes.
enum Chunks<I> {
    Slot(Option<pb::Chunk>),
    Bytes(I),
}

impl<I: Iterator<Item = pb::Chunk>> Iterator for Chunks<I> {
    type Item = pb::Chunk;
    fn next(&mut self) -> Option<pb::Chunk> {
        match self {
            Chunks::Slot(c) => c.take(),
            Chunks::Bytes(i) => i.next(),
        }
    }
}

/// A message's iteration and exchange, to name it in an error.
fn label(header: &pb::Header) -> (u64, Exchange) {
    (header.iteration, Exchange::from_code(header.exchange as u8).unwrap_or(Exchange::X))
}

/// A message as chunks of at most [`CHUNK_BYTES`], the header in the first (slices of `data`,
/// not copies).
pub(crate) fn chunks(header: pb::Header, data: Bytes) -> impl Iterator<Item = pb::Chunk> {
    let n = data.len();
    let mut header = Some(header);
    (0..n.div_ceil(CHUNK_BYTES).max(1)).map(move |k| pb::Chunk {
        header: header.take(),
        data: data.slice(k * CHUNK_BYTES..((k + 1) * CHUNK_BYTES).min(n)),
        slot: None,
    })
}
