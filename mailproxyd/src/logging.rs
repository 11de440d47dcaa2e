//! Logging: the original's five levels mapped onto `tracing`, to stdout or a 0600 file.
//!
//! | config level | shows tracing levels |
//! |---|---|
//! | `ERROR` | error |
//! | `WARNING` | error, warn |
//! | `NOTICE` (default) | error, warn, info |
//! | `INFO` | error, warn, info, debug |
//! | `DEBUG` | everything, trace included |
//!
//! Nothing in mailproxyd logs message contents or private keys at any level.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;

use crate::config::LoggingConfig;

/// A configured log level (the original daemon's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Normal operation (default).
    Notice,
    /// Details.
    Info,
    /// Everything.
    Debug,
}

impl LogLevel {
    /// The `tracing` filter for this level.
    pub fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Notice => LevelFilter::INFO,
            LogLevel::Info => LevelFilter::DEBUG,
            LogLevel::Debug => LevelFilter::TRACE,
        }
    }
}

impl FromStr for LogLevel {
    type Err = ();

    /// Case-insensitive; `WARN` is accepted for `WARNING`.
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "ERROR" => LogLevel::Error,
            "WARNING" | "WARN" => LogLevel::Warning,
            "NOTICE" => LogLevel::Notice,
            "INFO" => LogLevel::Info,
            "DEBUG" => LogLevel::Debug,
            _ => return Err(()),
        })
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log file could not be opened.
    #[error("cannot open log file '{path}': {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Installs the global subscriber for the daemon. Does nothing if logging is
/// disabled or a subscriber is already installed (as in tests).
pub fn init(config: &LoggingConfig) -> Result<(), LoggingError> {
    init_with(config, false)
}

/// As [`init`]; with `stderr`, logs that would go to stdout go to stderr
/// (for commands whose stdout is their output, such as `mailproxyd -g`).
pub fn init_with(config: &LoggingConfig, stderr: bool) -> Result<(), LoggingError> {
    if config.disable {
        return Ok(());
    }
    let builder = tracing_subscriber::fmt()
        .with_max_level(config.level.filter())
        .with_target(true);
    let result = match &config.file {
        None if stderr => builder.with_writer(std::io::stderr).try_init(),
        None => builder.with_writer(std::io::stdout).try_init(),
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.clone(),
                    source,
                })?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init()
        }
    };
    // An already installed subscriber is fine (library use, tests).
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively_and_map() {
        assert_eq!("notice".parse(), Ok(LogLevel::Notice));
        assert_eq!("Warning".parse(), Ok(LogLevel::Warning));
        assert_eq!("DEBUG".parse(), Ok(LogLevel::Debug));
        assert_eq!("verbose".parse::<LogLevel>(), Err(()));
        assert_eq!(LogLevel::Notice.filter(), LevelFilter::INFO);
        assert_eq!(LogLevel::Error.filter(), LevelFilter::ERROR);
        assert_eq!(LogLevel::Debug.filter(), LevelFilter::TRACE);
    }
}
