//! A local OpenAI-compatible chat-completions server for tests and benches.
//!
//! It exists so that fault injection (429 storms, 5xx, timeouts, connection
//! resets, truncated or malformed bodies, empty choices) and scripted answers
//! never need the network. The server speaks a small subset of HTTP/1.1 by
//! hand over a tokio `TcpListener` (keep-alive, `Content-Length` bodies): that
//! is all reqwest sends, and it keeps this file self-contained so benches can
//! include it with `#[path = "../tests/support/stub.rs"] mod stub;`.
//!
//! The server runs on its own thread with its own tokio runtime, so it
//! serves equally a test that calls the library in-process and a test that
//! spawns the real `lmc` binary. It stops when the `StubServer` is dropped.
//!
//! ```ignore
//! let stub = StubServer::start(|req: &StubRequest| {
//!     if req.n < 2 { StubReply::Status(429, Some("0".into())) }
//!     else { StubReply::Ok("[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]".into()) }
//! });
//! std::env::set_var("X", stub.url()); // http://127.0.0.1:PORT/v1
//! assert_eq!(stub.requests(), 3);
//! ```
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One chat-completions request as the stub saw it.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// 0-based arrival order over the server's lifetime (all paths).
    pub n: usize,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// `model` from the body ("" when absent).
    pub model: String,
    /// `(role, content)` for each message in the body.
    pub messages: Vec<(String, String)>,
    /// The `Authorization` header, if any (to check keys are sent, never logged).
    pub authorization: Option<String>,
    /// The whole JSON body (`Value::Null` when it did not parse).
    pub body: Value,
}

impl StubRequest {
    /// Content of the last user message ("" when none).
    pub fn last_user(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|(r, _)| r == "user")
            .map(|(_, c)| c.as_str())
            .unwrap_or("")
    }

    /// Content of the system message ("" when none).
    pub fn system(&self) -> &str {
        self.messages
            .iter()
            .find(|(r, _)| r == "system")
            .map(|(_, c)| c.as_str())
            .unwrap_or("")
    }

    /// The value of `[[ ## field ## ]]` in the last user message (the chat
    /// adapter's input section), trimmed; `None` when the marker is absent.
    pub fn input(&self, field: &str) -> Option<String> {
        let text = self.last_user();
        let marker = format!("[[ ## {field} ## ]]");
        let start = text.find(&marker)? + marker.len();
        let rest = &text[start..];
        let end = rest.find("[[ ## ").unwrap_or(rest.len());
        Some(rest[..end].trim().to_string())
    }
}

/// What the stub does with one request.
#[derive(Debug, Clone)]
pub enum StubReply {
    /// 200 with one choice whose content is this text; usage estimated.
    Ok(String),
    /// 200 with this text and exact usage (prompt, completion tokens).
    OkUsage(String, u64, u64),
    /// An error status with an optional `Retry-After` header value (seconds
    /// or an HTTP date) and a small JSON error body.
    Status(u16, Option<String>),
    /// Wait, then do the inner reply (a delay longer than the client's
    /// timeout makes a timeout).
    Delay(Duration, Box<StubReply>),
    /// Close the connection with a TCP reset and no response.
    Reset,
    /// Headers promising a longer body than is sent, then close.
    Truncated,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with `"choices": []`.
    EmptyChoices,
    /// Any status and raw body (sent as `application/json`).
    Raw(u16, String),
}

type Handler = dyn Fn(&StubRequest) -> StubReply + Send + Sync + 'static;

struct State {
    handler: Box<Handler>,
    count: AtomicUsize,
    received: Mutex<Vec<Value>>,
    record: bool,
    parse: bool,
    latency: Duration,
}

/// Options for [`StubServer`]; `StubServer::start` uses the defaults.
pub struct StubBuilder {
    latency: Duration,
    record: bool,
    parse: bool,
}

impl StubBuilder {
    /// A fixed delay added before every reply (simulates server latency).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    /// Whether to decode request bodies into [`StubRequest`] (default on).
    /// Benches turn it off so the stub costs next to nothing and the figure
    /// is the client's: the handler then sees an empty model and messages.
    pub fn parse(mut self, on: bool) -> Self {
        self.parse = on;
        self
    }

