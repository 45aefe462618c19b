//! Tokens from an identity provider: both services verify RS256, ES256 and EdDSA tokens
//! against a JWKS the test serves over HTTP with keys made in the test, follow a key
//! rotation without a restart, refuse every token outside the rules UNAUTHENTICATED, read
//! the tenant and scopes where real providers put them, and accept a tenant-less
//! background token only for the tenant it names.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use harness::jwks_server::JwksServer;
use harness::{Stack, StackOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use service_kit::auth::ACT_FOR_TENANT_HEADER;
use service_kit::config::AuthFlags;
use tonic::Code;

use crate::fixtures::error_reason;

const ISSUER: &str = "https://idp.example.test/realms/disputes";
const AUDIENCE: &str = "dispute-platform";
const TENANT: &str = "acme";
/// How long after a fetch the services may fetch the keys again for an unknown `kid`.
const MIN_REFETCH: Duration = Duration::from_millis(300);

/// A signing key of the test's identity provider.
struct TestKey {
    kid: String,
    algorithm: Algorithm,
    signing: EncodingKey,
    /// The public half as the JWKS publishes it.
    jwk: Value,
    /// The public key as PEM (SubjectPublicKeyInfo): what an attacker may try as an HMAC
    /// secret.
    public_pem: String,
}

impl TestKey {
    fn rsa(kid: &str) -> TestKey {
        let pair =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let (n, e) = rsa_public_components(pair.public_key_raw());
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
        });
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::RS256,
            signing: EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk,
            public_pem: pair.public_key_pem(),
        }
    }

    /// An EC P-256 key whose JWK has no `alg`: the services derive ES256 from kty/crv.
    fn p256(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key_raw();
        assert_eq!((point.len(), point[0]), (65, 4));
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::ES256,
            signing: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk,
            public_pem: pair.public_key_pem(),
        }
    }

    fn ed25519(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let jwk = json!({
            "kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        });
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            signing: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk,
            public_pem: pair.public_key_pem(),
        }
    }

    /// `claims` signed with this key, its `kid` in the header.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).unwrap()
    }
}

/// `n` and `e` of a DER RSAPublicKey (`SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_public_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (tag, sequence, _) = der_element(der);
    assert_eq!(tag, 0x30, "SEQUENCE");
    let (tag, n, rest) = der_element(sequence);
    assert_eq!(tag, 0x02, "INTEGER");
    let (tag, e, _) = der_element(rest);
    assert_eq!(tag, 0x02, "INTEGER");
    // DER integers carry a leading zero when the top bit is set; JWK numbers do not.
    let unsigned = |int: &[u8]| {
        let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
        int[start..].to_vec()
    };
    (unsigned(n), unsigned(e))
}

/// (tag, content, rest) of the DER element at the start of `input`.
fn der_element(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        long => {
            let count = usize::from(long & 0x7f);
            let len = input[2..2 + count]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, 2 + count)
        }
    };
    (tag, &input[header..header + len], &input[header + len..])
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What the test provider issues for a user of `TENANT`, valid for five minutes.
fn user_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "tenant": TENANT,
        "scopes": ["disputes:read", "documents:read"],
        "iat": now(),
        "exp": now() + 300,
    })
}

