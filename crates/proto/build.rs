//! Compiles `proto/` with protox (pure Rust, no system protoc) and writes the descriptor
//! set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "../../proto";
const PROTO_FILES: &[&str] = &[
    "disputes/v1/dispute.proto",
    "disputes/v1/evidence.proto",
    "disputes/v1/dispute_service.proto",
    "disputes/v1/event.proto",
    "disputes/v1/event_service.proto",
    "documents/v1/document.proto",
    "documents/v1/document_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write the descriptor set itself.
    std::fs::write(
        out_dir.join("descriptor_set.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // BTreeMap keeps encoding deterministic, which request fingerprints rely on.
        .btree_map(".")
        // Chunks stay zero-copy `Bytes` from the HTTP/2 frame to S3.
        .bytes(".")
        // Requests with absurdly many repeated entries are refused before decoding.
        .codec_path("crate::guard::GuardedCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
