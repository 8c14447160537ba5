//! The gRPC codec of dprox's services: prost's encoding, with buffers sized for what each
//! message type carries.
//!
//! tonic starts every call's encode and decode buffers at 8 KiB and grows them as a message
//! arrives: a gossip chunk (up to [`CHUNK_BYTES`]) was copied once into the buffer and again at
//! each doubling, and after the decoded chunk took the front of the buffer the next reservation
//! moved the rest. Chunks and fetched models start with room for a whole chunk, so each is
//! copied into its buffer exactly once; every other message keeps tonic's 8 KiB.

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

/// The buffer settings for messages of type `M`.
fn settings<M: 'static>() -> BufferSettings {
    let large = [TypeId::of::<pb::Chunk>(), TypeId::of::<pb::FetchModelReply>()];
    let size = if large.contains(&TypeId::of::<M>()) { LARGE } else { SMALL };
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
        ProstEncoder::new(settings::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings::<U>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn chunks_and_models_get_a_chunks_room_and_the_rest_tonics_default() {
        let size = |s: BufferSettings| format!("{s:?}");
        assert_eq!(size(settings::<pb::Chunk>()), size(BufferSettings::new(LARGE, YIELD)));
        assert_eq!(size(settings::<pb::FetchModelReply>()), size(BufferSettings::new(LARGE, YIELD)));
        assert_eq!(size(settings::<pb::PushAck>()), size(BufferSettings::default()));
        assert_eq!(size(settings::<pb::Header>()), size(BufferSettings::default()));
        let mut codec = Codec::<pb::Chunk, pb::PushAck>::default();
        use tonic::codec::Codec as _;
        assert_eq!(size(codec.encoder().buffer_settings()), size(BufferSettings::new(LARGE, YIELD)));
        assert_eq!(size(codec.decoder().buffer_settings()), size(BufferSettings::default()));
    }
}
