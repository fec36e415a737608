//! One connection pool or one per thread ([`PoolMode`]), on the two runtime shapes a service
//! runs: a multi-threaded tokio runtime (axum, batch jobs) and one single-threaded runtime per
//! worker thread (actix-web). Each makes the same number of non-streaming chat calls, 64 at a
//! time, to a local fake LiteLLM answering the recorded 1.108.7 body, and prints calls per
//! second and the process's CPU per call (the fake server's share is the same in every row).
//!
//! `cargo bench -p bff-providers --bench pools` (figures in BENCHMARKS.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)] // a benchmark: a failure is a panic, its output the table

use bff_providers::{
    ApiKey, ChatRequest, LiteLlm, LiteLlmClient, LiteLlmConfig, PoolMode, RequestContext, TraceId,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CALLS: usize = 20_000;
const IN_FLIGHT: usize = 64;
const WORKERS: usize = 2;

fn main() {
    let address = start_fake_litellm();
    println!("| runtime | pools | calls/s | CPU per call (µs) |");
    println!("|---|---|---|---|");
    for pools in [PoolMode::Shared, PoolMode::PerThread] {
        let (rate, cpu) = measure(|| multi_thread(address, pools));
        println!("| multi-thread, {WORKERS} workers | {pools:?} | {rate:.0} | {cpu:.1} |");
    }
    for pools in [PoolMode::Shared, PoolMode::PerThread] {
        let (rate, cpu) = measure(|| runtime_per_thread(address, pools));
        println!(
            "| one current-thread runtime per thread, {WORKERS} threads | {pools:?} | {rate:.0} | {cpu:.1} |"
        );
    }
}

/// Calls per second and CPU microseconds per call of `run` (which makes [`CALLS`] calls).
fn measure(run: impl FnOnce()) -> (f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    run();
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    (CALLS as f64 / wall, cpu * 1e6 / CALLS as f64)
}

/// This process's user + system CPU time (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn client(address: SocketAddr, pools: PoolMode) -> Arc<LiteLlmClient> {
    let mut config = LiteLlmConfig::new(
        format!("http://{address}").parse().unwrap(),
        ApiKey::new("sk-bench"),
    );
    config.pools = pools;
    Arc::new(LiteLlmClient::new(config).unwrap())
}

/// `calls` calls, [`IN_FLIGHT`] / `share` at a time, on the current runtime.
async fn calls(client: Arc<LiteLlmClient>, calls: usize, share: usize) {
    let body = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
    let per_task = calls / (IN_FLIGHT / share);
    let tasks: Vec<_> = (0..IN_FLIGHT / share)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let request: ChatRequest = serde_json::from_str(body).unwrap();
                    let context = RequestContext::new("bench", TraceId::random());
                    client.chat(&context, request).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn multi_thread(address: SocketAddr, pools: PoolMode) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(calls(client(address, pools), CALLS, 1));
}

fn runtime_per_thread(address: SocketAddr, pools: PoolMode) {
    let client = client(address, pools);
    // Every runtime keeps running until all are done, as actix's workers run as long as the
    // server: a connection is driven by the runtime that opened it, and a shared pool hands it
    // to the other threads too.
    let done = Arc::new(tokio::sync::Barrier::new(WORKERS));
    let threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, done) = (Arc::clone(&client), Arc::clone(&done));
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    calls(client, CALLS / WORKERS, WORKERS).await;
                    done.wait().await;
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// A keep-alive HTTP/1.1 server on its own thread answering every request with LiteLLM's
/// recorded chat completion.
fn start_fake_litellm() -> SocketAddr {
    let recorded = include_str!("../tests/fixtures/litellm-1.108.7/mock.txt");
    let (head, body) = recorded
        .split_once("\r\n\r\n")
        .or_else(|| recorded.split_once("\n\n"))
        .unwrap();
    let head: String = head
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("content-length"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    let body = body.trim_end();
    let response: &'static [u8] = format!("{head}content-length: {}\r\n\r\n{body}", body.len())
        .leak()
        .as_bytes();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(socket, response));
            }
        });
    });
    address
}

/// Answers each request on `socket` (headers, then `content-length` bytes of body).
async fn serve(mut socket: tokio::net::TcpStream, response: &'static [u8]) {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0_u8; 4096];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
            continue;
        };
        let headers = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = headers
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap_or(0));
        while buffer.len() < end + 4 + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        buffer.drain(..end + 4 + length);
        if socket.write_all(response).await.is_err() {
            return;
        }
    }
}
