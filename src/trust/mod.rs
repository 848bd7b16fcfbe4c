//! The trust boundary: what the person running lmc allowed, as opposed to
//! what the files under test ask for.
//!
//! Programs, artifacts, datasets and `lmc.yaml` arrive in pull requests, so
//! nothing written in them may start a process, read an environment variable
//! the runner did not name, or send a credential to a host the runner did not
//! choose. Those powers are granted only from outside the repository: a
//! command-line flag (`--allow-exec`, `--allow-host`, `--allow-key-env`), an
//! environment variable (`LMC_ALLOW_EXEC`, `LMC_ALLOW_HOSTS`,
//! `LMC_ALLOW_KEY_ENVS`) or the user's own config file
//! (`$LMC_CONFIG`, else `$XDG_CONFIG_HOME/lmc/config.yaml`, else
//! `~/.config/lmc/config.yaml`). This module resolves those grants once
//! ([`Trust`]), remembers who gave each one (for messages), and locates the
//! declarations in the files (file:line:col) so a refusal can say what was
//! refused, where it was asked for, and exactly how to allow it.
//! [`exec`] applies the rule to processes, [`credentials`] to API keys.

pub mod credentials;
pub mod exec;
pub mod locate;

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub use locate::{Declared, SourceMap};

/// Who granted a permission (named in messages, so a surprising grant can be
/// traced to its source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A command-line flag, e.g. `--allow-exec`.
    Flag(String),
    /// An environment variable, e.g. `LMC_ALLOW_EXEC`.
    Env(String),
    /// The user config file.
    UserConfig(PathBuf),
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Flag(s) => write!(f, "the flag {s}"),
            Grant::Env(s) => write!(f, "${s}"),
            Grant::UserConfig(p) => write!(f, "the user config {}", p.display()),
        }
    }
}

/// A host the runner allows credentials to go to: `host` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGrant {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// When given, only this port; else any port.
    pub port: Option<u16>,
    pub by: Grant,
}

impl HostGrant {
    fn parse(text: &str, by: Grant) -> Result<HostGrant, String> {
        let t = text.trim();
        // Accept a whole URL too: people paste base URLs.
        let t = t.split_once("://").map_or(t, |(_, rest)| rest);
        let t = t.split('/').next().unwrap_or(t);
        let t = t.rsplit_once('@').map_or(t, |(_, h)| h);
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            // [v6]:port
            let (h, after) = rest.split_once(']').ok_or_else(|| bad_host(text))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad_host(text))?),
                None if after.is_empty() => None,
                None => return Err(bad_host(text)),
            };
            (h.to_string(), port)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (
                    h.to_string(),
                    Some(p.parse::<u16>().map_err(|_| bad_host(text))?),
                ),
                _ => (t.to_string(), None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(bad_host(text));
        }
        Ok(HostGrant {
            host: host.to_ascii_lowercase(),
            port,
            by,
        })
    }

    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && (self.port.is_none() || self.port == port)
    }
}

fn bad_host(text: &str) -> String {
    format!("`{text}` is not a host (expected `name`, `name:port` or `[v6]:port`)")
}

/// The flags of the command line that grant permissions.
#[derive(Debug, Clone, Default)]
pub struct TrustFlags {
    pub allow_exec: bool,
    pub allow_hosts: Vec<String>,
    pub allow_key_envs: Vec<String>,
}

/// What the runner allowed, and who allowed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trust {
    /// Starting processes (command metrics, command tools, rewards).
    pub exec: Option<Grant>,
    /// Hosts that may receive a key (besides base URLs the runner gave).
    pub hosts: Vec<HostGrant>,
    /// Key variables the runner named (besides `--api-key-env` itself).
    pub key_envs: Vec<(String, Grant)>,
    /// The user config file consulted or that would be (for hints).
    pub config_path: Option<PathBuf>,
}

