//! The gRPC codec of dprox's services: prost's encoding, with buffers sized for what each
//! message type carries.
//!
//! tonic starts every call's encode and decode buffers at 8 KiB and grows them as a message
//! arrives: a gossip chunk (up to [`CHUNK_BYTES`]) was copied once into the buffer and again at
//! each doubling, and after the decoded chunk took the front of the buffer the next reservation
//! moved the rest. Chunks and fetched models start with room for a whole chunk, so each is
//! copied into its buffer exactly once; every other message keeps tonic's 8 KiB.
//!
//! A receiving call's buffer gets room for four chunks. When a message's length prefix is read,
//! tonic reserves that length again on top of what has arrived of it (usually all of it), and a
//! buffer without that room behind its read position moves the message to its front: with room
//! for one chunk, a 247 KB LeNet message was copied once more every third message (0.49 GB of
//! 1.48 GB received in a launched run of the example, `eval_every = 300`); with room for four,
//! every fifteenth. The buffer's pages are touched only as messages fill them.

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::BufferSettings;
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::gossip::CHUNK_BYTES;
use crate::pb;

/// tonic's default buffer size, for the small messages.
const SMALL: usize = 8 << 10;
/// Room for a whole chunk and its gRPC and protobuf framing.
const LARGE: usize = CHUNK_BYTES + 4096;
/// A receiving call's room for chunks (see the module docs).
const RECEIVE: usize = 4 * CHUNK_BYTES + 4096;
/// Encoded bytes after which a frame is handed to HTTP/2 (tonic's default).
const YIELD: usize = 32 << 10;

/// Prost's codec with per-type buffer sizes (see the module docs).
#[derive(Debug)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

/// The buffer settings for messages of type `M`: sent (`receive` false) or received.
fn settings<M: 'static>(receive: bool) -> BufferSettings {
    let large = [TypeId::of::<pb::Chunk>(), TypeId::of::<pb::FetchModelReply>()];
    let size = match large.contains(&TypeId::of::<M>()) {
        true if receive => RECEIVE,
        true => LARGE,
        false => SMALL,
    };
    BufferSettings::new(size, YIELD)
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings::<T>(false))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings::<U>(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn chunks_and_models_get_room_for_chunks_and_the_rest_tonics_default() {
        let size = |s: BufferSettings| format!("{s:?}");
        for receive in [false, true] {
            let large = if receive { RECEIVE } else { LARGE };
            assert_eq!(size(settings::<pb::Chunk>(receive)), size(BufferSettings::new(large, YIELD)));
            let model = settings::<pb::FetchModelReply>(receive);
            assert_eq!(size(model), size(BufferSettings::new(large, YIELD)));
            assert_eq!(size(settings::<pb::PushAck>(receive)), size(BufferSettings::default()));
            assert_eq!(size(settings::<pb::Header>(receive)), size(BufferSettings::default()));
        }
        use tonic::codec::Codec as _;
        let mut client = Codec::<pb::Chunk, pb::PushAck>::default();
        assert_eq!(size(client.encoder().buffer_settings()), size(BufferSettings::new(LARGE, YIELD)));
        assert_eq!(size(client.decoder().buffer_settings()), size(BufferSettings::default()));
        let mut server = Codec::<pb::PushAck, pb::Chunk>::default();
        assert_eq!(size(server.decoder().buffer_settings()), size(BufferSettings::new(RECEIVE, YIELD)));
    }
}
