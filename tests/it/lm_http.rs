//! Tests for the LM layer over HTTP: the OpenAI-compatible backend against
//! the local stub server (fault injection, retries, call counts), the
//! persistent response cache, usage and budgets.

use crate::support::stub::{StubReply, StubServer};

/// The stub itself: replies, counts and records requests.
#[test]
fn stub_serves_scripted_replies() {
    let stub = StubServer::start(|req| {
        if req.n == 0 {
            StubReply::Status(429, Some("0".into()))
        } else {
            StubReply::Ok(format!("hello {}", req.model))
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("{}/chat/completions", stub.url());
    let (s1, s2, body) = rt.block_on(async {
        let c = reqwest::Client::new();
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let r1 = c.post(&url).json(&body).send().await.unwrap();
        let s1 = r1.status().as_u16();
        let r2 = c.post(&url).json(&body).send().await.unwrap();
        let s2 = r2.status().as_u16();
        let v: serde_json::Value = r2.json().await.unwrap();
        (s1, s2, v)
    });
    assert_eq!(s1, 429);
    assert_eq!(s2, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "hello m");
    assert_eq!(stub.requests(), 2);
    assert_eq!(stub.received()[1]["messages"][0]["content"], "hi");
}
