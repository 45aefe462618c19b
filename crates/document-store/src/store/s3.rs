//! Bytes in S3-compatible object storage through aws-sdk-s3.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use service_kit::dependency::{Dependency, DependencyUnavailable};

/// How aws-sdk-s3 computes request checksums. `WhenSupported` (the SDK default) sends
/// streaming bodies as signed aws-chunked with a trailing CRC32, which some S3-compatible
/// servers reject; `WhenRequired` sends plain bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksumMode {
    WhenSupported,
    WhenRequired,
}

/// Connection settings for the object store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub force_path_style: bool,
    pub checksum_mode: ChecksumMode,
    pub timeouts: S3Timeouts,
}

/// Bounds on every S3 call, so a stalled or black-holed endpoint answers UNAVAILABLE instead
/// of holding the call.
#[derive(Debug, Clone)]
pub struct S3Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// One attempt of an operation, including sending a part's body.
    pub operation_attempt: Duration,
    /// The whole operation, retries included.
    pub operation: Duration,
    /// Attempts per operation (standard retry with backoff; 1 = no retry).
    pub max_attempts: u32,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            operation_attempt: Duration::from_secs(60),
            operation: Duration::from_secs(120),
            max_attempts: 3,
        }
    }
}

/// The bucket documents live in.
#[derive(Clone)]
pub struct ObjectStore {
    client: Client,
    bucket: String,
}

/// Builds the service's S3 client: signed with the configured static keys, or, when no
/// access key is configured, with the AWS SDK's default credential chain (environment,
/// web identity as with IRSA, ECS/EKS container credentials, instance metadata).
pub async fn connect_client(settings: &S3Settings) -> Client {
    if !settings.access_key_id.is_empty() {
        return build_client(settings);
    }
    let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .region(Region::new(settings.region.clone()))
        .build()
        .await;
    client_with(settings, SharedCredentialsProvider::new(chain))
}

/// Builds an S3 client with the configured static keys (no ambient AWS config).
pub fn build_client(settings: &S3Settings) -> Client {
    let credentials = Credentials::new(
        settings.access_key_id.clone(),
        settings.secret_access_key.expose_secret().to_owned(),
        None,
        None,
        "document-store-config",
    );
    client_with(settings, SharedCredentialsProvider::new(credentials))
}

fn client_with(settings: &S3Settings, credentials: SharedCredentialsProvider) -> Client {
    let (request_checksums, response_checksums) = match settings.checksum_mode {
        ChecksumMode::WhenSupported => (
            RequestChecksumCalculation::WhenSupported,
            ResponseChecksumValidation::WhenSupported,
        ),
        ChecksumMode::WhenRequired => (
            RequestChecksumCalculation::WhenRequired,
            ResponseChecksumValidation::WhenRequired,
        ),
    };
    let mut config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(settings.force_path_style)
        .request_checksum_calculation(request_checksums)
        .response_checksum_validation(response_checksums)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.timeouts.connect)
                .operation_attempt_timeout(settings.timeouts.operation_attempt)
                .operation_timeout(settings.timeouts.operation)
                .build(),
        )
        .retry_config(
            RetryConfig::standard().with_max_attempts(settings.timeouts.max_attempts.max(1)),
        );
    // No endpoint: AWS S3 itself, the SDK's regional endpoint.
    if !settings.endpoint.is_empty() {
        config = config.endpoint_url(settings.endpoint.clone());
    }
    Client::from_conf(config.build())
}

/// How long a CompleteMultipartUpload that found its upload gone waits for a concurrent
/// completion (an earlier attempt still assembling the object) before giving up.
const COMPLETION_SETTLE: Duration = Duration::from_millis(500);

/// An SDK error as `anyhow`, marked [`DependencyUnavailable`] when S3 is down, slow or
/// failing on its side (timeouts, connection failures, unreadable responses, 5xx and 429),
/// so the client gets a retryable UNAVAILABLE. 4xx answers stay plain errors (a bug or a
/// misconfiguration: INTERNAL).
fn storage_error<E>(error: SdkError<E>, operation: &'static str) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status();
            status.is_server_error() || status.as_u16() == 429
        }
        _ => false,
    };
    let error = anyhow::Error::new(error).context(operation);
    if transient {
        DependencyUnavailable::new(Dependency::Storage, error).into()
    } else {
        error
    }
}

