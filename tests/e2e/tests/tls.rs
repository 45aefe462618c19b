//! PostgreSQL over TLS: both services connect with `sslmode=verify-full` to a private
//! PostgreSQL started with `ssl=on` and a certificate made in the test, and refuse a server
//! whose certificate their CA did not sign.

use harness::private_postgres::PrivatePostgres;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it (PEM).
struct TestPki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn make_pki() -> TestPki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    TestPki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// Whether the connection serving `pool` is encrypted, as the server sees it.
async fn uses_tls(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("read pg_stat_ssl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_postgres_over_verified_tls() {
    let pki = make_pki();
    let postgres = PrivatePostgres::start_with_tls(&pki.server_cert_pem, &pki.server_key_pem)
        .await
        .expect("start PostgreSQL with ssl=on");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).expect("write ca");
    let ca = ca_path.to_str().expect("utf-8 path");
    let admin = sqlx::PgPool::connect(&postgres.admin_url())
        .await
        .expect("admin connection");
    for database in ["disputes", "documents"] {
        sqlx::query(&format!("create database {database}"))
            .execute(&admin)
            .await
            .expect("create database");
    }
    admin.close().await;
    let url = |database: &str, sslmode: &str| {
        format!(
            "postgres://postgres@localhost:{}/{database}?sslmode={sslmode}&sslrootcert={ca}",
            postgres.port
        )
    };

    // Each service migrates and serves over verify-full.
    let disputes = dispute_core::connect_database(&url("disputes", "verify-full"), 2)
        .await
        .expect("dispute-core over verify-full");
    assert!(
        uses_tls(&disputes).await,
        "dispute-core's connection is not encrypted"
    );
    let documents = document_store::connect_database(&url("documents", "verify-full"), 2)
        .await
        .expect("document-store over verify-full");
    assert!(
        uses_tls(&documents).await,
        "document-store's connection is not encrypted"
    );
    disputes.close().await;
    documents.close().await;

    // The same server without TLS: the check above tells the two apart.
    let plain = dispute_core::connect_database(&url("disputes", "disable"), 1)
        .await
        .expect("plain connection");
    assert!(!uses_tls(&plain).await);
    plain.close().await;

    // A CA that did not sign the server's certificate: refused, nothing connects.
    let other = make_pki();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).expect("write other ca");
    let untrusted = format!(
        "postgres://postgres@localhost:{}/disputes?sslmode=verify-full&sslrootcert={}",
        postgres.port,
        other_ca.to_str().expect("utf-8 path")
    );
    let refused = dispute_core::connect_database(&untrusted, 1).await;
    assert!(
        refused.is_err(),
        "a server signed by another CA was accepted"
    );
}

/// A channel to `localhost:port` over TLS trusting only `ca_pem`.
async fn tls_channel(port: u16, ca_pem: &str) -> anyhow::Result<tonic::transport::Channel> {
    service_kit::tls::install_crypto_provider();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
    Ok(
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))?
            .tls_config(tls)?
            .connect()
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_servers_and_the_channel_between_them_speak_tls() {
    use disputes_proto::disputes_v1 as dpb;
    use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
    use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
    use harness::{Bearer, StackOptions};

    let pki = make_pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    let (cert, key, ca) = (
        write("server.crt", &pki.server_cert_pem),
        write("server.key", &pki.server_key_pem),
        write("ca.pem", &pki.ca_pem),
    );
    let stack = harness::Stack::start(StackOptions {
        document_store_tls: document_store::config::Tls {
            tls_cert_file: Some(cert.clone()),
            tls_key_file: Some(key.clone()),
            ..Default::default()
        },
        dispute_core_tls: dispute_core::config::Tls {
            server: service_kit::config::TlsFlags {
                tls_cert_file: Some(cert),
                tls_key_file: Some(key),
                ..Default::default()
            },
            document_store_ca_file: Some(ca),
        },
        ..Default::default()
    })
    .await
    .expect("stack with TLS");
    let token = stack.full_token("tls");
    let bearer = Bearer::new(Some(&token)).expect("bearer");

    let mut disputes = DisputeServiceClient::with_interceptor(
        tls_channel(stack.dispute_core_addr.port(), &pki.ca_pem)
            .await
            .expect("TLS to dispute-core"),
        bearer.clone(),
    );
    let dispute = disputes
        .create_dispute(crate::fixtures::merchant_dispute("tls-1", "ch_tls"))
        .await
        .expect("CreateDispute over TLS")
        .into_inner()
        .dispute
        .expect("dispute");
    let mut documents = DocumentServiceClient::with_interceptor(
        tls_channel(stack.document_store_addr.port(), &pki.ca_pem)
            .await
            .expect("TLS to document-store"),
        bearer,
    );
    let mut header = crate::fixtures::header("receipt.pdf", "application/pdf");
    header.dispute_id = dispute.id.clone();
    let stream = tokio_stream::iter(crate::fixtures::upload_messages(
        header,
        &crate::fixtures::pdf_of_size(4096),
        1024,
    ));
    documents
        .upload_document(stream)
        .await
        .expect("UploadDocument over TLS");
    // GetDispute lists the document: dispute-core asked document-store over TLS.
    let got = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .expect("GetDispute over TLS")
        .into_inner();
    assert_eq!(got.documents.len(), 1, "{got:?}");

    // Plaintext HTTP/2 to a TLS server does not get an answer.
    let plain = harness::connect(stack.document_store_addr).await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => DocumentServiceClient::new(channel)
            .list_documents(disputes_proto::documents_v1::ListDocumentsRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext call was answered by a TLS server");
    stack.stop().await;
}
