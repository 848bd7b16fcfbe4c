//! The flags that grant powers the files under test cannot grant
//! themselves (docs/security.md): running processes, sending a key to a
//! host, reading a key variable. Flattened into every command that runs a
//! program (through the LM flags), resolved with the environment and the
//! user config by [`crate::trust::Trust::resolve`], and checked before
//! anything runs.

use crate::settings::Target;
use crate::trust::{exec, locate, Trust, TrustFlags};

use super::CliError;

#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Trust options (see docs/security.md)")]
pub struct TrustArgs {
    /// Allow the program to start processes (command metrics, command
    /// tools, command rewards). Only for files you trust: never on an
    /// untrusted pull request [env: LMC_ALLOW_EXEC=1; user config:
    /// allow_exec: true].
    #[arg(long)]
    pub allow_exec: bool,

    /// Allow API keys to be sent to HOST (or HOST:PORT) when the program
    /// names it as a base URL (repeatable) [env: LMC_ALLOW_HOSTS=a,b; user
    /// config: allow_hosts].
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,

    /// Allow the program to name VAR as its API key variable (repeatable)
    /// [env: LMC_ALLOW_KEY_ENVS=A,B; user config: allow_key_envs].
    #[arg(long = "allow-key-env", value_name = "VAR")]
    pub allow_key_envs: Vec<String>,
}

impl TrustArgs {
    /// The runner's grants: these flags, the environment, the user config.
    pub fn resolve(&self) -> Result<Trust, CliError> {
        Trust::resolve(&TrustFlags {
            allow_exec: self.allow_exec,
            allow_hosts: self.allow_hosts.clone(),
            allow_key_envs: self.allow_key_envs.clone(),
        })
        .map_err(CliError::Input)
    }

    /// Refuse (exit 2) a run whose program, or `--metric`, would start a
    /// process the runner did not allow; with a grant, open the spawn sites.
    pub fn check_exec(&self, target: &Target, cli_metric: Option<&str>) -> Result<(), CliError> {
        let trust = self.resolve()?;
        let mut reqs = exec::requests(&target.program, &locate::program_source(target));
        if let Some(m) = cli_metric {
            // `--metric` replaces the program's metric.
            reqs.retain(|r| !r.at.path.starts_with("metric"));
            reqs.extend(exec::cli_metric_requests(m));
        }
        exec::check(&trust, &reqs).map_err(CliError::Input)?;
        if let Some(by) = &trust.exec {
            // Say once which grant let the files start processes, so a
            // stray LMC_ALLOW_EXEC or user config shows up in a CI log.
            if let Some(first) = reqs.first() {
                eprintln!(
                    "note: {} allows running processes: `{}` ({}){}",
                    by,
                    first.command,
                    first.what,
                    match reqs.len() {
                        1 => String::new(),
                        n => format!(" and {} more", n - 1),
                    }
                );
            }
            exec::permit();
        }
        Ok(())
    }
}