impl ObjectStore {
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    /// Creates the bucket unless it exists (local development).
    pub async fn ensure_bucket(&self) -> anyhow::Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| storage_error(e, "create bucket"))?;
        Ok(())
    }

    /// Fails unless the bucket is reachable; checked at start-up.
    pub async fn check_bucket(&self) -> anyhow::Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| storage_error(e, "head bucket"))
            .with_context(|| format!("bucket {} is not reachable", self.bucket))?;
        Ok(())
    }

    pub async fn put_object(&self, key: &str, body: Bytes) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| storage_error(e, "put object"))?;
        Ok(())
    }

    /// One CreateMultipartUpload attempt, without the SDK's retries: an attempt whose answer
    /// is lost may still have opened an upload on the server, which a blind retry would leave
    /// behind for good. The caller retries after [`ObjectStore::abort_open_multipart_uploads`].
    pub async fn create_multipart_upload_once(&self, key: &str) -> anyhow::Result<String> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .customize()
            .config_override(aws_sdk_s3::Config::builder().retry_config(RetryConfig::disabled()))
            .send()
            .await
            .map_err(|e| storage_error(e, "create multipart upload"))?;
        output
            .upload_id
            .context("create multipart upload returned no upload id")
    }

    /// Aborts every multipart upload open on `key` (object keys are unique per document, so
    /// all of them belong to the one upload that owns the key).
    pub async fn abort_open_multipart_uploads(&self, key: &str) -> anyhow::Result<()> {
        for upload_id in self.list_multipart_uploads(key).await? {
            self.abort_multipart_upload(key, &upload_id).await?;
        }
        Ok(())
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> anyhow::Result<CompletedPart> {
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| storage_error(e, "upload part"))
            .with_context(|| format!("upload part {part_number}"))?;
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(output.e_tag)
            .set_checksum_crc32(output.checksum_crc32)
            .build())
    }

    /// Completes the upload of `expected_size` bytes as the object `key`.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<CompletedPart>,
        expected_size: u64,
    ) -> anyhow::Result<()> {
        parts.sort_by_key(|p| p.part_number);
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            // The server no longer knows the upload (S3 answers NoSuchUpload, s3s-fs
            // AccessDenied). The upload was ours and open, so an earlier attempt whose answer
            // was lost (the SDK retried) completed it or is completing it right now: done if
            // the object is there with the size we sent (the key belongs to this document
            // alone), else the outcome is unknown, which is storage trouble, not a bug.
            Err(SdkError::ServiceError(service)) if service.raw().status().is_client_error() => {
                let code = service.err().code().map(str::to_owned);
                for wait in [Duration::ZERO, COMPLETION_SETTLE] {
                    tokio::time::sleep(wait).await;
                    if self.stored_size(key).await? == Some(expected_size) {
                        tracing::info!(
                            key,
                            code,
                            "multipart upload completed by an attempt whose answer was lost"
                        );
                        return Ok(());
                    }
                }
                Err(DependencyUnavailable::new(
                    Dependency::Storage,
                    anyhow::Error::new(SdkError::ServiceError(service)).context(
                        "complete multipart upload: the upload is gone, the object is not there",
                    ),
                )
                .into())
            }
            Err(error) => Err(storage_error(error, "complete multipart upload")),
        }
    }

    /// The size of the object stored under `key`, `None` when there is none.
    pub async fn stored_size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(SdkError::ServiceError(service)) if service.err().is_not_found() => Ok(None),
            Err(error) => Err(storage_error(error, "head object")),
        }
    }

    /// Aborts the upload; an upload that is already gone counts as aborted.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> anyhow::Result<()> {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => Ok(()),
            // The server no longer knows the upload (S3 answers NoSuchUpload, s3s-fs
            // AccessDenied): an earlier attempt whose answer was lost (the SDK retried)
            // aborted it. Done if the upload is no longer listed on the key; a refusal of an
            // upload still open (permissions) stays an error.
            Err(SdkError::ServiceError(service)) if service.raw().status().is_client_error() => {
                if self
                    .list_multipart_uploads(key)
                    .await?
                    .iter()
                    .any(|open| open == upload_id)
                {
                    return Err(anyhow::Error::new(SdkError::ServiceError(service))
                        .context("abort multipart upload"));
                }
                tracing::info!(
                    key,
                    code = service.err().code(),
                    "multipart upload already aborted by an attempt whose answer was lost"
                );
                Ok(())
            }
            Err(error) => Err(storage_error(error, "abort multipart upload")),
        }
    }

    pub async fn delete_object(&self, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| storage_error(e, "delete object"))?;
        Ok(())
    }

    /// Opens the object (or a range of it) as a byte stream.
    pub async fn get_object(&self, key: &str, range: Option<String>) -> anyhow::Result<ByteStream> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .send()
            .await
            .map_err(|e| storage_error(e, "get object"))?;
        Ok(output.body)
    }
    /// The ids of the multipart uploads still open on exactly `key` (the listing is by
    /// prefix; uploads of longer keys are left out).
    pub async fn list_multipart_uploads(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let mut upload_ids = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        loop {
            let output = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(|e| storage_error(e, "list multipart uploads"))?;
            for upload in output.uploads() {
                if upload.key() == Some(key)
                    && let Some(upload_id) = upload.upload_id()
                {
                    upload_ids.push(upload_id.to_owned());
                }
            }
            if output.is_truncated() != Some(true) {
                return Ok(upload_ids);
            }
            key_marker = output.next_key_marker().map(str::to_owned);
            upload_id_marker = output.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && upload_id_marker.is_none() {
                return Ok(upload_ids);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::operation::delete_object::DeleteObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use service_kit::dependency::unavailable_dependency;

    use super::*;

    fn service_error(status: u16) -> anyhow::Error {
        let error = SdkError::service_error(
            DeleteObjectError::generic(ErrorMetadata::builder().code("Whatever").build()),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        );
        storage_error(error, "delete object")
    }

    #[test]
    fn server_errors_and_throttling_are_storage_unavailable() {
        for status in [500, 503, 429] {
            assert_eq!(
                unavailable_dependency(&service_error(status)),
                Some(Dependency::Storage),
                "{status}"
            );
        }
    }

    #[test]
    fn client_errors_are_not() {
        for status in [400, 403, 404] {
            assert_eq!(
                unavailable_dependency(&service_error(status)),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn timeouts_are_storage_unavailable() {
        let error: SdkError<DeleteObjectError> = SdkError::timeout_error("attempt timed out");
        assert_eq!(
            unavailable_dependency(&storage_error(error, "delete object")),
            Some(Dependency::Storage)
        );
    }
}
