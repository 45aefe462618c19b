//! A request guard in front of protobuf decoding. Decoding a message of a million tiny
//! strings costs a million allocations before any validation can refuse it, so the server's
//! codec first walks the wire bytes (no allocation) with the descriptor set and counts the
//! entries of every repeated field and map. A field with more than [`MAX_REPEATED_ENTRIES`]
//! (ten times the largest documented cap) is refused INVALID_ARGUMENT at once, in the same
//! shape as the services' own validation. Messages the descriptor set does not know, and
//! malformed bytes, are left to prost.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::Message;
use prost::bytes::Buf;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Entries a repeated field or map of a request may hold before it is refused undecoded.
/// Every documented cap is far below (the largest is 100).
pub const MAX_REPEATED_ENTRIES: usize = 1_000;

/// How deep nested messages are followed (requests nest two or three levels).
const MAX_DEPTH: usize = 16;

struct FieldShape {
    name: String,
    repeated: bool,
    /// Full name of a message-typed field's message (map entries excluded: never followed).
    message: Option<String>,
}

type Schema = HashMap<String, HashMap<u32, FieldShape>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = Schema::new();
        let Ok(set) = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET) else {
            return schema;
        };
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                add_message(&mut schema, package, message);
            }
        }
        schema
    })
}

fn add_message(schema: &mut Schema, scope: &str, message: &DescriptorProto) {
    let full_name = if scope.is_empty() {
        message.name().to_owned()
    } else {
        format!("{scope}.{}", message.name())
    };
    let map_entries: Vec<String> = message
        .nested_type
        .iter()
        .filter(|nested| nested.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|nested| format!(".{full_name}.{}", nested.name()))
        .collect();
    let fields = message
        .field
        .iter()
        .map(|field| {
            let type_name = field.type_name();
            let message = (field.r#type() == Type::Message
                && !map_entries.iter().any(|entry| entry == type_name))
            .then(|| type_name.trim_start_matches('.').to_owned());
            let shape = FieldShape {
                name: field.name().to_owned(),
                repeated: field.label() == Label::Repeated,
                message,
            };
            (u32::try_from(field.number()).unwrap_or(0), shape)
        })
        .collect();
    schema.insert(full_name.clone(), fields);
    for nested in &message.nested_type {
        add_message(schema, &full_name, nested);
    }
}

/// A repeated field or map over the limit: its path and the limit it passed.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyEntries {
    pub field: String,
    pub limit: usize,
}

/// The first repeated field or map of `message` (a full name such as
/// `disputes.v1.ListEventsRequest`) found holding more than `limit` entries in `bytes`, its
/// wire form; the walk stops there, so its cost is bounded by the limit, not the request.
/// `None` when none does, when the message is unknown or the bytes are malformed.
pub fn too_many_entries(message: &str, bytes: &[u8], limit: usize) -> Option<TooManyEntries> {
    scan(schema(), message, bytes, limit, "", 0)
}

fn scan(
    schema: &Schema,
    message: &str,
    mut bytes: &[u8],
    limit: usize,
    path: &str,
    depth: usize,
) -> Option<TooManyEntries> {
    let fields = schema.get(message)?;
    if depth > MAX_DEPTH {
        return None;
    }
    let mut counts: HashMap<u32, usize> = HashMap::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).ok()?;
        let payload = match key & 7 {
            0 => {
                read_varint(&mut bytes)?;
                None
            }
            1 => Some(take(&mut bytes, 8)?),
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                Some(take(&mut bytes, len)?)
            }
            5 => Some(take(&mut bytes, 4)?),
            _ => return None,
        };
        let Some(field) = fields.get(&number) else {
            continue;
        };
        if field.repeated {
            let count = counts.entry(number).or_default();
            *count += 1;
            if *count > limit {
                return Some(TooManyEntries {
                    field: join(path, &field.name),
                    limit,
                });
            }
        }
        if let (Some(inner), Some(payload)) = (&field.message, payload) {
            let inner_path = join(path, &field.name);
            if let Some(hit) = scan(schema, inner, payload, limit, &inner_path, depth + 1) {
                return Some(hit);
            }
        }
    }
    None
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        return None;
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(head)
}

/// The protobuf full name of a generated request type, from its Rust path
/// (`disputes_proto::disputes::v1::ListEventsRequest` → `disputes.v1.ListEventsRequest`).
fn full_name<U>() -> String {
    let path = std::any::type_name::<U>();
    let parts: Vec<&str> = path.split("::").collect();
    match parts.as_slice() {
        [.., package, version, name] => format!("{package}.{version}.{name}"),
        _ => path.to_owned(),
    }
}

