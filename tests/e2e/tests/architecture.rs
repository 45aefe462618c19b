//! The layering rules of docs/architecture in README, checked on the source: the pure domain
//! of each service imports no transport, storage or runtime crate.

use std::path::{Path, PathBuf};

/// Crates and modules that the domain must not use.
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
    // The pure types the domains use live in domain-kit; nothing of service-kit is pure.
    "service_kit",
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
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
        "use domain_kit::violation::Violation;",
        "service_kit::errors"
    ));
    assert!(!mentions(
        "// tonic::Status is mapped in grpc/status.rs",
        "tonic"
    ));
    assert!(!mentions("let tonicity = 1;", "tonic"));
}

#[test]
fn the_domain_kit_depends_on_no_transport_storage_or_runtime_crate() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/domain-kit/Cargo.toml");
    let manifest = std::fs::read_to_string(manifest).unwrap();
    let dependencies: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|line| line.split('.').next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#') && !name.starts_with('['))
        .collect();
    assert!(
        !dependencies.is_empty(),
        "domain-kit lists its dependencies"
    );
    for dependency in dependencies {
        let crate_name = dependency.replace('-', "_");
        assert!(
            !FORBIDDEN_IN_DOMAIN.contains(&crate_name.as_str()) && crate_name != "disputes_proto",
            "domain-kit depends on {dependency}"
        );
    }
}

/// Every transaction of both services begins through `service_kit::database::begin`, so a
/// cancelled caller cannot leave a pooled connection inside an abandoned transaction (its
/// doc comment says why): no service source calls `.begin()` on a pool itself.
#[test]
fn transactions_begin_through_the_cancel_safe_helper() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut offences = Vec::new();
    for service in ["dispute-core", "document-store"] {
        let mut files = Vec::new();
        rust_files(
            &workspace.join("crates").join(service).join("src"),
            &mut files,
        );
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for (number, line) in source.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code.contains("pool.begin()") {
                    offences.push(format!("{}:{}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "use service_kit::database::begin: {offences:#?}"
    );
}