/// The user config file, `config.yaml`. Only grants live here: it is the
/// runner's, never the repository's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserConfig {
    #[serde(default)]
    allow_exec: bool,
    #[serde(default)]
    allow_hosts: Vec<String>,
    #[serde(default)]
    allow_key_envs: Vec<String>,
}

/// Environment variables read by [`Trust::resolve`].
pub const ENV_ALLOW_EXEC: &str = "LMC_ALLOW_EXEC";
pub const ENV_ALLOW_HOSTS: &str = "LMC_ALLOW_HOSTS";
pub const ENV_ALLOW_KEY_ENVS: &str = "LMC_ALLOW_KEY_ENVS";
pub const ENV_CONFIG: &str = "LMC_CONFIG";

impl Trust {
    /// Resolve the grants from the flags, the environment and the user
    /// config file. A malformed grant is an error (never silently ignored:
    /// a typo must not leave the runner believing something is allowed or
    /// refused when it is not).
    pub fn resolve(flags: &TrustFlags) -> Result<Trust, String> {
        let mut t = Trust::default();
        let (path, explicit) = user_config_path();
        t.config_path = path.clone();
        if let Some(p) = path {
            match std::fs::read_to_string(&p) {
                Ok(text) => t.apply_config(&p, &text)?,
                Err(e) if explicit || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!(
                        "cannot read the user config {}: {e} (named by ${ENV_CONFIG} or the default location)",
                        p.display()
                    ))
                }
                Err(_) => {}
            }
        }
        if let Some(v) = std::env::var_os(ENV_ALLOW_EXEC) {
            let v = v.to_string_lossy().trim().to_ascii_lowercase();
            match v.as_str() {
                "1" | "true" | "yes" | "on" => t.exec = Some(Grant::Env(ENV_ALLOW_EXEC.into())),
                "" | "0" | "false" | "no" | "off" => {}
                other => {
                    return Err(format!(
                        "${ENV_ALLOW_EXEC} is `{other}`; use 1 to allow running processes, 0 (or unset) to refuse"
                    ))
                }
            }
        }
        if flags.allow_exec {
            t.exec = Some(Grant::Flag("--allow-exec".into()));
        }
        if let Ok(v) = std::env::var(ENV_ALLOW_HOSTS) {
            for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                let g = HostGrant::parse(h, Grant::Env(ENV_ALLOW_HOSTS.into()))
                    .map_err(|e| format!("${ENV_ALLOW_HOSTS}: {e}"))?;
                t.hosts.push(g);
            }
        }
        for h in &flags.allow_hosts {
            let g = HostGrant::parse(h, Grant::Flag("--allow-host".into()))
                .map_err(|e| format!("--allow-host: {e}"))?;
            t.hosts.push(g);
        }
        if let Ok(v) = std::env::var(ENV_ALLOW_KEY_ENVS) {
            for k in v.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                t.push_key_env(k, Grant::Env(ENV_ALLOW_KEY_ENVS.into()))?;
            }
        }
        for k in &flags.allow_key_envs {
            t.push_key_env(k, Grant::Flag("--allow-key-env".into()))?;
        }
        Ok(t)
    }

    fn apply_config(&mut self, path: &Path, text: &str) -> Result<(), String> {
        let where_ = || format!("user config {}", path.display());
        if text.trim().is_empty() {
            return Ok(());
        }
        let doc = crate::yaml::parse(text).map_err(|mut d| {
            d.file = Some(path.to_path_buf());
            d.to_string().trim_start_matches("error: ").to_string()
        })?;
        let cfg: UserConfig = serde_json::from_value(doc.root.to_json()).map_err(|e| {
            format!(
                "{}: {e} (it takes allow_exec, allow_hosts, allow_key_envs)",
                where_()
            )
        })?;
        let by = Grant::UserConfig(path.to_path_buf());
        if cfg.allow_exec {
            self.exec = Some(by.clone());
        }
        for h in &cfg.allow_hosts {
            let g = HostGrant::parse(h, by.clone())
                .map_err(|e| format!("{}: allow_hosts: {e}", where_()))?;
            self.hosts.push(g);
        }
        for k in &cfg.allow_key_envs {
            self.push_key_env(k, by.clone())
                .map_err(|e| format!("{}: {e}", where_()))?;
        }
        Ok(())
    }

    fn push_key_env(&mut self, name: &str, by: Grant) -> Result<(), String> {
        let n = name.trim();
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{name}` is not an environment variable name (letters, digits, _)"
            ));
        }
        self.key_envs.push((n.to_string(), by));
        Ok(())
    }

    /// Who allowed `host` (with `port`) to receive keys, if anyone.
    pub fn host_grant(&self, host: &str, port: Option<u16>) -> Option<&HostGrant> {
        self.hosts.iter().find(|g| g.matches(host, port))
    }

    /// Who named `var` as a key variable, if anyone (besides the flag
    /// `--api-key-env`, which the caller knows about).
    pub fn key_env_grant(&self, var: &str) -> Option<&Grant> {
        self.key_envs.iter().find(|(k, _)| k == var).map(|(_, g)| g)
    }

    /// How to point at the user config in a hint.
    pub fn config_hint(&self) -> String {
        match &self.config_path {
            Some(p) => p.display().to_string(),
            None => "~/.config/lmc/config.yaml".into(),
        }
    }
}

/// The user config file: `$LMC_CONFIG` (explicit; empty means none), else
/// `$XDG_CONFIG_HOME/lmc/config.yaml`, else `$HOME/.config/lmc/config.yaml`.
/// The bool says whether the path was named explicitly (then it must exist).
pub fn user_config_path() -> (Option<PathBuf>, bool) {
    if let Some(p) = std::env::var_os(ENV_CONFIG) {
        if p.is_empty() {
            return (None, false);
        }
        return (Some(PathBuf::from(p)), true);
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return (
            Some(PathBuf::from(x).join("lmc").join("config.yaml")),
            false,
        );
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => (
            Some(
                PathBuf::from(h)
                    .join(".config")
                    .join("lmc")
                    .join("config.yaml"),
            ),
            false,
        ),
        None => (None, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_grants_parse_names_ports_and_urls() {
        let by = || Grant::Flag("--allow-host".into());
        let g = HostGrant::parse("LLM.example.com", by()).unwrap();
        assert_eq!((g.host.as_str(), g.port), ("llm.example.com", None));
        assert!(g.matches("llm.example.com", Some(8443)));
        let g = HostGrant::parse("localhost:8000", by()).unwrap();
        assert!(g.matches("localhost", Some(8000)));
        assert!(!g.matches("localhost", Some(8001)));
        let g = HostGrant::parse("http://u:p@10.0.0.2:9000/v1", by()).unwrap();
        assert_eq!((g.host.as_str(), g.port), ("10.0.0.2", Some(9000)));
        let g = HostGrant::parse("[::1]:8080", by()).unwrap();
        assert_eq!((g.host.as_str(), g.port), ("::1", Some(8080)));
        assert!(HostGrant::parse("host:notaport", by()).is_err());
        assert!(HostGrant::parse("", by()).is_err());
    }

    #[test]
    fn user_config_refuses_unknown_keys() {
        let mut t = Trust::default();
        let p = Path::new("/u/config.yaml");
        t.apply_config(
            p,
            "allow_exec: true\nallow_hosts: [a.example:443]\nallow_key_envs: [K_1]\n",
        )
        .unwrap();
        assert_eq!(t.exec, Some(Grant::UserConfig(p.into())));
        assert!(t.host_grant("a.example", Some(443)).is_some());
        assert!(t.key_env_grant("K_1").is_some());
        let err = Trust::default()
            .apply_config(p, "allow_exce: true\n")
            .unwrap_err();
        assert!(err.contains("allow_exce"), "{err}");
        let err = Trust::default()
            .apply_config(p, "allow_key_envs: [\"A B\"]\n")
            .unwrap_err();
        assert!(err.contains("not an environment variable"), "{err}");
    }
}
