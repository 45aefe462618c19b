//! Counts an upload's request body bytes as HTTP/2 delivers them, for the minimum data rate:
//! chunk messages arrive whole, so a client sending 1 MiB chunks on a slow link would look
//! idle between messages while its bytes flow. The count rides in the request's extensions.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use tonic::body::Body as TonicBody;
use tonic::server::NamedService;
use tower::Service;

use crate::app::upload::ReceivedBytes;

const UPLOAD_PATH: &str = "/documents.v1.DocumentService/UploadDocument";

/// Wraps the service: UploadDocument's request body is counted into a [`ReceivedBytes`] in
/// its extensions; other calls pass untouched.
#[derive(Clone, Debug)]
pub struct CountUploadBytes<S> {
    inner: S,
}

impl<S> CountUploadBytes<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: NamedService> NamedService for CountUploadBytes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<TonicBody>> for CountUploadBytes<S>
where
    S: Service<http::Request<TonicBody>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<TonicBody>) -> Self::Future {
        if request.uri().path() != UPLOAD_PATH {
            return self.inner.call(request);
        }
        let received = ReceivedBytes::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(received.clone());
        let body = TonicBody::new(CountingBody {
            inner: body,
            received,
        });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// A request body that adds the length of each data frame to `received`.
struct CountingBody {
    inner: TonicBody,
    received: ReceivedBytes,
}

impl Body for CountingBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.received.add(data.len() as u64);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