/// `claims` with `changes` applied (a `null` removes the claim).
fn with(mut claims: Value, changes: Value) -> Value {
    let (Some(claims_map), Some(changes)) = (claims.as_object_mut(), changes.as_object()) else {
        panic!("objects");
    };
    for (name, value) in changes {
        if value.is_null() {
            claims_map.remove(name);
        } else {
            claims_map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// Both services verifying tokens with `jwks`, the tenant and scopes read from the given
/// claims.
async fn stack_verifying(jwks: &JwksServer, tenant_claim: &str, scope_claim: &str) -> Stack {
    crate::fixtures::stack_with(StackOptions {
        auth: Some(AuthFlags {
            jwks_url: Some(jwks.url()),
            jwt_issuer: Some(ISSUER.to_owned()),
            jwt_audience: Some(AUDIENCE.to_owned()),
            jwt_tenant_claim: tenant_claim.to_owned(),
            jwt_scope_claim: scope_claim.to_owned(),
            jwt_max_lifetime_secs: 3600,
            jwks_refresh_secs: 300,
            jwks_min_refetch_ms: MIN_REFETCH.as_millis() as u64,
            ..AuthFlags::default()
        }),
        ..Default::default()
    })
    .await
}

/// The outcome of ListDisputes on dispute-core and of ListDocuments on document-store with
/// `token`: both must agree.
async fn call_both(stack: &Stack, token: &str) -> Result<(), tonic::Status> {
    let disputes = stack
        .disputes(Some(token))
        .await
        .list_disputes(dpb::ListDisputesRequest::default())
        .await
        .map(|_| ());
    let documents = stack
        .documents(Some(token))
        .await
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .map(|_| ());
    match (disputes, documents) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(a), Err(b)) => {
            assert_eq!(a.code(), b.code(), "both services agree: {a:?} / {b:?}");
            Err(a)
        }
        (a, b) => panic!("the services disagree: {a:?} / {b:?}"),
    }
}

#[track_caller]
fn assert_unauthenticated(outcome: Result<(), tonic::Status>, case: &str) {
    let status = outcome.expect_err(case);
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    assert_eq!(error_reason(&status), "UNAUTHENTICATED", "{case}");
    // The message says nothing of keys, fetches or libraries.
    let public_messages = [
        "invalid or expired token",
        "token expired",
        "token names no tenant",
        "x-act-for-tenant must be 1 to 64 characters of [A-Za-z0-9_-]",
    ];
    assert!(
        public_messages.contains(&status.message()),
        "{case}: {}",
        status.message()
    );
}

#[tokio::test]
async fn tokens_of_each_algorithm_pass_and_tokens_outside_the_rules_are_refused() {
    let (rsa, ec, ed) = (
        TestKey::rsa("rsa-1"),
        TestKey::p256("ec-1"),
        TestKey::ed25519("ed-1"),
    );
    let jwks = JwksServer::start(json!([rsa.jwk, ec.jwk, ed.jwk]))
        .await
        .unwrap();
    let stack = stack_verifying(&jwks, "tenant", "scopes").await;

    for key in [&rsa, &ec, &ed] {
        call_both(&stack, &key.sign(&user_claims()))
            .await
            .unwrap_or_else(|status| panic!("{:?} token refused: {status:?}", key.algorithm));
    }

    let stranger = TestKey::rsa("rsa-1");
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(rsa.kid.clone());
        jsonwebtoken::encode(
            &header,
            &user_claims(),
            &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
        )
        .unwrap()
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": rsa.kid}).to_string()),
        URL_SAFE_NO_PAD.encode(user_claims().to_string()),
    );
    // An RS256 token under the kid of the EC key: the key decides the algorithm.
    let wrong_family = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(ec.kid.clone());
        jsonwebtoken::encode(&header, &user_claims(), &rsa.signing).unwrap()
    };
    let refused = [
        (
            "unknown kid",
            TestKey::rsa("rsa-unknown").sign(&user_claims()),
        ),
        (
            "another key under a known kid",
            stranger.sign(&user_claims()),
        ),
        (
            "wrong issuer",
            rsa.sign(&with(
                user_claims(),
                json!({"iss": "https://evil.example.test"}),
            )),
        ),
        (
            "no issuer",
            rsa.sign(&with(user_claims(), json!({"iss": null}))),
        ),
        (
            "wrong audience",
            ec.sign(&with(
                user_claims(),
                json!({"aud": ["account", "another-api"]}),
            )),
        ),
        (
            "no audience",
            ec.sign(&with(user_claims(), json!({"aud": null}))),
        ),
        (
            "expired",
            ed.sign(&with(
                user_claims(),
                json!({"iat": now() - 600, "exp": now() - 120}),
            )),
        ),
        (
            "not yet valid",
            rsa.sign(&with(user_claims(), json!({"nbf": now() + 120}))),
        ),
        (
            "lifetime too long",
            rsa.sign(&with(user_claims(), json!({"exp": now() + 3601}))),
        ),
        (
            "issued in the future",
            rsa.sign(&with(user_claims(), json!({"iat": now() + 120}))),
        ),
        (
            "no iat",
            rsa.sign(&with(user_claims(), json!({"iat": null}))),
        ),
        (
            "no exp",
            rsa.sign(&with(user_claims(), json!({"exp": null}))),
        ),
        (
            "no sub",
            rsa.sign(&with(user_claims(), json!({"sub": null}))),
        ),
        (
            "no tenant",
            rsa.sign(&with(user_claims(), json!({"tenant": null}))),
        ),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("alg none", unsigned),
        ("algorithm of another key family", wrong_family),
    ];
    for (case, token) in refused {
        assert_unauthenticated(call_both(&stack, &token).await, case);
    }
    // Unknown kids make each service fetch at most once per minimum refetch interval.
    let unknown = TestKey::p256("ec-unknown").sign(&user_claims());
    let (fetches, started) = (jwks.fetches(), Instant::now());
    for _ in 0..10 {
        let _ = call_both(&stack, &unknown).await;
    }
    let windows = started.elapsed().as_millis() / MIN_REFETCH.as_millis() + 1;
    let fetched = jwks.fetches() - fetches;
    assert!(
        fetched as u128 <= 2 * windows,
        "{fetched} fetches for 20 calls in {windows} refetch intervals"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_used_without_a_restart_and_the_removed_one_is_refused() {
    let old = TestKey::rsa("2026-old");
    let jwks = JwksServer::start(json!([old.jwk])).await.unwrap();
    let stack = stack_verifying(&jwks, "tenant", "scopes").await;
    call_both(&stack, &old.sign(&user_claims())).await.unwrap();

    // The provider rotates: a new key, the old one removed.
    let new = TestKey::ed25519("2026-new");
    jwks.set_keys(json!([new.jwk]));
    tokio::time::sleep(MIN_REFETCH + Duration::from_millis(100)).await;
    call_both(&stack, &new.sign(&user_claims()))
        .await
        .expect("the new kid is fetched on first sight");
    assert_unauthenticated(
        call_both(&stack, &old.sign(&user_claims())).await,
        "the removed key",
    );
    stack.stop().await;
}

/// Real providers' claim layouts, each configured with the claim flags: the tenant and the
/// scopes are read where that provider puts them, and scopes elsewhere grant nothing.
#[tokio::test]
async fn the_claim_layouts_of_keycloak_okta_and_auth0_are_understood() {
    let key = TestKey::rsa("layouts");
    let jwks = JwksServer::start(json!([key.jwk])).await.unwrap();
    let base = json!({
        "iss": ISSUER, "sub": "user-1", "iat": now(), "exp": now() + 300,
    });
    let layouts = [
        (
            "Keycloak",
            ("tenant", "scope"),
            json!({
                "aud": ["account", AUDIENCE],
                "tenant": TENANT,
                "scope": "openid profile email disputes:read documents:read",
                "realm_access": {"roles": ["offline_access"]},
            }),
            json!({"scope": "openid profile"}),
        ),
        (
            "Okta",
            ("/org/tenant_id", "scp"),
            json!({
                "aud": AUDIENCE,
                "org": {"tenant_id": TENANT},
                "scp": ["openid", "disputes:read", "documents:read"],
                "cid": "0oa1example",
            }),
            json!({"scp": ["openid"]}),
        ),
        (
            "Auth0",
            ("https://disputes.example.test/tenant", "permissions"),
            json!({
                "aud": [AUDIENCE, "https://tenant.auth0.example/userinfo"],
                "https://disputes.example.test/tenant": TENANT,
                "scope": "openid disputes:read documents:read",
                "permissions": ["disputes:read", "documents:read"],
            }),
            json!({"permissions": []}),
        ),
    ];
    for (provider, (tenant_claim, scope_claim), claims, without_scopes) in layouts {
        let stack = stack_verifying(&jwks, tenant_claim, scope_claim).await;
        let claims = with(base.clone(), claims);
        call_both(&stack, &key.sign(&claims))
            .await
            .unwrap_or_else(|status| panic!("{provider}: {status:?}"));
        let denied = call_both(&stack, &key.sign(&with(claims, without_scopes)))
            .await
            .expect_err(provider);
        assert_eq!(
            denied.code(),
            Code::PermissionDenied,
            "{provider}: {denied:?}"
        );
        stack.stop().await;
    }
}

#[tokio::test]
async fn a_background_token_acts_only_for_the_tenant_it_names_and_only_where_delegated() {
    let key = TestKey::p256("background");
    let jwks = JwksServer::start(json!([key.jwk])).await.unwrap();
    let stack = stack_verifying(&jwks, "tenant", "scopes").await;
    let background = key.sign(&with(
        user_claims(),
        json!({
            "sub": "dispute-core",
            "tenant": null,
            "scopes": ["documents:lock", "documents:read"],
        }),
    ));
    let list_documents = |act_for: Option<&'static str>| {
        let token = background.clone();
        let addr = stack.document_store_addr;
        async move {
            let mut client = DocumentServiceClient::new(harness::connect(addr).await.unwrap());
            let mut request = tonic::Request::new(pb::ListDocumentsRequest::default());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            if let Some(tenant) = act_for {
                request
                    .metadata_mut()
                    .insert(ACT_FOR_TENANT_HEADER, tenant.parse().unwrap());
            }
            client.list_documents(request).await.map(|_| ())
        }
    };
    assert_unauthenticated(list_documents(None).await, "no tenant named");
    assert_unauthenticated(list_documents(Some("not a tenant")).await, "bad tenant");
    // With the header the token is authenticated, but only its delegated scope
    // (documents:lock) survives: reading documents is not among them.
    let status = list_documents(Some(TENANT))
        .await
        .expect_err("documents:read is not delegated");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // dispute-core delegates nothing: the header does not help there.
    let mut disputes = stack.disputes(Some(&background)).await;
    let mut request = tonic::Request::new(dpb::ListDisputesRequest::default());
    request
        .metadata_mut()
        .insert(ACT_FOR_TENANT_HEADER, TENANT.parse().unwrap());
    let status = disputes.list_disputes(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    stack.stop().await;
}

#[tokio::test]
async fn an_unreachable_identity_provider_refuses_tokens_promptly() {
    let key = TestKey::rsa("gone");
    let jwks = JwksServer::start(json!([key.jwk])).await.unwrap();
    let url = jwks.url();
    drop(jwks);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stack = crate::fixtures::stack_with(StackOptions {
        auth: Some(AuthFlags {
            jwks_url: Some(url),
            jwt_issuer: Some(ISSUER.to_owned()),
            jwt_audience: Some(AUDIENCE.to_owned()),
            ..AuthFlags::default()
        }),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    assert_unauthenticated(
        call_both(&stack, &key.sign(&user_claims())).await,
        "no keys",
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    stack.stop().await;
}

/// Issue 22 §2 with a real provider's tokens: dispute-core forwards the caller's own token to
/// document-store (no token of its own making), and its background work uses a tenant-less
/// provider token read from a file, which document-store takes to release a lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_own_token_goes_downstream_and_a_background_token_file_releases_locks() {
    use dispute_core::clients::documents::{BackgroundCredential, DocumentsClient};

    use crate::fixtures::{create, header, merchant_dispute, pdf_of_size, update, upload};

    let key = TestKey::rsa("kc-downstream");
    let jwks = JwksServer::start(json!([key.jwk])).await.unwrap();
    // Keycloak-like: the scopes in one space-separated string.
    let stack = stack_verifying(&jwks, "tenant", "scope").await;
    let user = key.sign(&with(
        user_claims(),
        json!({
            "scopes": null,
            "scope": "openid profile disputes:read disputes:write documents:read documents:write",
        }),
    ));
    let mut disputes = stack.disputes(Some(&user)).await;
    let mut documents = stack.documents(Some(&user)).await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_idp_downstream")).await;
    let mut upload_header = header("receipt.pdf", "application/pdf");
    upload_header.dispute_id = dispute.id.clone();
    let receipt = upload(&mut documents, upload_header, &pdf_of_size(100))
        .await
        .unwrap();

    // Staging the receipt makes dispute-core check it (BatchGetDocuments) and hold it
    // (LockDocuments) in document-store, with the user's own token.
    update(
        &mut disputes,
        dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                receipt: Some(receipt.id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    // GetDispute lists the dispute's documents through document-store, the same way.
    let got = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.documents_omitted);
    assert_eq!(
        got.documents
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        [receipt.id.as_str()]
    );

    // A lock left by a submission that did not happen, released by the background worker's
    // credential: a provider token naming no tenant, with `documents:lock` only.
    documents
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![receipt.id.clone()],
            lock_id: "lck_idp".into(),
        })
        .await
        .unwrap();
    let lock_time = |documents: &mut harness::DocumentsClient| {
        let mut documents = documents.clone();
        let id = receipt.id.clone();
        async move {
            documents
                .get_document(pb::GetDocumentRequest { id })
                .await
                .unwrap()
                .into_inner()
                .document
                .unwrap()
                .lock_time
        }
    };
    assert!(lock_time(&mut documents).await.is_some());
    let credentials = tempfile::tempdir().unwrap();
    let token_file = credentials.path().join("background-token");
    let background = |exp: i64| {
        key.sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "dispute-core",
            "scope": "documents:lock", "iat": exp - 300, "exp": exp,
        }))
    };
    let worker = DocumentsClient::connect_lazy(&format!("http://{}", stack.document_store_addr))
        .unwrap()
        .with_background_credential(BackgroundCredential::TokenFile(token_file.clone()));
    // An expired token in the file is refused (past the 30 s leeway); the renewed file is
    // read at the next use.
    std::fs::write(&token_file, background(now() - 120)).unwrap();
    assert!(
        worker
            .unlock_documents_in_background(TENANT, std::slice::from_ref(&receipt.id), "lck_idp")
            .await
            .is_err()
    );
    assert!(lock_time(&mut documents).await.is_some());
    std::fs::write(&token_file, background(now() + 300)).unwrap();
    worker
        .unlock_documents_in_background(TENANT, std::slice::from_ref(&receipt.id), "lck_idp")
        .await
        .unwrap();
    assert!(lock_time(&mut documents).await.is_none());

    stack.stop().await;
}
