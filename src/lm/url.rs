//! Base URLs: joining the chat-completions path onto them, and redacting
//! the credentials people write into them.
//!
//! A base URL may carry secrets (`http://user:pass@host/v1?api_key=...`,
//! as LiteLLM or Azure-style gateways accept). Every message lmc prints or
//! writes names the server by [`redact`]ed URL only, so a password never
//! reaches stderr, `--json`, `--results`, JUnit, HTML, Markdown or traces:
//! the HTTP backend keeps the redacted form beside the real one and formats
//! errors with it, which is redaction at the source rather than scrubbing
//! every report writer. Paths are joined with the `url` crate (through
//! reqwest's re-export) so a query string on the base URL stays a query
//! string instead of swallowing `/chat/completions`.

use reqwest::Url;

/// What replaces a secret in a printed URL.
const MASK: &str = "***";

/// `url` with its user name, password and every query value masked; the
/// scheme, host, port, path and query keys stay, so the message still says
/// which server and which options. Text that is not a URL is returned
/// with anything between `://` and `@` masked, as a fallback.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => redact_parsed(&u),
        Err(_) => redact_unparsed(url),
    }
}

fn redact_parsed(u: &Url) -> String {
    if u.cannot_be_a_base() {
        // `mailto:bob:pw@x`-like: no host part to keep apart from secrets.
        return format!("{}:{MASK}", u.scheme());
    }
    let mut u = u.clone();
    if !u.username().is_empty() {
        // Setting a user name only fails for URLs that cannot have one
        // (those have none to hide).
        let _ = u.set_username(MASK);
    }
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
    }
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if keys.is_empty() {
            u.set_query(None);
        } else {
            let mut q = u.query_pairs_mut();
            q.clear();
            for k in &keys {
                q.append_pair(k, MASK);
            }
        }
    }
    u.set_fragment(None);
    u.to_string()
}

/// Best effort for a string the URL parser refused: mask a `user:pass@`
/// part and drop everything after `?`.
fn redact_unparsed(s: &str) -> String {
    let s = s.split(['?', '#']).next().unwrap_or(s);
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://{MASK}@{}", &rest[at + 1..]),
                None => s.to_string(),
            }
        }
        None => match s.rfind('@') {
            Some(at) => format!("{MASK}@{}", &s[at + 1..]),
            None => s.to_string(),
        },
    }
}

/// The secret-looking parts of `url` (password, user name, query values),
/// raw and percent-decoded, at least 4 characters long (shorter ones would
/// mask ordinary words): what [`scrub`] removes from server-sent text.
pub fn secrets(url: &str) -> Vec<String> {
    let Ok(u) = Url::parse(url) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut add = |raw: &str| {
        let decoded = percent_decode(raw);
        for v in [raw.to_string(), decoded] {
            if v.chars().count() >= 4 && !out.contains(&v) {
                out.push(v);
            }
        }
    };
    if let Some(p) = u.password() {
        add(p);
        add(u.username());
    }
    for (_, v) in u.query_pairs() {
        add(&v);
    }
    if let Some(q) = u.query() {
        for pair in q.split('&') {
            if let Some((_, v)) = pair.split_once('=') {
                add(v);
            }
        }
    }
    // Longest first, so a secret containing another is masked whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` with every one of `secrets` replaced by `***` (for text a server
/// sent back, which may echo what it was given).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_string();
    for s in secrets {
        if t.contains(s.as_str()) {
            t = t.replace(s.as_str(), MASK);
        }
    }
    t
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The chat-completions endpoint under `base`: `/chat/completions` is
/// appended to the path, and the base's query string (if any) is kept as
/// the query. The error names the base URL redacted.
pub fn chat_endpoint(base: &str) -> Result<Url, String> {
    let mut u =
        Url::parse(base.trim()).map_err(|e| format!("invalid base URL `{}`: {e}", redact(base)))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "invalid base URL `{}`: the scheme must be http or https",
            redact(base)
        ));
    }
    u.set_fragment(None);
    {
        let mut segs = u
            .path_segments_mut()
            .map_err(|_| format!("invalid base URL `{}`: it cannot take a path", redact(base)))?;
        segs.pop_if_empty().push("chat").push("completions");
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_query_values_are_masked() {
        let r = redact("http://user:s3cret@host:8080/v1?api_key=abc123&x=1");
        assert!(!r.contains("s3cret") && !r.contains("abc123") && !r.contains("user"));
        assert!(r.starts_with("http://***:***@host:8080/v1?"), "{r}");
        assert!(r.contains("api_key=") && r.contains("x="), "{r}");
        assert_eq!(redact("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        // Not a URL: still no password.
        let r = redact("ht!tp://bob:pw@host/v1?k=v");
        assert!(!r.contains("pw") && !r.contains("k=v"), "{r}");
    }

    #[test]
    fn echoed_secrets_are_scrubbed() {
        let sec = secrets("http://bob:pa%2Fss99@h/v1?api_key=abcd1234&x=y");
        let msg = "bad key abcd1234 for bob with pa/ss99 or pa%2Fss99 (x=y)";
        let out = scrub(msg, &sec);
        assert_eq!(out, "bad key *** for bob with *** or *** (x=y)");
    }

    #[test]
    fn path_is_joined_before_the_query() {
        let u = chat_endpoint("http://h:1/v1?x=y").unwrap();
        assert_eq!(u.as_str(), "http://h:1/v1/chat/completions?x=y");
        let u = chat_endpoint("http://h/v1/").unwrap();
        assert_eq!(u.as_str(), "http://h/v1/chat/completions");
        let u = chat_endpoint("http://h").unwrap();
        assert_eq!(u.as_str(), "http://h/chat/completions");
        let e = chat_endpoint("mailto:bob:pw@x").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
        let e = chat_endpoint("http://bob:pw@[::1").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}