/// The INVALID_ARGUMENT the services' validation answers, for one field.
fn refusal(message_name: &str, hit: &TooManyEntries) -> Status {
    let domain = message_name
        .rsplit_once('.')
        .map_or(message_name, |(package, _)| package);
    let mut details = ErrorDetails::with_bad_request(vec![FieldViolation::new(
        hit.field.clone(),
        format!(
            "holds more than {} items, far more than its limit (docs/api.md, Limits)",
            hit.limit
        ),
    )]);
    details.set_error_info(
        "INVALID_ARGUMENT",
        domain,
        [("violations".to_owned(), "1".to_owned())],
    );
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid request: {}", hit.field),
        details,
    )
}

/// The codec of every generated service and client: prost's, with the guard before a
/// request is decoded.
#[derive(Debug, Clone)]
pub struct GuardedCodec<T, U> {
    inner: tonic_prost::ProstCodec<T, U>,
}

impl<T, U> Default for GuardedCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: tonic_prost::ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for GuardedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = GuardedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        // Once per call, not per message of a stream.
        let name = full_name::<U>();
        GuardedDecoder {
            inner: self.inner.decoder(),
            checked_request: name.ends_with("Request").then_some(name),
            _message: PhantomData,
        }
    }
}

/// Decodes `U` after checking its repeated fields (requests only: answers are ours).
#[derive(Debug, Clone)]
pub struct GuardedDecoder<U> {
    inner: tonic_prost::ProstDecoder<U>,
    /// The message's full name when it is a request (the guard checks only those).
    checked_request: Option<String>,
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for GuardedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if let Some(name) = &self.checked_request {
            // A gRPC message arrives whole in one contiguous buffer.
            let bytes = buf.chunk();
            if bytes.len() == buf.remaining()
                && let Some(hit) = too_many_entries(name, bytes, MAX_REPEATED_ENTRIES)
            {
                buf.advance(buf.remaining());
                return Err(refusal(name, &hit));
            }
        }
        self.inner.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disputes_v1 as pb;

    #[test]
    fn names_follow_the_generated_paths() {
        assert_eq!(
            full_name::<pb::ListEventsRequest>(),
            "disputes.v1.ListEventsRequest"
        );
        assert!(schema().contains_key("disputes.v1.ListEventsRequest"));
    }

    #[test]
    fn a_field_over_the_limit_is_named() {
        let request = pb::ListEventsRequest {
            types: vec!["\0".to_owned(); 1_001],
            ..Default::default()
        };
        let hit = too_many_entries(
            "disputes.v1.ListEventsRequest",
            &request.encode_to_vec(),
            1_000,
        );
        assert_eq!(
            hit,
            Some(TooManyEntries {
                field: "types".into(),
                limit: 1_000
            })
        );
        let within = pb::ListEventsRequest {
            types: vec!["x".to_owned(); 1_000],
            ..Default::default()
        };
        assert_eq!(
            too_many_entries(
                "disputes.v1.ListEventsRequest",
                &within.encode_to_vec(),
                1_000
            ),
            None
        );
    }

    #[test]
    fn maps_in_nested_messages_are_counted_with_their_path() {
        let request = pb::RecordNetworkEventRequest {
            new_case: Some(pb::CreateDisputeRequest {
                metadata: (0..20).map(|i| (format!("k{i}"), String::new())).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let hit = too_many_entries(
            "disputes.v1.RecordNetworkEventRequest",
            &request.encode_to_vec(),
            10,
        );
        assert_eq!(
            hit,
            Some(TooManyEntries {
                field: "new_case.metadata".into(),
                limit: 10
            })
        );
    }

    #[test]
    fn text_that_looks_like_fields_is_not_followed() {
        // A string field is never scanned as a message, whatever its bytes.
        let request = pb::ListEventsRequest {
            dispute_id: "a".repeat(100_000),
            ..Default::default()
        };
        assert_eq!(
            too_many_entries(
                "disputes.v1.ListEventsRequest",
                &request.encode_to_vec(),
                10
            ),
            None
        );
    }

    #[test]
    fn malformed_bytes_are_left_to_prost() {
        assert_eq!(
            too_many_entries("disputes.v1.ListEventsRequest", &[0x0a, 0xff], 10),
            None
        );
    }
}
