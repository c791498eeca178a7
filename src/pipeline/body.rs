//! Body types of the pipeline: one boxed streaming body for responses, and
//! a request body that enforces a route's size limit while streaming.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// The error a [`LimitedBody`] ends with.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body exceeds the route's limit")
    }
}

impl std::error::Error for BodyTooLarge {}

pin_project_lite::pin_project! {
    /// Streams a body through, failing once more than `remaining` bytes
    /// have passed. `exceeded` is set so the caller can respond with 413
    /// rather than report an upstream failure, and `read_failed` is set when
    /// the client's body itself fails (invalid chunked framing, or the client
    /// closed the connection before the end), so the caller can respond with 400.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        exceeded: Arc<AtomicBool>,
        read_failed: Arc<AtomicBool>,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(
        inner: B,
        limit: u64,
        exceeded: Arc<AtomicBool>,
        read_failed: Arc<AtomicBool>,
    ) -> Self {
        LimitedBody {
            inner,
            remaining: limit,
            exceeded,
            read_failed,
        }
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let length = data.len() as u64;
                    if length > *this.remaining {
                        this.exceeded.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= length;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.read_failed.store(true, Ordering::Release);
                Poll::Ready(Some(Err(error.into())))
            }
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a response body with the concurrency slots its request holds, so
/// they are given back only when the body has been sent or dropped (a
/// client that disconnects mid-response drops it).
pub fn holding(body: Body, leases: Vec<crate::ratelimit::concurrency::Lease>) -> Body {
    if leases.is_empty() {
        return body;
    }
    Holding {
        inner: body,
        _leases: leases,
    }
    .boxed()
}

pin_project_lite::pin_project! {
    struct Holding {
        #[pin]
        inner: Body,
        _leases: Vec<crate::ratelimit::concurrency::Lease>,
    }
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read up to a limit: whole, or cut off where it went over.
pub enum Collected {
    Complete(Bytes),
    /// More than the limit arrived. `prefix` holds the bytes read so far and
    /// `rest` the unread remainder, so the body can still be sent on whole.
    TooLarge {
        prefix: Bytes,
        rest: Body,
    },
}

/// Reads `body` until it ends or more than `limit` bytes arrived, so that
/// at most `limit` bytes plus one frame are ever buffered. Trailers are
/// dropped.
pub async fn collect_limited(mut body: Body, limit: u64) -> Result<Collected, BoxError> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        if buffer.len() as u64 > limit {
            return Ok(Collected::TooLarge {
                prefix: buffer.freeze(),
                rest: body,
            });
        }
    }
    Ok(Collected::Complete(buffer.freeze()))
}

/// Builds a body that sends `prefix` and then streams `rest`.
pub fn prefixed(prefix: Bytes, rest: Body) -> Body {
    Prefixed {
        prefix: Some(prefix).filter(|p| !p.is_empty()),
        rest,
    }
    .boxed()
}

pin_project_lite::pin_project! {
    struct Prefixed {
        prefix: Option<Bytes>,
        #[pin]
        rest: Body,
    }
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + extra);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}
