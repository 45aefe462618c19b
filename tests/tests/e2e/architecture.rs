//! The layering rules of docs/architecture in README, checked on the source: the pure domain
//! of each service imports no transport, storage or runtime crate.

use std::path::{Path, PathBuf};

/// Crates (and service-kit modules) that the domain must not use.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "tonic",
    "tonic_types",
    "prost",
    "prost_types",
    "sqlx",
    "aws_sdk_s3",
    "aws_smithy_types",
    "tokio",
    "disputes_proto",
    "service_kit::errors",
    "service_kit::auth",
    "service_kit::server",
    "service_kit::database",
    "service_kit::propagation",
    "service_kit::telemetry",
    "service_kit::time",
    "service_kit::worker",
    "crate::grpc",
    "crate::store",
    "crate::app",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Paths a file refers to: `use` lines and fully qualified `a::b` mentions.
fn mentions(source: &str, forbidden: &str) -> bool {
    source.lines().any(|line| {
        let code = line.split("//").next().unwrap_or_default();
        code.match_indices(forbidden).any(|(at, _)| {
            let before = code[..at].chars().last();
            let after = code[at + forbidden.len()..].chars().next();
            let starts_path = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
            starts_path
                && matches!(after, Some(':') | Some(';') | Some(' ') | Some('}') | None)
                && (code.contains("use ") || code[at + forbidden.len()..].starts_with("::"))
        })
    })
}

#[test]
fn the_domain_of_each_service_is_pure() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offences = Vec::new();
    for service in ["dispute-core", "document-store"] {
        let mut files = Vec::new();
        rust_files(
            &workspace.join("crates").join(service).join("src/domain"),
            &mut files,
        );
        assert!(!files.is_empty(), "{service} has a domain folder");
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for forbidden in FORBIDDEN_IN_DOMAIN {
                if mentions(&source, forbidden) {
                    offences.push(format!("{} uses {forbidden}", file.display()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "domain imports: {offences:#?}");
}

#[test]
fn the_purity_check_sees_imports() {
    assert!(mentions("use tonic::Status;", "tonic"));
    assert!(mentions("let s = sqlx::query(\"x\");", "sqlx"));
    assert!(mentions("use crate::store::postgres;", "crate::store"));
    assert!(!mentions(
        "use service_kit::violation::Violation;",
        "service_kit::errors"
    ));
    assert!(!mentions(
        "// tonic::Status is mapped in grpc/status.rs",
        "tonic"
    ));
    assert!(!mentions("let tonicity = 1;", "tonic"));
}
