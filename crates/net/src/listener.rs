//! Accepting connections under a cap. [`incoming`] turns a listener into the stream of
//! connections a tonic server (`serve_with_incoming`) or [`crate::http::serve`] serves: at most
//! `max_connections` at once (a connection beyond it is closed at once, and logged at most once a
//! second), and when the process runs out of file descriptors the loop waits, doubling from
//! 10 ms to 1 s, instead of spinning or ending the server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::limits::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, Limits};

/// Times an accept loop of this process has waited for a resource (file descriptors, memory).
static ACCEPT_WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times the accept loops of this process have backed off for lack of file descriptors
/// or memory so far.
pub fn accept_waits() -> u64 {
    ACCEPT_WAITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The buffer that serves reads shorter than [`DIRECT`]: filled with one read of this size.
///
/// rustls reads TLS records a few KiB at a time (its buffer grows by 4 KiB up to one record of
/// at most 18,437 bytes): on a TLS gossip link that was a `recvfrom` per 4 KiB, 113,820 of them
/// in a launched LeNet run against 27,252 with this buffer (`strace -c -f`).
pub const READ_AHEAD: usize = 64 << 10;

/// With read-ahead, reads at least this long go to the socket directly when the buffer is empty:
/// longer than any read rustls makes once a connection carries data.
///
/// Plaintext connections read nothing ahead: HTTP/2 asks for what its frame buffer has room
/// for, sometimes little, and the rest of a 64 KiB read-ahead was then copied out of the buffer
/// on the next read (0.40 GB in a plaintext launched LeNet run, with no fewer `recvfrom`s).
pub const DIRECT: usize = 20 << 10;

/// An accepted connection holding one of its listener's slots until it is dropped.
#[derive(Debug)]
pub struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Bytes read from the socket and not yet taken (`ahead[start..end]`); allocated on the
    /// first short read.
    ahead: Box<[u8]>,
    start: usize,
    end: usize,
    /// Reads at least this long bypass the buffer: [`DIRECT`] with read-ahead, else 0.
    direct: usize,
}

impl Guarded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, read_ahead: bool) -> Guarded {
        let direct = if read_ahead { DIRECT } else { 0 };
        Guarded { stream, _slot: slot, ahead: Box::default(), start: 0, end: 0, direct }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.peer_addr()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end {
            if buf.remaining() >= this.direct {
                return Pin::new(&mut this.stream).poll_read(cx, buf);
            }
            if this.ahead.is_empty() {
                this.ahead = vec![0; READ_AHEAD].into_boxed_slice();
            }
            let mut fill = ReadBuf::new(&mut this.ahead);
            std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, &mut fill))?;
            (this.start, this.end) = (0, fill.filled().len());
        }
        let n = buf.remaining().min(this.end - this.start);
        buf.put_slice(&this.ahead[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

/// Whether an accept error means the process (or system) is out of a resource: wait, then
/// accept again.
fn exhausted(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12)) || e.kind() == io::ErrorKind::OutOfMemory
}

/// The connections `listener` accepts, at most `limits.max_connections` held at once; `what`
/// names the server in the log. With `read_ahead` (for TLS servers), reads shorter than
/// [`DIRECT`] are served from a [`READ_AHEAD`] buffer. The accept loop runs on a task of the
/// current runtime and ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
    what: &'static str,
    read_ahead: bool,
) -> ReceiverStream<Result<Guarded, io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut refused_logged: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    stream
                }
                Err(e) if exhausted(&e) => {
                    tracing::warn!(server = what, "accepting connections: {e}; waiting {backoff:?}");
                    ACCEPT_WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(server = what, "accept: {e}");
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                if refused_logged.is_none_or(|t| t.elapsed().as_secs() >= 1) {
                    tracing::warn!(
                        server = what,
                        limit = limits.max_connections,
                        "connection refused: too many connections"
                    );
                    refused_logged = Some(Instant::now());
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            if tx.send(Ok(Guarded::new(stream, slot, read_ahead))).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Short reads come from the read-ahead buffer, long ones from the socket; either way the
    /// bytes arrive exactly, in order, then the end of the stream.
    #[tokio::test]
    async fn reads_short_and_long_return_the_bytes_in_order_then_the_end() {
        for read_ahead in [true, false] {
            reads_in_order(read_ahead).await;
        }
    }

    async fn reads_in_order(read_ahead: bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let data = sent.clone();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for part in data.chunks(50_000) {
                s.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (stream, _) = listener.accept().await.unwrap();
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut conn = Guarded::new(stream, slot, read_ahead);
        let mut got = Vec::new();
        let sizes = [4096, READ_AHEAD + 1, 1, DIRECT - 1, DIRECT, 17_000, 2 * READ_AHEAD];
        for k in 0.. {
            let mut buf = vec![0u8; sizes[k % sizes.len()]];
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the bytes arrive unchanged and in order (read-ahead {read_ahead})");
        assert_eq!(conn.ahead.len(), if read_ahead { READ_AHEAD } else { 0 }, "buffer only with read-ahead");
    }
}
