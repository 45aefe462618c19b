//! Generated tonic/prost code for `disputes.v1` and `documents.v1`, plus the encoded
//! descriptor set for server reflection.

#![allow(clippy::all, clippy::unwrap_used)]

pub mod disputes {
    pub mod v1 {
        tonic::include_proto!("disputes.v1");
    }
}

pub mod documents {
    pub mod v1 {
        tonic::include_proto!("documents.v1");
    }
}

pub mod guard;

pub use disputes::v1 as disputes_v1;
pub use documents::v1 as documents_v1;

/// Encoded `FileDescriptorSet` of every proto in `proto/` (and the well-known types they use).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor_set");
