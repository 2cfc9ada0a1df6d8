//! Saved contexts, as kubectl keeps them: where an operator API is and the token to use there,
//! so that `tenantctl` works through the API with a scoped token instead of the catalog's URL.
//! Kept in `$TENANTCTL_CONFIG`, else `$XDG_CONFIG_HOME/tenantctl/config.toml`, else
//! `~/.config/tenantctl/config.toml`; written readable by its owner only (it holds tokens).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tenancy::secret::Secret;

/// One context: an API and a token for it.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) api_url: String,
    pub(crate) token: Secret,
}

/// The contexts file.
#[derive(Debug, Default)]
pub(crate) struct Contexts {
    pub(crate) current: Option<String>,
    pub(crate) contexts: BTreeMap<String, Context>,
}

/// The file as written (the token in clear: the file is its owner's only).
#[derive(Default, Serialize, Deserialize)]
struct File {
    #[serde(rename = "current-context", default, skip_serializing_if = "Option::is_none")]
    current: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, FileContext>,
}

#[derive(Serialize, Deserialize)]
struct FileContext {
    #[serde(rename = "api-url")]
    api_url: String,
    token: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ContextError {
    #[error("no home directory to keep contexts in: set TENANTCTL_CONFIG")]
    NoHome,
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("no context {0:?} (tenantctl config get-contexts lists them; tenantctl login adds one)")]
    NoSuchContext(String),
}

impl tenancy::error::OperationError for ContextError {
    fn kind(&self) -> tenancy::error::ErrorKind {
        match self {
            Self::NoSuchContext(_) => tenancy::error::ErrorKind::NotFound,
            Self::NoHome | Self::File { .. } => tenancy::error::ErrorKind::Misconfigured,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NoSuchContext(_) => "not_found",
            Self::NoHome | Self::File { .. } => "invalid_configuration",
        }
    }
}

/// Says so on stderr when the contexts file (it holds tokens) may be read by others.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0) {
        crate::output::note(&format!(
            "warning: {} holds tokens and others may read it: chmod 600 it",
            path.display()
        ));
    }
}

/// Where the contexts are kept.
pub(crate) fn path() -> Result<PathBuf, ContextError> {
    if let Some(path) = std::env::var_os("TENANTCTL_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|home| PathBuf::from(home).join(".config"))
        })
        .ok_or(ContextError::NoHome)?;
    Ok(base.join("tenantctl").join("config.toml"))
}

impl Contexts {
    /// The saved contexts (none when the file does not exist).
    pub(crate) fn load() -> Result<Self, ContextError> {
        Self::load_from(&path()?)
    }

    /// Writes the contexts where [`load`](Self::load) reads them.
    pub(crate) fn save(&self) -> Result<(), ContextError> {
        self.save_to(&path()?)
    }

    fn load_from(path: &std::path::Path) -> Result<Self, ContextError> {
        let failed = |message: String| ContextError::File { path: path.display().to_string(), message };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(failed(e.to_string())),
        };
        // The parser's own message quotes the line, which may be a token's: only where it is.
        let file: File = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |span| text[..span.start.min(text.len())].lines().count().max(1));
            failed(format!("not a contexts file (TOML) at line {line}: {}", e.message()))
        })?;
        warn_if_readable_by_others(path);
        let mut contexts = BTreeMap::new();
        for (name, c) in file.contexts {
            // Checked again: the file may have been edited by hand.
            let api_url = crate::http_client::parse_base_url(
                &c.api_url,
                "a context's api-url",
                "https://ops.example.com",
                crate::http_client::Plaintext::LoopbackOnly,
            )
            .map_err(|e| failed(format!("context {name}: {e}")))?;
            contexts.insert(name, Context { api_url, token: Secret::new(c.token) });
        }
        Ok(Self { current: file.current, contexts })
    }

    /// Writes the contexts: to a new file only its owner may read, then renamed over the old.
    fn save_to(&self, path: &std::path::Path) -> Result<(), ContextError> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let failed = |message: String| ContextError::File { path: path.display().to_string(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| failed(e.to_string()))?;
        }
        let file = File {
            current: self.current.clone(),
            contexts: self
                .contexts
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        FileContext { api_url: c.api_url.clone(), token: c.token.expose().to_owned() },
                    )
                })
                .collect(),
        };
        let text = toml::to_string(&file).map_err(|e| failed(e.to_string()))?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(failed(e.to_string()));
        }
        Ok(())
    }

    /// The context named `name`, or the current one without a name; `None` when there is no
    /// current one.
    pub(crate) fn selected(&self, name: Option<&str>) -> Result<Option<(String, Context)>, ContextError> {
        let Some(name) = name.or(self.current.as_deref()) else { return Ok(None) };
        let context = self.contexts.get(name).ok_or_else(|| ContextError::NoSuchContext(name.to_owned()))?;
        Ok(Some((name.to_owned(), context.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_written_for_their_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("config.toml");
        assert!(Contexts::load_from(&file).unwrap().contexts.is_empty());
        let mut contexts = Contexts::default();
        contexts.contexts.insert(
            "prod".into(),
            Context { api_url: "https://ops.example.com".into(), token: Secret::new("tct_secret") },
        );
        contexts.current = Some("prod".into());
        contexts.save_to(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Contexts::load_from(&file).unwrap();
        let (name, context) = back.selected(None).unwrap().unwrap();
        assert_eq!(
            (name.as_str(), context.api_url.as_str(), context.token.expose()),
            ("prod", "https://ops.example.com", "tct_secret")
        );
        assert!(format!("{back:?}").contains("<redacted>") && !format!("{back:?}").contains("tct_secret"));
        assert!(matches!(back.selected(Some("staging")), Err(ContextError::NoSuchContext(_))));
    }
}
