//! API keys: read and sent only where the runner allowed.
//!
//! The rule (docs/security.md states it for users). A request to base URL
//! `U` carries the key held in variable `K` only when
//!
//! 1. `K` is a well-known provider variable and `U` is that provider's own
//!    host over HTTPS (`OPENAI_API_KEY` → `https://api.openai.com`), or
//! 2. the runner named `K` (`--api-key-env`, `$LMC_API_KEY_ENV`,
//!    `--allow-key-env`, `$LMC_ALLOW_KEY_ENVS`, `allow_key_envs:` in the
//!    user config) **and** chose `U` (`--base-url`, `$LMC_BASE_URL`, lmc's
//!    default URL) or allowed its host (`--allow-host`, `$LMC_ALLOW_HOSTS`,
//!    `allow_hosts:`).
//!
//! Otherwise the run stops before any request, and before the variable is
//! even read, with an error naming the variable, the host, where the files
//! declared them and how to allow it. Requests without a key are not
//! restricted: a program may name a local server it needs no key for. With
//! `--offline` nothing is sent and no key is read, so nothing is checked.

use super::{Declared, Trust};

/// Well-known key variables and the one host each belongs to.
pub const PROVIDER_KEYS: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "api.openai.com"),
    ("ANTHROPIC_API_KEY", "api.anthropic.com"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com"),
    ("MISTRAL_API_KEY", "api.mistral.ai"),
    ("GROQ_API_KEY", "api.groq.com"),
    ("TOGETHER_API_KEY", "api.together.xyz"),
    ("FIREWORKS_API_KEY", "api.fireworks.ai"),
    ("DEEPSEEK_API_KEY", "api.deepseek.com"),
    ("OPENROUTER_API_KEY", "openrouter.ai"),
    ("CEREBRAS_API_KEY", "api.cerebras.ai"),
];

/// The provider host of a well-known key variable.
pub fn provider_host(var: &str) -> Option<&'static str> {
    PROVIDER_KEYS
        .iter()
        .find(|(k, _)| *k == var)
        .map(|(_, h)| *h)
}

/// Where a resolved LM value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A flag, e.g. `--base-url`.
    Flag(&'static str),
    /// An environment variable, e.g. `LMC_BASE_URL`.
    Env(&'static str),
    /// lmc's own default (`provider: openai` with no URL).
    Default,
    /// A program, artifact or `lmc.yaml` (location when known).
    File(Option<Declared>),
}

impl Origin {
    /// Values the runner chose (not a file under test).
    fn runner_chose(&self) -> bool {
        !matches!(self, Origin::File(_))
    }
}

/// The credential rule as the CLI sets it: the runner's grants (where each
/// LM's URL and key variable came from is in its `ResolvedLm` sources).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CredentialPolicy {
    pub trust: Trust,
}

/// One resolved URL and key variable with their origins.
pub struct KeyUse<'a> {
    pub base_urls: &'a [String],
    pub urls_from: Origin,
    pub var: &'a str,
    pub var_from: Origin,
}

impl CredentialPolicy {
    /// Check every base URL of `u`; the first refused one is the error.
    pub fn check(&self, u: &KeyUse) -> Result<(), String> {
        let var = u.var;
        let named_by_runner = u.var_from.runner_chose() || self.trust.key_env_grant(var).is_some();
        for url in u.base_urls {
            let Ok(parsed) = reqwest::Url::parse(url) else {
                // Not a URL: the backend reports it; never send a key there.
                return Err(format!(
                    "refused to send the API key in `{var}`: the base URL is not a valid URL"
                ));
            };
            let host = parsed
                .host_str()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            let port = parsed.port_or_known_default();
            let own_provider = provider_host(var)
                .is_some_and(|h| parsed.scheme() == "https" && host == h && port == Some(443));
            let url_ok = u.urls_from.runner_chose() || self.trust.host_grant(&host, port).is_some();
            if own_provider || (named_by_runner && url_ok) {
                continue;
            }
            return Err(self.refusal(u, &host, port, named_by_runner, url_ok));
        }
        Ok(())
    }

