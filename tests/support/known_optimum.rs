//! The known-optimum task (issue 14): a scripted LM whose accuracy depends
//! on the prompt in two independent ways, so the best prompt is known and
//! no single kind of search reaches it.
//!
//! Tickets (`tests/fixtures/known_optimum/tickets.csv`, program `route.yaml`)
//! each name one of twelve topics; each topic belongs to one of four queues.
//! The "model" answers a ticket right when
//! `(easy || relevant_demo) && (common || names_all_queues)`:
//! - `names_all_queues`: the instruction (the system message's objective)
//!   names billing, shipping, security and legal;
//! - `relevant_demo`: one of the first [`READ_DEMOS`] demos is about the
//!   same topic (the model reads no further);
//! - `easy` / `common`: fixed per topic, three topics in each of the four
//!   combinations.
//!
//! So the zero-shot program scores 0.25, the right instruction alone 0.5,
//! relevant demos alone 0.5, and both 1.0. A fixed demo set covers at most
//! four of the twelve topics (0.83 at best with the instruction); only an
//! instruction search composed with per-input demos (kNN) reaches 1.0.
//! Proposer and feedback requests are answered with an instruction that
//! names the queues the request shows (a proposer grounded in data).
//!
//! Shared by the tests (`tests/it/known_optimum.rs`) and the bench stub
//! (`examples/known_optimum.rs`), so both run the same task.
#![allow(dead_code)]

use super::stub::{StubReply, StubRequest};

pub const PROGRAM: &str = "tests/fixtures/known_optimum/route.yaml";
pub const DATA: &str = "tests/fixtures/known_optimum/tickets.csv";
pub const QUEUES: [&str; 4] = ["billing", "shipping", "security", "legal"];
/// The topics, in the order their classes are assigned (index % 4).
pub const TOPICS: [(&str, &str); 12] = [
    ("invoice", "billing"),
    ("refund", "billing"),
    ("coupon", "billing"),
    ("parcel", "shipping"),
    ("courier", "shipping"),
    ("customs", "shipping"),
    ("password", "security"),
    ("phishing", "security"),
    ("lockout", "security"),
    ("contract", "legal"),
    ("subpoena", "legal"),
    ("trademark", "legal"),
];
/// How many demos the model reads.
pub const READ_DEMOS: usize = 4;
/// The score of the best prompt.
pub const OPTIMUM: f64 = 1.0;

/// (easy, common) of topic `i`: each combination three times.
fn class(i: usize) -> (bool, bool) {
    match i % 4 {
        0 => (true, true),
        1 => (false, true),
        2 => (true, false),
        _ => (false, false),
    }
}

fn topic_of(text: &str) -> Option<usize> {
    TOPICS
        .iter()
        .position(|(t, _)| text.split_whitespace().any(|w| w == *t))
}

/// The instruction part of a chat-adapter system message.
fn instruction(system: &str) -> &str {
    system.split("your objective is:").nth(1).unwrap_or("")
}

fn names_all_queues(text: &str) -> bool {
    QUEUES.iter().all(|q| text.contains(q))
}

/// Whether one of the first [`READ_DEMOS`] demos (user turns before the
/// question) is about topic `t`.
fn relevant_demo(req: &StubRequest, t: usize) -> bool {
    let users: Vec<&str> = req
        .messages
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, c)| c.as_str())
        .collect();
    let demos = &users[..users.len().saturating_sub(1)];
    demos
        .iter()
        .take(READ_DEMOS)
        .any(|d| topic_of(d.split("[[ ## text ## ]]").nth(1).unwrap_or("")) == Some(t))
}

fn task(req: &StubRequest, text: &str) -> String {
    let answer = match topic_of(text) {
        Some(t) => {
            let (easy, common) = class(t);
            let truth = TOPICS[t].1;
            let right = (easy || relevant_demo(req, t))
                && (common || names_all_queues(instruction(req.system())));
            if right {
                truth
            } else {
                let k = QUEUES.iter().position(|q| *q == truth).unwrap_or(0);
                QUEUES[(k + 1) % QUEUES.len()]
            }
        }
        None => QUEUES[0],
    };
    format!("[[ ## label ## ]]\n{answer}\n\n[[ ## completed ## ]]")
}

/// A proposer's instruction: the queues it was shown, named.
fn proposal(req: &StubRequest) -> String {
    let all: String = req
        .messages
        .iter()
        .map(|(_, c)| c.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let seen: Vec<&str> = QUEUES.iter().copied().filter(|q| all.contains(q)).collect();
    if seen.is_empty() {
        "Route the support ticket.".to_string()
    } else {
        format!(
            "Route the support ticket to exactly one queue: {}.",
            seen.join(", ")
        )
    }
}

/// Every field a proposer or feedback request asks for, answered.
fn propose(req: &StubRequest) -> String {
    let sys = req.system();
    let text = proposal(req);
    let mut out = String::new();
    for (field, value) in [
        ("proposed_instruction", text.clone()),
        ("proposed_prefix_for_output_field", "Label:".to_string()),
        ("new_instruction", text.clone()),
        ("summary", "Support tickets and their queues.".to_string()),
        (
            "discussion",
            "The worse run picked the wrong queue.".to_string(),
        ),
        (
            "module_advice",
            serde_json::json!({ "route": text }).to_string(),
        ),
    ] {
        if sys.contains(&format!("`{field}`")) {
            out.push_str(&format!("[[ ## {field} ## ]]\n{value}\n\n"));
        }
    }
    out.push_str("[[ ## completed ## ]]");
    out
}

/// The stub's handler: the task for a ticket, a proposal otherwise.
pub fn handler(req: &StubRequest) -> StubReply {
    let is_task = req.system().contains("`label`") && req.input("text").is_some();
    let reply = if is_task {
        let text = req.input("text").unwrap_or_default();
        task(req, text.lines().next().unwrap_or(""))
    } else {
        propose(req)
    };
    StubReply::Ok(reply)
}
