//! For tests of this crate and of services using it (feature `test-support`): a real
//! `redis-server` on a free loopback port, and a clock a test moves.

use crate::engine::Clock;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock that stands still until [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock at `seconds` after the Unix epoch.
    pub fn at(seconds: u64) -> Self {
        Self(Mutex::new(UNIX_EPOCH + Duration::from_secs(seconds)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A `redis-server` child process, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// `redis://127.0.0.1:<port>/0`.
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Where it keeps an append-only file, if it persists.
    dir: Option<std::path::PathBuf>,
}

/// The variable that makes a missing `redis-server` a failure instead of a skip (`make test`
/// and CI set it, so the Redis tests always run there).
pub const REQUIRE_REDIS: &str = "BFF_REQUIRE_REDIS";

impl RedisServer {
    /// Starts `redis-server` without persistence. Without one on the PATH: `None` after one
    /// line saying what to install, or a panic when [`REQUIRE_REDIS`] is set.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Like [`Self::start`], with an append-only file in `dir` (fsync'd on every write), so a
    /// server killed and started again by [`Self::restart`] has everything it acknowledged.
    pub fn start_persistent(dir: &std::path::Path) -> Option<Self> {
        Self::start_with(Some(dir.to_owned()))
    }

    fn start_with(dir: Option<std::path::PathBuf>) -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            let line = "this test needs redis-server: apt-get install redis-server";
            assert!(
                std::env::var_os(REQUIRE_REDIS).is_none(),
                "{line} ({REQUIRE_REDIS} is set)"
            );
            #[allow(clippy::print_stderr)] // the one line that says why a test did nothing
            let () = eprintln!("skipped: {line}");
            return None;
        }
        Self::spawn(free_port(), dir).ok()
    }

    fn spawn(port: u16, dir: Option<std::path::PathBuf>) -> std::io::Result<Self> {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(Stdio::null());
        match &dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                command
                    .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                    .arg(dir);
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        let server = Self {
            child: command.spawn()?,
            url: format!("redis://127.0.0.1:{port}/0"),
            port,
            dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::io::Error::other("redis-server did not start"))
    }

    /// Kills the server (an outage); [`Self::restart`] brings one back on the same port.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port: empty, or with what its append-only file
    /// kept when it persists.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        *self = Self::spawn(self.port, self.dir.clone())?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_or(6399, |address| address.port())
}
