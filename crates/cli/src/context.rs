//! What every subcommand gets: the parsed `--config` file, and logging set up once.

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Shared state for subcommands: the config file's tables, one per service.
#[derive(Debug, Default)]
pub struct Context {
    config: toml::Table,
    path: Option<std::path::PathBuf>,
}

impl Context {
    /// Reads the TOML config file, if one was given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Context> {
        let Some(path) = path else { return Ok(Context::default()) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: toml::Table =
            text.parse().with_context(|| format!("config file {} is not valid TOML", path.display()))?;
        Ok(Context { config, path: Some(path.to_path_buf()) })
    }

    /// The config file given with --config, for services that re-read it (SIGHUP).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The config table `[name]` as `T`, or `fallback()` when the table is absent (for settings
    /// whose default is not `Default`, like the lab's embedded topology).
    pub fn section_or<T: DeserializeOwned>(
        &self,
        name: &str,
        fallback: impl FnOnce() -> T,
    ) -> anyhow::Result<T> {
        match self.config.get(name) {
            None => Ok(fallback()),
            Some(value) => value
                .clone()
                .try_into()
                .with_context(|| format!("config table [{name}] has a wrong or unknown key")),
        }
    }

    /// The service's config table `[name]` as `T`; `T::default()` when the table is absent.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> anyhow::Result<T> {
        self.section_or(name, T::default)
    }
}

/// Logs to stderr; `RUST_LOG` wins, else `-v` count picks the level (default: warnings only,
/// but services print their own one-line "listening on" notice).
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
