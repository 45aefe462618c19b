//! Services in child processes, wired through one builder, [`ServiceCommand`]: which
//! service, which program, and its settings as environment variables (the services read
//! their configuration from the environment, as deployed).
//!
//! The program is either a service binary (the benchmarks run the release builds) or the
//! test binary itself, re-run with `--exact <entry test> --ignored`: an ignored test of the
//! binary (see `tests/e2e/tests/faults/mod.rs`) runs the service exactly as its `main.rs`
//! does (config from the environment, telemetry, `run` until SIGTERM). The service code is
//! then always the code this test binary was built from, and no other binary has to be
//! built or found. [`ServiceProcess`] runs such a child so a test can `kill -9` it and
//! start it again on the same port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::clients::tonic_health_client::health_check;
use crate::s3::{S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY};

/// Set in the child's environment when it is the test binary: which service the entry test
/// runs.
pub const SERVICE_PROCESS_ENV: &str = "E2E_SERVICE_PROCESS";

/// The webhook secret keyring of test and benchmark runs (dispute-core's
/// `--webhook-secret-keys`): one fixed key, id `test`. Never a deployment's key.
pub const TEST_WEBHOOK_SECRET_KEYS: &str = "test:dGVzdC1vbmx5LXdlYmhvb2stc2VjcmV0LWtleS0zMmI=";

/// How a benchmark runs the services' observability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observability {
    /// As deployed: the services' default log filter (no `RUST_LOG`: `info`), the access
    /// log on, spans and metrics exported over OTLP (to a sink, in benchmarks) with the
    /// sampler the environment names (`parentbased_always_on` unless `OTEL_TRACES_SAMPLER`).
    Deployed,
    /// Off: `RUST_LOG=warn`, no access log, nothing exported.
    Off,
}

impl Observability {
    /// `deployed`, `off` or `both` (deployed first).
    pub fn parse_modes(text: &str) -> anyhow::Result<Vec<Observability>> {
        match text.trim() {
            "deployed" => Ok(vec![Observability::Deployed]),
            "off" => Ok(vec![Observability::Off]),
            "both" => Ok(vec![Observability::Deployed, Observability::Off]),
            other => anyhow::bail!("observability {other:?}: expected deployed, off or both"),
        }
    }

    /// `deployed` or `off`, for printed tables.
    pub fn name(self) -> &'static str {
        match self {
            Observability::Deployed => "deployed",
            Observability::Off => "off",
        }
    }

    /// The child environment of this mode; `otlp` is the receiver's endpoint (needed when
    /// deployed). Every variable is set either way, so nothing leaks in from the bench's own
    /// environment except an explicit `OTEL_TRACES_SAMPLER[_ARG]`.
    pub fn child_env(
        self,
        service: Service,
        otlp: Option<&str>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let access_log = format!("{}ACCESS_LOG", service.env_prefix());
        let pairs: Vec<(String, &str)> = match self {
            Observability::Deployed => {
                let otlp = otlp.ok_or_else(|| {
                    anyhow::anyhow!("the deployed observability needs an OTLP endpoint")
                })?;
                vec![
                    (
                        "RUST_LOG".to_owned(),
                        service_kit::telemetry::DEFAULT_LOG_FILTER,
                    ),
                    (access_log, "true"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), otlp),
                    ("OTEL_TRACES_EXPORTER".to_owned(), "otlp"),
                    ("OTEL_METRICS_EXPORTER".to_owned(), "otlp"),
                ]
            }
            Observability::Off => vec![
                ("RUST_LOG".to_owned(), "warn"),
                (access_log, "false"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), ""),
                ("OTEL_TRACES_EXPORTER".to_owned(), "none"),
                ("OTEL_METRICS_EXPORTER".to_owned(), "none"),
            ],
        };
        Ok(pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect())
    }
}

/// A service a child process runs; its settings' environment variables carry its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    DisputeCore,
    DocumentStore,
}

impl Service {
    /// `dispute-core` or `document-store`.
    pub fn name(self) -> &'static str {
        match self {
            Service::DisputeCore => "dispute-core",
            Service::DocumentStore => "document-store",
        }
    }

    fn env_prefix(self) -> &'static str {
        match self {
            Service::DisputeCore => "DISPUTE_CORE_",
            Service::DocumentStore => "DOCUMENT_STORE_",
        }
    }
}

