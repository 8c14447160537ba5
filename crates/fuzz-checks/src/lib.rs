//! The properties dprox's fuzz targets check, one function per target, each taking the fuzzer's
//! bytes. A function returns normally when the property holds and panics (the fuzzer's crash)
//! when it does not. `fuzz/` (cargo-fuzz, outside the workspace) calls them; the workspace test
//! `tests/corpus.rs` runs them on the committed corpus, so every input that ever found a bug
//! stays a regression test.
//!
//! - [`wire`]: the gossip wire decoder refuses or decodes, and what it decodes is well formed
//!   and encodes back to a message that decodes to the same vector.
//! - [`stream`]: the streaming decoder, fed the same bytes in arbitrary pieces, agrees with the
//!   whole-message decoder, error for error.
//! - [`messages`]: every protobuf message a dprox server accepts decodes or is refused, and what
//!   decodes encodes back to the same bytes.
//! - [`config`]: the config parser and validator return a config or an error naming the problem.

use dprox_compress::{Compressed, StreamDecoder};
use dprox_transport::pb;
use prost::Message;

/// The largest model the fuzzers use: large enough for every message kind, small enough that
/// each input runs in microseconds.
pub const MAX_DIM: usize = 4096;

/// Splits off the model size: the first two bytes, little endian, folded into 1..=MAX_DIM.
fn dim_of(data: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = data.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*head) as usize % MAX_DIM + 1, rest))
}

/// The gossip wire decoder: `data` is a model size (2 bytes) and a message.
pub fn wire(data: &[u8]) {
    let Some((dim, bytes)) = dim_of(data) else { return };
    let mut msg = Compressed::new(dim);
    if msg.decode_from(bytes, dim).is_err() {
        return;
    }
    assert_eq!(msg.dim, dim, "decoded a message of another size");
    msg.check().expect("a decoded message is well formed");
    let mut again = Vec::new();
    msg.encode(&mut again);
    let mut back = Compressed::new(dim);
    back.decode_from(&again, dim).expect("a re-encoded message decodes");
    assert_eq!(back, msg, "encode(decode(bytes)) decodes to the same message");
}

/// The streaming decoder against the whole-message decoder: `data` is a model size (2 bytes), a
/// piece length (1 byte, 1..=256), and a message fed in pieces of that length.
pub fn stream(data: &[u8]) {
    let Some((dim, rest)) = dim_of(data) else { return };
    let Some((&piece, bytes)) = rest.split_first() else { return };
    let mut whole = Compressed::new(dim);
    let expected = whole.decode_from(bytes, dim);
    let (mut dec, mut out) = (StreamDecoder::default(), Compressed::new(dim));
    dec.begin(dim);
    for chunk in bytes.chunks(piece as usize + 1) {
        dec.feed(chunk, &mut out);
    }
    let got = dec.finish(&mut out);
    // As text: an error may carry a NaN, which is not equal to itself.
    let text = |r: &Result<(), dprox_compress::WireError>| format!("{r:?}");
    assert_eq!(text(&got), text(&expected), "the streaming decoder disagrees with decode_from");
    if got.is_ok() {
        assert_eq!(out, whole, "the two decoders decoded different vectors");
    }
}

/// Decodes `bytes` as `M`; what decodes must encode to bytes that decode and encode to the same
/// bytes (compared as bytes: a double field may hold a NaN, not equal to itself).
fn roundtrip<M: Message + Default>(bytes: &[u8]) {
    let Ok(m) = M::decode(bytes) else { return };
    let again = m.encode_to_vec();
    let back = M::decode(again.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(back.encode_to_vec(), again, "encoding is not stable");
}

/// The protobuf messages dprox's servers accept: the first byte picks the message, the rest is
/// its encoding.
pub fn messages(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 11 {
        0 => roundtrip::<pb::Chunk>(bytes),
        1 => roundtrip::<pb::PingRequest>(bytes),
        2 => roundtrip::<pb::FetchModelRequest>(bytes),
        3 => roundtrip::<pb::RegisterRequest>(bytes),
        4 => roundtrip::<pb::HeartbeatRequest>(bytes),
        5 => roundtrip::<pb::ReportRequest>(bytes),
        6 => roundtrip::<pb::FinishRequest>(bytes),
        7 => roundtrip::<pb::SyncRequest>(bytes),
        8 => roundtrip::<pb::LostRequest>(bytes),
        9 => roundtrip::<pb::LeaveRequest>(bytes),
        _ => roundtrip::<pb::CheckpointedRequest>(bytes),
    }
}

/// The config parser and validator: any text gives a config or an error; a parse error names
/// the file, and a config that parses is validated without panicking (an error names the key).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match dprox_config::parse(text, "fuzz.toml".as_ref()) {
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml: "), "the error does not name the file: {e}"),
        Ok(cfg) => {
            if let Err(e) = cfg.validate() {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// A target's property.
pub type Check = fn(&[u8]);

/// The targets by name, as `fuzz/` and the corpus directories name them.
pub const TARGETS: [(&str, Check); 4] =
    [("wire", wire), ("stream", stream), ("messages", messages), ("config", config)];