    fn refusal(
        &self,
        u: &KeyUse,
        host: &str,
        port: Option<u16>,
        named: bool,
        url_ok: bool,
    ) -> String {
        let var = u.var;
        let shown = match (port, host.contains(':')) {
            (Some(p), true) => format!("[{host}]:{p}"),
            (Some(p), false) => format!("{host}:{p}"),
            (None, _) => host.to_string(),
        };
        let why = match (named, url_ok) {
            (false, false) => {
                "a file chose both the variable and the host, and you allowed neither"
            }
            (false, true) => "a file chose the variable, and you did not name it",
            (true, false) => "a file chose the host, and you did not allow it",
            (true, true) => "not allowed",
        };
        let mut msg = format!("refused to send the API key in `{var}` to {shown}: {why}");
        let mut declared = Vec::new();
        if let Origin::File(d) = &u.var_from {
            declared.push(where_(d, "the key variable"));
        }
        if let Origin::File(d) = &u.urls_from {
            declared.push(where_(d, "the base URL"));
        }
        for line in declared {
            msg.push_str(&format!("\n  --> {line}"));
        }
        let cfg = self.trust.config_hint();
        let mut fixes = Vec::new();
        if !named {
            fixes.push(format!(
                "name the variable yourself: --api-key-env {var} (or {}={var}, or `allow_key_envs: [{var}]` in {cfg})",
                super::ENV_ALLOW_KEY_ENVS
            ));
        }
        if !url_ok {
            fixes.push(format!(
                "allow the host: --allow-host {shown} (or {}={shown}, or `allow_hosts: [\"{shown}\"]` in {cfg}), or give the URL yourself with --base-url",
                super::ENV_ALLOW_HOSTS
            ));
        }
        msg.push_str(&format!(
            "\n   = help: if you trust this server with that key, {}; a server that needs no key needs no api_key_env",
            fixes.join("; and ")
        ));
        msg
    }
}

fn where_(d: &Option<Declared>, what: &str) -> String {
    match d {
        Some(d) => format!("{d}: {what}"),
        None => format!("{what}: declared in the program's LM settings"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{Grant, HostGrant};

    fn use_<'a>(urls: &'a [String], uf: Origin, var: &'a str, vf: Origin) -> KeyUse<'a> {
        KeyUse {
            base_urls: urls,
            urls_from: uf,
            var,
            var_from: vf,
        }
    }

    #[test]
    fn the_rule() {
        let p = CredentialPolicy::default();
        let file = || Origin::File(None);
        let attacker = vec!["http://attacker.example/v1".to_string()];
        let openai = vec!["https://api.openai.com/v1".to_string()];
        let local = vec!["http://127.0.0.1:8000/v1".to_string()];
        // A file may bind a well-known variable to its own provider only.
        assert!(p
            .check(&use_(&openai, file(), "OPENAI_API_KEY", file()))
            .is_ok());
        let http_openai = vec!["http://api.openai.com/v1".to_string()];
        assert!(p
            .check(&use_(&http_openai, file(), "OPENAI_API_KEY", file()))
            .is_err());
        let e = p
            .check(&use_(&attacker, file(), "OPENAI_API_KEY", file()))
            .unwrap_err();
        assert!(e.contains("`OPENAI_API_KEY` to attacker.example:80"), "{e}");
        assert!(p
            .check(&use_(&openai, file(), "GH_SECRET_TOKEN", file()))
            .is_err());
        // The runner's URL and the runner's variable: allowed.
        let cli = Origin::Flag("--base-url");
        assert!(p
            .check(&use_(
                &local,
                cli.clone(),
                "MY_KEY",
                Origin::Flag("--api-key-env")
            ))
            .is_ok());
        // The runner's URL, the file's variable: refused (even well-known).
        let e = p
            .check(&use_(&local, cli, "OPENAI_API_KEY", file()))
            .unwrap_err();
        assert!(e.contains("--api-key-env OPENAI_API_KEY"), "{e}");
        // The runner's variable, the file's host: refused until allowed.
        let e = p
            .check(&use_(
                &local,
                file(),
                "MY_KEY",
                Origin::Env("LMC_API_KEY_ENV"),
            ))
            .unwrap_err();
        assert!(e.contains("--allow-host 127.0.0.1:8000"), "{e}");
        let mut allowed = CredentialPolicy::default();
        allowed.trust.hosts.push(HostGrant {
            host: "127.0.0.1".into(),
            port: Some(8000),
            by: Grant::Flag("--allow-host".into()),
        });
        assert!(allowed
            .check(&use_(
                &local,
                file(),
                "MY_KEY",
                Origin::Env("LMC_API_KEY_ENV")
            ))
            .is_ok());
        // An allowed host with a file-chosen variable the runner named.
        assert!(allowed
            .check(&use_(&local, file(), "MY_KEY", file()))
            .is_err());
        allowed
            .trust
            .key_envs
            .push(("MY_KEY".into(), Grant::Env("LMC_ALLOW_KEY_ENVS".into())));
        assert!(allowed
            .check(&use_(&local, file(), "MY_KEY", file()))
            .is_ok());
    }
}
