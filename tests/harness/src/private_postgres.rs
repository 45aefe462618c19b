//! A PostgreSQL server of a test's own: `initdb` into a temporary directory, started on a
//! free port of 127.0.0.1, so the test can stop it (fast or immediate) and start it again
//! on the same port and data without disturbing the shared server other tests use.
//!
//! The PostgreSQL binaries are found through `PG_BIN_DIR`, else `pg_config --bindir`, else
//! the newest `/usr/lib/postgresql/*/bin`, else `PATH`. PostgreSQL refuses to run as root:
//! when the test runs as root (as CI does here), the directory is handed to the `postgres`
//! user and every command runs through `runuser -u postgres`.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::process::Command;

/// How `stop` shuts the server down (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Ends sessions, checkpoints, exits.
    Fast,
    /// Quits at once, like a crash: the next start replays the WAL.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A private PostgreSQL server (trust authentication, user `postgres`, fsync off). Commits
/// stay synchronous, so an immediate stop (a crash of the server, not of the machine) loses
/// no acknowledged transaction. Dropping it stops the server immediately and removes its
/// directory.
pub struct PrivatePostgres {
    pub port: u16,
    bin_dir: PathBuf,
    /// Holds `data/`, `socket/` and `server.log`.
    dir: tempfile::TempDir,
    /// Run the binaries as the `postgres` user (the test runs as root).
    as_postgres_user: bool,
    running: bool,
    /// `-c ...` settings added to every start (e.g. TLS).
    extra_options: String,
}

impl PrivatePostgres {
    /// Creates a cluster in a fresh temporary directory and starts it on a free port.
    pub async fn start() -> anyhow::Result<PrivatePostgres> {
        let mut server = Self::init().await?;
        server.start_again().await?;
        Ok(server)
    }

    /// Like [`PrivatePostgres::start`], with `ssl=on` serving `cert_pem` (the chain) and
    /// `key_pem`. Clients still choose: trust authentication accepts both TLS and plain
    /// connections, so a test can tell them apart in `pg_stat_ssl`.
    pub async fn start_with_tls(cert_pem: &str, key_pem: &str) -> anyhow::Result<PrivatePostgres> {
        let mut server = Self::init().await?;
        let cert = server.dir.path().join("server.crt");
        let key = server.dir.path().join("server.key");
        std::fs::write(&cert, cert_pem)?;
        std::fs::write(&key, key_pem)?;
        // PostgreSQL refuses a key that others can read.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        if server.as_postgres_user {
            let (uid, gid) = postgres_user_ids()?;
            for path in [&cert, &key] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
        }
        server.extra_options = format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            path_str(&cert)?,
            path_str(&key)?
        );
        server.start_again().await?;
        Ok(server)
    }

    /// A fresh cluster, not started.
    async fn init() -> anyhow::Result<PrivatePostgres> {
        let bin_dir = find_bin_dir().await?;
        let as_postgres_user = running_as_root()?;
        let dir = tempfile::Builder::new().prefix("private-pg-").tempdir()?;
        std::fs::create_dir(dir.path().join("socket"))?;
        if as_postgres_user {
            let (uid, gid) = postgres_user_ids()?;
            for path in [dir.path().to_owned(), dir.path().join("socket")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .with_context(|| format!("hand {} to the postgres user", path.display()))?;
            }
        }
        let port = free_port()?;
        let server = PrivatePostgres {
            port,
            bin_dir,
            dir,
            as_postgres_user,
            running: false,
            extra_options: String::new(),
        };
        let data = server.data_dir();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    path_str(&data)?,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
            )
            .await
            .context("initdb")?;
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// URL of the `postgres` database as superuser `postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the stopped server on the same port and data directory; returns once it
    /// accepts connections.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off \
             -c max_connections=200{}",
            self.port,
            path_str(&self.dir.path().join("socket"))?,
            self.extra_options,
        );
        let data = self.data_dir();
        let log = self.log_file();
        let started = self
            .run(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&data)?,
                    "-l",
                    path_str(&log)?,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
            .await;
        if let Err(error) = started {
            anyhow::bail!("pg_ctl start: {error:#}\n{}", self.log_tail());
        }
        self.running = true;
        Ok(())
    }

    /// Stops the server; `Immediate` is a crash as far as clients and the WAL are concerned.
    pub async fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-m",
                mode.as_arg(),
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )
        .await
        .context("pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let binary = self.bin_dir.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            std::process::Command::new(binary)
        };
        command
            .args(args)
            // A directory the postgres user may enter, whatever the test's own is.
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    async fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::from(self.command(program, args))
            .output()
            .await
            .with_context(|| format!("run {program}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    /// Stops the server at once (blocking; never panics) before the directory goes.
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        let Some(data) = data.to_str() else { return };
        let _ = self
            .command("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("non-UTF-8 path {}", path.display()))
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn running_as_root() -> anyhow::Result<bool> {
    // /proc/self belongs to the process's effective user.
    Ok(std::fs::metadata("/proc/self")
        .context("read /proc/self")?
        .uid()
        == 0)
}

/// Uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user_ids() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .context("PostgreSQL refuses to run as root and there is no postgres user")
}

async fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        anyhow::ensure!(has_initdb(&dir), "PG_BIN_DIR has no initdb/pg_ctl");
        return Ok(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output().await
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path().join("bin");
            has_initdb(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_initdb(dir))
        .context("no initdb/pg_ctl found: install PostgreSQL server binaries or set PG_BIN_DIR")
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    async fn answer(url: &str) -> anyhow::Result<i32> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(one)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_and_restarts_on_the_same_port_keeping_its_data() {
        let mut server = PrivatePostgres::start().await.unwrap();
        let url = server.admin_url();
        assert_eq!(answer(&url).await.unwrap(), 1);
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("create table kept (v int); insert into kept values (7)")
            .execute(&mut conn)
            .await
            .unwrap();

        server.stop(StopMode::Immediate).await.unwrap();
        assert!(answer(&url).await.is_err(), "a stopped server answered");
        // The open session is gone with the server.
        assert!(sqlx::query("select 1").execute(&mut conn).await.is_err());

        server.start_again().await.unwrap();
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let kept: i32 = sqlx::query_scalar("select v from kept")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(kept, 7);
        conn.close().await.unwrap();

        server.stop(StopMode::Fast).await.unwrap();
        server.start_again().await.unwrap();
        assert_eq!(answer(&url).await.unwrap(), 1);

        let dir = server.dir.path().to_owned();
        drop(server);
        assert!(!dir.exists(), "the data directory outlived the server");
        assert!(
            answer(&url).await.is_err(),
            "a dropped server still answers"
        );
    }
}
