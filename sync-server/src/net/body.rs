//! A request body with a deadline: the whole body must arrive within the
//! body timeout, however slowly its bytes trickle in. Past the deadline
//! reading fails with [`BodyTimedOut`] (the API answers 408 and the
//! connection is closed). While the body is incomplete the connection
//! counts as evictable ([`super::registry`]).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::registry::Counted;

/// The request body did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// [`Incoming`] with a deadline.
pub struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Held while the body is incomplete.
    receiving: Option<Counted>,
    on_timeout: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl DeadlineBody {
    /// `inner` must be complete within `timeout` from now; `receiving`
    /// marks the connection as still receiving until then, and
    /// `on_timeout` runs once if the deadline passes.
    pub fn new(
        inner: Incoming,
        timeout: Duration,
        receiving: Counted,
        on_timeout: impl FnOnce() + Send + Sync + 'static,
    ) -> Self {
        let receiving = (!inner.is_end_stream()).then_some(receiving);
        DeadlineBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            receiving,
            on_timeout: Some(Box::new(on_timeout)),
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.receiving.is_none() && this.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.receiving = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.receiving = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.receiving = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.receiving = None;
                if let Some(report) = this.on_timeout.take() {
                    report();
                }
                Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