/// The program of a service child process.
#[derive(Clone)]
enum Program {
    /// This test binary again, running its ignored entry test (see the module docs).
    TestEntry(String),
    /// A service binary.
    Binary(PathBuf),
}

/// How to start one service as a child process: the program and the environment that
/// configures it. Typed setters for the settings every caller gives, [`ServiceCommand::env`]
/// for the rest; [`ServiceCommand::command`] makes the process command (the child inherits
/// this process's environment as well), [`ServiceProcess::start`] runs it.
#[derive(Clone)]
pub struct ServiceCommand {
    service: Service,
    program: Program,
    listen_addr: Option<SocketAddr>,
    envs: Vec<(String, String)>,
}

impl ServiceCommand {
    /// `service` run by this test binary's ignored test `entry_test` (its full path, as
    /// `--exact` takes it).
    pub fn test_entry(service: Service, entry_test: &str) -> ServiceCommand {
        ServiceCommand::new(service, Program::TestEntry(entry_test.to_owned()))
    }

    /// `service` run by its binary at `path`.
    pub fn binary(service: Service, path: impl Into<PathBuf>) -> ServiceCommand {
        ServiceCommand::new(service, Program::Binary(path.into()))
    }

    /// dispute-core starts with the test webhook secret keyring (it refuses to serve
    /// without one); [`ServiceCommand::webhook_secret_keys`] replaces it.
    fn new(service: Service, program: Program) -> ServiceCommand {
        let command = ServiceCommand {
            service,
            program,
            listen_addr: None,
            envs: Vec::new(),
        };
        match service {
            Service::DisputeCore => command.webhook_secret_keys(TEST_WEBHOOK_SECRET_KEYS),
            Service::DocumentStore => command,
        }
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// The address given to [`ServiceCommand::listen_addr`].
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// `<SERVICE>_LISTEN_ADDR`: the service binds it itself.
    pub fn listen_addr(mut self, addr: SocketAddr) -> ServiceCommand {
        self.listen_addr = Some(addr);
        self.service_env("LISTEN_ADDR", addr.to_string())
    }

    /// `<SERVICE>_DATABASE_URL`.
    pub fn database_url(self, url: impl Into<String>) -> ServiceCommand {
        self.service_env("DATABASE_URL", url)
    }

    /// `DISPUTE_CORE_DOCUMENT_STORE_URL`: where dispute-core reaches document-store.
    pub fn document_store_url(self, url: impl Into<String>) -> ServiceCommand {
        assert_eq!(
            self.service,
            Service::DisputeCore,
            "only dispute-core calls document-store"
        );
        self.service_env("DOCUMENT_STORE_URL", url)
    }

    /// `DOCUMENT_STORE_S3_*`: the harness's S3 server (its region and keys) at `endpoint`,
    /// `bucket` created at start-up when missing.
    pub fn s3(self, endpoint: impl Into<String>, bucket: &str) -> ServiceCommand {
        assert_eq!(
            self.service,
            Service::DocumentStore,
            "only document-store uses S3"
        );
        self.service_env("S3_ENDPOINT", endpoint)
            .service_env("S3_REGION", S3_REGION)
            .service_env("S3_BUCKET", bucket)
            .service_env("S3_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .service_env("S3_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .service_env("S3_CREATE_BUCKET", "true")
    }

    /// `DISPUTE_CORE_WEBHOOK_SECRET_KEYS`: the keys webhook signing secrets are sealed
    /// with (`key_id:base64`, the first seals).
    pub fn webhook_secret_keys(self, keys: impl Into<String>) -> ServiceCommand {
        assert_eq!(
            self.service,
            Service::DisputeCore,
            "only dispute-core seals webhook secrets"
        );
        self.service_env("WEBHOOK_SECRET_KEYS", keys)
    }

    /// `AUTH_JWT_SECRET`: the key access tokens are checked with.
    pub fn jwt_secret(self, secret: impl Into<String>) -> ServiceCommand {
        self.env("AUTH_JWT_SECRET", secret)
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where spans and metrics are exported.
    pub fn otlp_endpoint(self, url: impl Into<String>) -> ServiceCommand {
        self.env("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    }

    /// The log filter, access log and OTLP export of `mode` (see [`Observability`]); `otlp`
    /// is the receiver when deployed.
    pub fn observability(
        self,
        mode: Observability,
        otlp: Option<&str>,
    ) -> anyhow::Result<ServiceCommand> {
        let pairs = mode.child_env(self.service, otlp)?;
        Ok(self.envs(pairs))
    }

    /// `RUST_LOG`: the log filter.
    pub fn log_filter(self, filter: impl Into<String>) -> ServiceCommand {
        self.env("RUST_LOG", filter)
    }

    /// Any other variable of the child's environment; a later value of a key wins.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ServiceCommand {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// [`ServiceCommand::env`] for each pair.
    pub fn envs<K, V>(self, pairs: impl IntoIterator<Item = (K, V)>) -> ServiceCommand
    where
        K: Into<String>,
        V: Into<String>,
    {
        pairs
            .into_iter()
            .fold(self, |command, (k, v)| command.env(k, v))
    }

    /// `<SERVICE>_<name>`.
    fn service_env(self, name: &str, value: impl Into<String>) -> ServiceCommand {
        let key = format!("{}{name}", self.service.env_prefix());
        self.env(key, value)
    }

    /// The command that starts the service: program, arguments and environment. Output,
    /// input and what happens on drop are the caller's.
    pub fn command(&self) -> anyhow::Result<Command> {
        let mut command = match &self.program {
            Program::TestEntry(entry_test) => {
                let exe = std::env::current_exe().context("locate the test binary")?;
                let mut command = Command::new(exe);
                command
                    .args([
                        "--exact",
                        entry_test,
                        "--ignored",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(SERVICE_PROCESS_ENV, self.service.name());
                command
            }
            Program::Binary(path) => Command::new(path),
        };
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        Ok(command)
    }
}

/// A service running in a child process.
pub struct ServiceProcess {
    pub name: String,
    pub addr: SocketAddr,
    command: ServiceCommand,
    log: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl ServiceProcess {
    /// Starts `command` (which must name its listen address); its output goes to `log`.
    /// Returns once the service's health check answers SERVING on that address.
    pub async fn start(command: ServiceCommand, log: PathBuf) -> anyhow::Result<ServiceProcess> {
        let addr = command
            .addr()
            .context("a service process needs its listen address")?;
        let mut process = ServiceProcess {
            name: command.service().name().to_owned(),
            addr,
            command,
            log,
            child: None,
            starts: 0,
        };
        process.start_again().await?;
        Ok(process)
    }

    /// Starts the (killed or stopped) service again on the same address.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is still running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let child = self
            .command
            .command()?
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", self.name))?;
        self.child = Some(child);
        self.starts += 1;
        self.wait_until_serving(Duration::from_secs(30)).await
    }

    async fn wait_until_serving(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                anyhow::bail!(
                    "{} exited during start-up ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let serving = tokio::time::timeout(Duration::from_secs(1), health_check(self.addr))
                .await
                .is_ok_and(|checked| checked.is_ok_and(|serving| serving));
            if serving {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} not serving on {} after {within:?}:\n{}",
                self.name,
                self.addr,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no drain, no cleanup, sockets closed by the kernel.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("not running")?;
        // SIGKILL on Unix.
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// Whether the child is still alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The end of the service's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn envs(command: &ServiceCommand) -> BTreeMap<String, String> {
        let command = command.command().unwrap();
        command
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                let value = v.unwrap_or_default().to_string_lossy().into_owned();
                (k.to_string_lossy().into_owned(), value)
            })
            .collect()
    }

    #[test]
    fn typed_settings_name_the_services_variables() {
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let docs = ServiceCommand::binary(Service::DocumentStore, "/bin/document-store")
            .listen_addr(addr)
            .database_url("postgres://db/documents")
            .s3("http://127.0.0.1:9000", "bucket")
            .jwt_secret("secret")
            .log_filter("warn")
            .env("DOCUMENT_STORE_ACCESS_LOG", "false");
        let expected: BTreeMap<String, String> = [
            ("DOCUMENT_STORE_LISTEN_ADDR", "127.0.0.1:7001"),
            ("DOCUMENT_STORE_DATABASE_URL", "postgres://db/documents"),
            ("DOCUMENT_STORE_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("DOCUMENT_STORE_S3_REGION", S3_REGION),
            ("DOCUMENT_STORE_S3_BUCKET", "bucket"),
            ("DOCUMENT_STORE_S3_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("DOCUMENT_STORE_S3_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            ("DOCUMENT_STORE_S3_CREATE_BUCKET", "true"),
            ("AUTH_JWT_SECRET", "secret"),
            ("RUST_LOG", "warn"),
            ("DOCUMENT_STORE_ACCESS_LOG", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(envs(&docs), expected);
        assert_eq!(docs.addr(), Some(addr));
        assert_eq!(
            docs.command().unwrap().as_std().get_program(),
            "/bin/document-store"
        );
    }

    #[test]
    fn observability_modes_set_every_variable_of_the_child() {
        let command = ServiceCommand::binary(Service::DisputeCore, "/bin/dispute-core");
        let deployed = command
            .clone()
            .observability(Observability::Deployed, Some("http://127.0.0.1:4317"))
            .unwrap();
        let deployed = envs(&deployed);
        assert_eq!(deployed["RUST_LOG"], "info");
        assert_eq!(deployed["DISPUTE_CORE_ACCESS_LOG"], "true");
        assert_eq!(
            deployed["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://127.0.0.1:4317"
        );
        assert_eq!(deployed["OTEL_TRACES_EXPORTER"], "otlp");
        let off = envs(
            &command
                .clone()
                .observability(Observability::Off, None)
                .unwrap(),
        );
        assert_eq!(off["RUST_LOG"], "warn");
        assert_eq!(off["DISPUTE_CORE_ACCESS_LOG"], "false");
        assert_eq!(off["OTEL_EXPORTER_OTLP_ENDPOINT"], "");
        assert_eq!(off["OTEL_TRACES_EXPORTER"], "none");
        assert_eq!(off["OTEL_METRICS_EXPORTER"], "none");
        // Deployed without a receiver is a mistake of the bench, not a silent "off".
        assert!(
            command
                .observability(Observability::Deployed, None)
                .is_err()
        );
        assert_eq!(
            Observability::parse_modes("both").unwrap(),
            [Observability::Deployed, Observability::Off]
        );
        assert_eq!(
            Observability::parse_modes("off").unwrap(),
            [Observability::Off]
        );
        assert!(Observability::parse_modes("on").is_err());
    }

    #[test]
    fn a_test_entry_reruns_this_binary_with_the_service_named() {
        let core = ServiceCommand::test_entry(Service::DisputeCore, "faults::service_process")
            .document_store_url("http://127.0.0.1:7001")
            .otlp_endpoint("http://127.0.0.1:4317")
            .env("DISPUTE_CORE_SWEEP_INTERVAL_SECS", "1")
            .env("DISPUTE_CORE_SWEEP_INTERVAL_SECS", "2");
        let command = core.command().unwrap();
        let args: Vec<_> = command.as_std().get_args().collect();
        assert_eq!(
            args,
            [
                "--exact",
                "faults::service_process",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1"
            ]
        );
        let core_envs = envs(&core);
        assert_eq!(core_envs[SERVICE_PROCESS_ENV], "dispute-core");
        assert_eq!(
            core_envs["DISPUTE_CORE_DOCUMENT_STORE_URL"],
            "http://127.0.0.1:7001"
        );
        assert_eq!(
            core_envs["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://127.0.0.1:4317"
        );
        // A later value of a key wins.
        assert_eq!(core_envs["DISPUTE_CORE_SWEEP_INTERVAL_SECS"], "2");
        // dispute-core gets the test keyring unless told another.
        assert_eq!(
            core_envs["DISPUTE_CORE_WEBHOOK_SECRET_KEYS"],
            TEST_WEBHOOK_SECRET_KEYS
        );
        let rotated = core.webhook_secret_keys("k2:abc");
        assert_eq!(envs(&rotated)["DISPUTE_CORE_WEBHOOK_SECRET_KEYS"], "k2:abc");
    }
}
