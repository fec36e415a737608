//! The descriptor budget, with the real binary in a child process whose open-file limit is
//! lowered: bff raises its soft limit to the hard one, says both, caps its connections, keeps
//! serving the ones it holds, and never runs out of descriptors.

use crate::helpers::WEBUI_SECRET;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Bff {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Bff {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// bff under `ulimit -Sn soft -Hn hard`, its log going to a file.
fn start(soft: u64, hard: u64) -> Bff {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("bff-descriptors-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("bff.log")).unwrap();
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/rbac.toml");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" serve"
        ))
        .arg(env!("CARGO_BIN_EXE_bff"))
        .current_dir(&dir)
        .env_clear()
        .env("BFF_BIND", format!("127.0.0.1:{port}"))
        .env("LITELLM_URL", "http://127.0.0.1:9")
        .env("LITELLM_API_KEY", "sk-unused")
        .env("WEBUI_SECRET_KEY", WEBUI_SECRET)
        .env("RBAC_POLICY_FILE", policy)
        .env("LOG_FORMAT", "json")
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bff = Bff { child, port, dir };
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return bff;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("bff did not start: {}", log_text(&bff));
}

fn log_text(bff: &Bff) -> String {
    std::fs::read_to_string(bff.dir.join("bff.log")).unwrap_or_default()
}

/// `GET /health` on an open connection; its status line, or `None` if no answer came in time.
fn health(connection: &mut TcpStream) -> Option<String> {
    connection
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    connection
        .write_all(b"GET /health HTTP/1.1\r\nhost: bff\r\n\r\n")
        .ok()?;
    let mut status = String::new();
    BufReader::new(connection.try_clone().ok()?)
        .read_line(&mut status)
        .ok()?;
    (!status.is_empty()).then(|| status.trim().to_owned())
}

#[test]
fn under_a_low_open_file_limit_bff_caps_its_connections_and_keeps_serving() {
    let bff = start(128, 256);
    // Reserve 64 (no Helicone here), two descriptors a connection: (256 - 64) / 2.
    let mut held: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", bff.port)).unwrap())
        .collect();
    // The first connections were accepted and are served, over and over.
    for connection in held.iter_mut().take(20) {
        assert_eq!(health(connection).as_deref(), Some("HTTP/1.1 200 OK"));
    }
    // Past the cap, a connection waits instead of failing.
    let waiting = held.last_mut().unwrap();
    assert_eq!(health(waiting), None, "accepted past the cap");
    // Once connections close, the waiting ones are taken in.
    held.truncate(20);
    let mut fresh = TcpStream::connect(("127.0.0.1", bff.port)).unwrap();
    let mut answer = None;
    for _ in 0..20 {
        answer = health(&mut fresh);
        if answer.is_some() {
            break;
        }
    }
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200 OK"));
    let log = log_text(&bff);
    assert!(
        log.contains("open-file limit: soft 128 raised to the hard limit 256"),
        "{log}"
    );
    assert!(log.contains("\"max_connections\":96"), "{log}");
    assert!(!log.to_lowercase().contains("too many open files"), "{log}");
}