    /// Whether to keep request bodies for [`StubServer::received`] (benches
    /// turn this off to keep memory flat).
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    pub fn start<F>(self, handler: F) -> StubServer
    where
        F: Fn(&StubRequest) -> StubReply + Send + Sync + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind stub server");
        std_listener
            .set_nonblocking(true)
            .expect("nonblocking stub listener");
        let addr = std_listener.local_addr().expect("stub local addr");
        let state = Arc::new(State {
            handler: Box::new(handler),
            count: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            record: self.record,
            parse: self.parse,
            latency: self.latency,
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("stub-lm".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("stub runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("stub listener");
                    tokio::pin!(stop_rx);
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            acc = listener.accept() => {
                                if let Ok((sock, _)) = acc {
                                    let _ = sock.set_nodelay(true);
                                    tokio::spawn(serve_conn(sock, st.clone()));
                                }
                            }
                        }
                    }
                });
                // Dropping the runtime cancels in-flight connections.
                rt.shutdown_background();
            })
            .expect("spawn stub thread");
        StubServer {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

/// A running stub server; stops on drop.
pub struct StubServer {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StubServer {
    pub fn builder() -> StubBuilder {
        StubBuilder {
            latency: Duration::ZERO,
            record: true,
            parse: true,
        }
    }

    /// Start serving with `handler` deciding each reply.
    pub fn start<F>(handler: F) -> StubServer
    where
        F: Fn(&StubRequest) -> StubReply + Send + Sync + 'static,
    {
        Self::builder().start(handler)
    }

    /// A server that answers every request with the same text.
    pub fn fixed(text: &str) -> StubServer {
        let text = text.to_string();
        Self::start(move |_| StubReply::Ok(text.clone()))
    }

    /// Base URL ending in `/v1`, as users configure it.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many requests arrived (whatever the reply).
    pub fn requests(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// The JSON bodies received, in arrival order.
    pub fn received(&self) -> Vec<Value> {
        self.state
            .received
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve requests on one keep-alive connection until the peer closes it or
/// a reply ends it (reset, truncation).
async fn serve_conn(sock: TcpStream, state: Arc<State>) {
    let mut reader = BufReader::new(sock);
    loop {
        // Request line and headers.
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let _method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let mut content_length = 0usize;
        let mut authorization = None;
        let mut close = false;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => content_length = value.parse().unwrap_or(0),
                    "authorization" => authorization = Some(value.to_string()),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let body: Value = if state.parse {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        } else {
            Value::Null
        };

        let n = state.count.fetch_add(1, Ordering::SeqCst);
        if state.record {
            if let Ok(mut r) = state.received.lock() {
                r.push(body.clone());
            }
        }
        if path.ends_with("/models") {
            let out = json!({"object": "list", "data": [{"id": "stub", "object": "model"}]});
            if write_response(&mut reader, 200, &[], &out.to_string())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let req = StubRequest {
            n,
            path,
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            messages: body
                .get("messages")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            let s = |k: &str| {
                                m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
                            };
                            (s("role"), s("content"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            authorization,
            body,
        };
        // A panicking handler must not take the server down silently: treat
        // it as a 500 so the test sees a failure it can diagnose.
        let mut reply =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (state.handler)(&req)))
                .unwrap_or(StubReply::Raw(
                    500,
                    r#"{"error":{"message":"stub handler panicked"}}"#.into(),
                ));
        if !state.latency.is_zero() {
            tokio::time::sleep(state.latency).await;
        }
        while let StubReply::Delay(d, inner) = reply {
            tokio::time::sleep(d).await;
            reply = *inner;
        }
        let ok = match reply {
            StubReply::Ok(text) => {
                let prompt: usize = req.messages.iter().map(|(_, c)| c.len()).sum();
                let (p, c) = ((prompt / 4 + 1) as u64, (text.len() / 4 + 1) as u64);
                write_response(&mut reader, 200, &[], &completion(&req, &text, p, c)).await
            }
            StubReply::OkUsage(text, p, c) => {
                write_response(&mut reader, 200, &[], &completion(&req, &text, p, c)).await
            }
            StubReply::Status(code, retry_after) => {
                let mut headers = Vec::new();
                if let Some(ra) = retry_after {
                    headers.push(("Retry-After".to_string(), ra));
                }
                let body =
                    json!({"error": {"message": format!("stub status {code}"), "code": code}});
                write_response(&mut reader, code, &headers, &body.to_string()).await
            }
            StubReply::Raw(code, body) => write_response(&mut reader, code, &[], &body).await,
            StubReply::Malformed => {
                write_response(&mut reader, 200, &[], "{\"choices\": [{\"message\": oops").await
            }
            StubReply::EmptyChoices => {
                let body = json!({"id": format!("stub-{}", req.n), "object": "chat.completion", "choices": []});
                write_response(&mut reader, 200, &[], &body.to_string()).await
            }
            StubReply::Truncated => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"choices\": [{\"message\": {\"role\": \"assistant\", \"con";
                let s = reader.get_mut();
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.flush().await;
                return;
            }
            StubReply::Reset => {
                // SO_LINGER 0 makes close send RST instead of FIN. Tokio
                // deprecates set_linger because a non-zero linger blocks on
                // drop; zero never blocks.
                #[allow(deprecated)]
                let _ = reader.get_ref().set_linger(Some(Duration::ZERO));
                return;
            }
            StubReply::Delay(..) => unreachable!("delays unwrapped above"),
        };
        if ok.is_err() || close {
            return;
        }
    }
}

fn completion(req: &StubRequest, text: &str, p: u64, c: u64) -> String {
    json!({
        "id": format!("stub-{}", req.n),
        "object": "chat.completion",
        "model": req.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    })
    .to_string()
}

async fn write_response(
    reader: &mut BufReader<TcpStream>,
    code: u16,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let s = reader.get_mut();
    s.write_all(out.as_bytes()).await?;
    s.flush().await
}

/// Run `server` as a stub process for a script (examples/): print its URL
/// on stdout, then serve until stdin closes (the script ends) or `seconds`
/// pass, and say on stderr how many requests it served.
pub fn serve_as_process(server: &StubServer, seconds: u64) {
    use std::io::Write;
    println!("{}", server.url());
    let _ = std::io::stdout().flush();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = String::new();
        while std::io::stdin()
            .read_line(&mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            buf.clear();
        }
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(seconds));
    eprintln!("stub served {} requests", server.requests());
}
