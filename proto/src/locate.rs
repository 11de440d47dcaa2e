//! Finding the management socket from mailproxyd's config file (for
//! mailproxyctl's and the TUI's `--config FILE`), and which config file that
//! is when none is given.

use std::path::{Path, PathBuf};

/// Where the socket is, according to a mailproxyd config file, and whether
/// management is enabled there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketLocation {
    /// The socket path.
    pub path: PathBuf,
    /// `[Management] Enable`.
    pub enabled: bool,
}

fn get<'a>(table: &'a toml::Table, name: &str) -> Option<&'a toml::Value> {
    table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Reads `[Management] Path`, defaulting to `<DataDir>/management_sock`
/// (key names are case-insensitive, as for the daemon).
pub fn from_config_text(text: &str) -> Result<SocketLocation, String> {
    let root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().replace('\n', " "))?;
    let section = |name| get(&root, name).and_then(|v| v.as_table());
    let management = section("Management");
    let enabled = management
        .and_then(|m| get(m, "Enable"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if let Some(path) = management
        .and_then(|m| get(m, "Path"))
        .and_then(|v| v.as_str())
    {
        return Ok(SocketLocation {
            path: PathBuf::from(path),
            enabled,
        });
    }
    let data_dir = section("Proxy")
        .and_then(|p| get(p, "DataDir"))
        .and_then(|v| v.as_str())
        .ok_or("no [Proxy] DataDir and no [Management] Path")?;
    Ok(SocketLocation {
        path: Path::new(data_dir).join("management_sock"),
        enabled,
    })
}

/// [`from_config_text`] on a file.
pub fn from_config_file(path: &Path) -> Result<SocketLocation, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file '{}': {e}", path.display()))?;
    from_config_text(&text).map_err(|e| format!("config file '{}': {e}", path.display()))
}

/// The config file the tools read when neither `--config` nor
/// `$MAILPROXYD_CONFIG` names one: `./katzenpost.toml` if it exists (the
/// daemon's own default), else the per-user
/// `$XDG_CONFIG_HOME/mailproxy/mailproxyd.toml` (`~/.config/...`) if it
/// exists (`scripts/demo` points it at the demo's config), else
/// `katzenpost.toml` (so that the error names the daemon's default).
pub fn default_config() -> PathBuf {
    let local = PathBuf::from(LOCAL_CONFIG);
    if local.exists() {
        return local;
    }
    match user_config() {
        Some(user) if user.exists() => user,
        _ => local,
    }
}

/// The daemon's default config file, in the working directory.
pub const LOCAL_CONFIG: &str = "katzenpost.toml";

/// `$XDG_CONFIG_HOME/mailproxy/mailproxyd.toml`, with `$HOME/.config` when
/// `XDG_CONFIG_HOME` is unset or not absolute; `None` without either.
pub fn user_config() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        })?;
    Some(base.join("mailproxy").join("mailproxyd.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_and_default() {
        let loc = from_config_text(
            "[Proxy]\nDataDir = \"/d\"\n[Management]\nEnable = true\nPath = \"/s/sock\"\n",
        )
        .unwrap();
        assert_eq!(
            loc,
            SocketLocation {
                path: "/s/sock".into(),
                enabled: true
            }
        );
        let loc = from_config_text("[proxy]\ndatadir = \"/d\"\n").unwrap();
        assert_eq!(
            loc,
            SocketLocation {
                path: "/d/management_sock".into(),
                enabled: false
            }
        );
        assert!(from_config_text("[Logging]\n").is_err());
        assert!(from_config_text("[Proxy\n").is_err());
    }
}
