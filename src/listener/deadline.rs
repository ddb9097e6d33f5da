//! A connection's clock: the deadline its reads are held to, set by where it stands in the
//! request cycle, and the transport wrapper that enforces it.
//!
//! | phase | starts | reads must come by |
//! |---|---|---|
//! | `Reading` | at accept, or at the first byte of a later request | the request's deadline (head and body, and the TLS handshake on a new connection) |
//! | `Handling` | when the handler has read the whole body (with the head, for a request without one) | no deadline: the handler is working |
//! | `Idle` | when the handler has answered a request that arrived in full | the idle deadline (a kept-alive connection waiting for its next request) |
//!
//! Writes are held to their own clock: a write the client does not take for `write_timeout`
//! cuts the connection, so a client that never reads its answer cannot hold it open.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::ConnectionMetrics;

/// Where a connection stands in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request (or the TLS handshake before the first one) is arriving.
    Reading { deadline: Instant },
    /// The handler has the whole request and works on it.
    Handling,
    /// The answer is out; the connection waits for the next request.
    Idle { deadline: Instant },
}

/// The clock of one connection, shared by its transport and its handler.
#[derive(Debug)]
pub(super) struct Clock {
    phase: Mutex<Phase>,
    request_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Clock {
    /// A clock for a connection accepted now: its first request is due within
    /// `request_read_timeout`.
    pub(super) fn start(request_read_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Reading {
                deadline: Instant::now() + request_read_timeout,
            }),
            request_read_timeout,
            idle_timeout,
        })
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: on an idle connection they start the next request's clock.
    fn bytes_arrived(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*phase, Phase::Idle { .. }) {
            *phase = Phase::Reading {
                deadline: Instant::now() + self.request_read_timeout,
            };
        }
    }

    /// The whole request body has arrived: the handler's time is not the client's.
    pub(super) fn body_read(&self) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Handling;
    }

    /// The handler has answered: the connection may now sit idle until its idle deadline.
    /// A body the handler left unread keeps the request's deadline (hyper drains what has
    /// arrived of it or closes the connection).
    pub(super) fn answered(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Handling {
            *phase = Phase::Idle {
                deadline: Instant::now() + self.idle_timeout,
            };
        }
    }
}

/// A transport (TCP, below TLS) whose reads are held to its connection's [`Clock`] and whose
/// writes may stall at most `write_timeout`.
pub(super) struct DeadlineIo<T> {
    inner: T,
    clock: Arc<Clock>,
    write_timeout: Duration,
    metrics: ConnectionMetrics,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    /// A write is blocked and `write_timer` runs for it.
    write_blocked: bool,
    /// A deadline passed: every later read and write fails (or ends) for this reason.
    expired: Option<Expiry>,
}

impl<T> DeadlineIo<T> {
    /// Wraps `inner`, held to `clock`.
    pub(super) fn new(
        inner: T,
        clock: Arc<Clock>,
        write_timeout: Duration,
        metrics: ConnectionMetrics,
    ) -> Self {
        let far = Instant::now() + Duration::from_secs(86_400);
        Self {
            inner,
            clock,
            write_timeout,
            metrics,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_blocked: false,
            expired: None,
        }
    }

    /// Marks the connection expired (counted once) and says what reads and writes see now.
    fn expire(&mut self, why: Expiry) -> io::Result<()> {
        if self.expired.is_none() {
            self.expired = Some(why);
            self.metrics.timed_out(why.label());
        }
        match why {
            // An idle connection that ran out of time ends like one the client closed.
            Expiry::Idle => Ok(()),
            Expiry::Request => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request did not arrive within the request read timeout",
            )),
            Expiry::Write => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take the answer within the write timeout",
            )),
        }
    }

    /// Polls the timer of a blocked write; the error to return once it has run out.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.write_blocked {
            self.write_blocked = true;
            let deadline = Instant::now() + self.write_timeout;
            self.write_timer.as_mut().reset(deadline);
        }
        ready!(self.write_timer.as_mut().poll(cx));
        let err = self.expire(Expiry::Write).err();
        Poll::Ready(err.unwrap_or_else(|| io::Error::from(io::ErrorKind::TimedOut)))
    }
}

/// Why a connection's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A request (or the TLS handshake) did not arrive in time.
    Request,
    /// A kept-alive connection sent nothing for the idle timeout.
    Idle,
    /// The client did not take the answer.
    Write,
}

impl Expiry {
    /// The metric label.
    fn label(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Idle => "idle",
            Self::Write => "write",
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(why) = this.expired {
            return Poll::Ready(this.expire(why));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let (deadline, why) = match this.clock.phase() {
                    Phase::Reading { deadline } => (deadline, Expiry::Request),
                    Phase::Idle { deadline } => (deadline, Expiry::Idle),
                    Phase::Handling => return Poll::Pending,
                };
                if this.read_timer.deadline() != deadline {
                    this.read_timer.as_mut().reset(deadline);
                }
                ready!(this.read_timer.as_mut().poll(cx));
                Poll::Ready(this.expire(why))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_blocked = false;
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_write_stall(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.write_blocked = false;
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_write_stall(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.write_blocked = false;
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_write_stall(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.poll_write_stall(cx).map(Err),
        }
    }
}

/// A request body that tells its connection's [`Clock`] when it has arrived in full.
pub struct RequestBody {
    inner: Incoming,
    clock: Arc<Clock>,
}

impl RequestBody {
    /// Wraps `inner`; a request without a body has arrived in full with its head.
    pub(super) fn new(inner: Incoming, clock: Arc<Clock>) -> Self {
        if inner.is_end_stream() {
            clock.body_read();
        }
        Self { inner, clock }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.clock.body_read();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
