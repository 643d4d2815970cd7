//! Virtual paths: what a client names (`../x`, `/pub/a`, `sub/./b`) resolved against the
//! session's current directory into components below the user's root. `..` stops at the root,
//! so no name a client sends can address anything above it.

/// A path below the session root as its components (never `.`, `..`, empty or with `/`).
pub type VPath = Vec<String>;

/// Why a client's path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A NUL byte cannot name a file.
    #[error("file names cannot contain NUL")]
    Nul,
    /// Deeper than any real tree, probably an attack on our memory.
    #[error("path too deep")]
    TooDeep,
}

/// Deepest path accepted, in components.
pub const MAX_DEPTH: usize = 64;

/// Resolves `arg` (absolute from the user's root, or relative to `cwd`).
pub fn resolve(cwd: &[String], arg: &str) -> Result<VPath, PathError> {
    if arg.contains('\0') {
        return Err(PathError::Nul);
    }
    let mut out: VPath = if arg.starts_with('/') { Vec::new() } else { cwd.to_vec() };
    for comp in arg.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => {
                if out.len() >= MAX_DEPTH {
                    return Err(PathError::TooDeep);
                }
                out.push(c.to_string());
            }
        }
    }
    Ok(out)
}

/// The path as the client sees it: `/` or `/a/b`.
pub fn display(path: &[String]) -> String {
    if path.is_empty() { "/".to_string() } else { path.iter().map(|c| format!("/{c}")).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &[&str]) -> VPath {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        assert_eq!(resolve(&v(&["a"]), "../../../etc/passwd").unwrap(), v(&["etc", "passwd"]));
        assert_eq!(resolve(&v(&["a", "b"]), "/x/./y//z").unwrap(), v(&["x", "y", "z"]));
        assert_eq!(resolve(&v(&["a"]), "b/..").unwrap(), v(&["a"]));
        assert_eq!(resolve(&[], "..").unwrap(), v(&[]));
        assert_eq!(resolve(&[], "a\0b"), Err(PathError::Nul));
        assert_eq!(resolve(&[], &"a/".repeat(100)), Err(PathError::TooDeep));
        assert_eq!(display(&v(&["pub", "x y"])), "/pub/x y");
        assert_eq!(display(&[]), "/");
    }
}
