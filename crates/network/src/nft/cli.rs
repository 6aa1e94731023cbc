//! Applying transactions through the `nft` binary.

use super::Transaction;
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nft {what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading nft's JSON: {0}")]
    Parse(String),
    #[error("nftables (netlink): {what}: {reason}")]
    Netlink { what: String, reason: String },
}

/// Where transactions go. Narrow on purpose: a libnftables or netlink transport slots in
/// behind it.
pub trait Backend: Send {
    /// Applies `tx` atomically.
    fn apply(&self, tx: &Transaction) -> Result<(), NftError>;
    /// Whether table `ip <table>` exists.
    fn table_exists(&self, table: &str) -> Result<bool, NftError>;
    /// The names of the chains of `ip <table>` (empty when there is no such table).
    fn list_chains(&self, table: &str) -> Result<Vec<String>, NftError>;
    /// The names of the sets and maps of `ip <table>`.
    fn list_sets(&self, table: &str) -> Result<Vec<String>, NftError>;
    /// Deletes `ip <table>`; false when there was none.
    fn delete_table(&self, table: &str) -> Result<bool, NftError>;
}

/// The `nft` command, optionally behind a prefix such as `ip netns exec NAME` (tests).
#[derive(Clone, Debug)]
pub struct NftCli {
    argv: Vec<String>,
}

impl Default for NftCli {
    fn default() -> Self {
        NftCli::new()
    }
}

impl NftCli {
    /// `nft` in this process's network namespace.
    pub fn new() -> Self {
        NftCli {
            argv: vec!["nft".to_string()],
        }
    }

    /// `ip netns exec <netns> nft`: rules for a named network namespace.
    pub fn in_netns(netns: &str) -> Self {
        NftCli {
            argv: ["ip", "netns", "exec", netns, "nft"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        c
    }

    fn spawn_err(&self, source: std::io::Error) -> NftError {
        NftError::Spawn {
            program: self.argv.join(" "),
            source,
        }
    }

    /// Runs nft with `args`, returning stdout.
    fn run(&self, args: &[&str]) -> Result<String, NftError> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_err(e))?;
        if !out.status.success() {
            return Err(NftError::Failed {
                what: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The `name`s of the objects of kind `kind` (`chain`, `set`, `map`, `table`) in
    /// family ip that belong to `table` (any table for kind `table`).
    fn names(&self, args: &[&str], kind: &str, table: &str) -> Result<Vec<String>, NftError> {
        let text = self.run(args)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| NftError::Parse(e.to_string()))?;
        let items = v
            .get("nftables")
            .and_then(|n| n.as_array())
            .ok_or_else(|| NftError::Parse("no \"nftables\" array".into()))?;
        Ok(items
            .iter()
            .filter_map(|i| i.get(kind))
            .filter(|o| kind == "table" || o.get("table").and_then(|t| t.as_str()) == Some(table))
            .filter_map(|o| o.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .collect())
    }
}

impl Backend for NftCli {
    fn apply(&self, tx: &Transaction) -> Result<(), NftError> {
        let text = tx.render();
        let mut child = self
            .command()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_err(e))?;
        let write = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(text.as_bytes()));
        let out = child.wait_with_output().map_err(|e| self.spawn_err(e))?;
        if !out.status.success() {
            return Err(NftError::Failed {
                what: format!("-f - ({} commands)", tx.len()),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        if let Some(Err(e)) = write {
            return Err(self.spawn_err(e));
        }
        Ok(())
    }

    fn table_exists(&self, table: &str) -> Result<bool, NftError> {
        let tables = self.names(&["-j", "list", "tables", "ip"], "table", table)?;
        Ok(tables.iter().any(|t| t == table))
    }

    fn list_chains(&self, table: &str) -> Result<Vec<String>, NftError> {
        self.names(&["-j", "list", "chains", "ip"], "chain", table)
    }

    fn list_sets(&self, table: &str) -> Result<Vec<String>, NftError> {
        let mut sets = self.names(&["-t", "-j", "list", "sets", "ip"], "set", table)?;
        sets.extend(self.names(&["-t", "-j", "list", "maps", "ip"], "map", table)?);
        Ok(sets)
    }

    fn delete_table(&self, table: &str) -> Result<bool, NftError> {
        if !self.table_exists(table)? {
            return Ok(false);
        }
        self.run(&["delete", "table", "ip", table])?;
        Ok(true)
    }
}
