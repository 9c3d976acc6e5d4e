//! Headless Chromium for page tests: the DOM after the page's scripts ran,
//! and screenshots.
//!
//! Each call runs one `chromium --headless` process with a fresh temporary
//! profile (`--user-data-dir`), bounded by a wall-clock timeout. Chromium
//! runs in its own process group; the whole group is killed when the call
//! times out or its future is dropped, so no renderer outlives the test.
//!
//! `--virtual-time-budget` lets the page's timers (polling, animations) run
//! for that much virtual time before the DOM is dumped or the screenshot
//! taken; Chromium waits for network requests in between, so a page that
//! polls every second gets about `budget / 1 s` answers.
//!
//! Chromium is found through `NEXUS_CHROMIUM`, then `PATH` and `.tools/bin`;
//! a missing binary is an [`Error::BinaryNotFound`] naming the install command.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> nexus_testkit::Result<()> {
//! let chromium = nexus_testkit::browser::Chromium::new()?;
//! let dom = chromium.dump_dom("data:text/html,<p id=x>hi</p>").await?;
//! assert!(dom.contains(r#"<p id="x">hi</p>"#));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::binary::CHROMIUM;
use crate::{Error, Result};

/// Default bound on one Chromium run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default virtual time given to the page's timers.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(3);
/// Default window size for screenshots (width, height).
pub const DEFAULT_WINDOW: (u32, u32) = (1280, 1400);
/// Most bytes of Chromium's standard error kept for an error message.
const STDERR_TAIL: usize = 4096;

/// A headless Chromium launcher. Cheap to clone; every call is a new process.
#[derive(Debug, Clone)]
pub struct Chromium {
    bin: PathBuf,
    timeout: Duration,
    budget: Duration,
    window: (u32, u32),
}

impl Chromium {
    /// Locates the binary (see the module docs).
    pub fn new() -> Result<Self> {
        Ok(Self {
            bin: CHROMIUM.locate()?,
            timeout: DEFAULT_TIMEOUT,
            budget: DEFAULT_BUDGET,
            window: DEFAULT_WINDOW,
        })
    }

    /// Bound on each run (wall clock); the process group is killed after it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Virtual time the page's timers get before the DOM or screenshot is taken.
    pub fn virtual_time_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Window size for screenshots, pixels.
    pub fn window_size(mut self, width: u32, height: u32) -> Self {
        self.window = (width, height);
        self
    }

    /// The serialised DOM of `url` after the virtual time budget.
    pub async fn dump_dom(&self, url: &str) -> Result<String> {
        let out = self.run(&["--dump-dom".to_owned()], url).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// A PNG screenshot of `url` after the virtual time budget, written to
    /// `path` (an error if Chromium did not write it).
    pub async fn screenshot(&self, url: &str, path: &Path) -> Result<()> {
        let _ = std::fs::remove_file(path);
        let (w, h) = self.window;
        self.run(
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={w},{h}"),
                "--hide-scrollbars".to_owned(),
            ],
            url,
        )
        .await?;
        if !path.is_file() {
            return Err(Error::Client {
                command: format!("chromium --screenshot {url}"),
                status: "exit status: 0".to_owned(),
                stderr: format!("no screenshot written to {}", path.display()),
            });
        }
        Ok(())
    }

    async fn run(&self, extra: &[String], url: &str) -> Result<Vec<u8>> {
        let profile = tempfile::tempdir()?;
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={}", self.budget.as_millis()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            binary: self.bin.display().to_string(),
            source,
        })?;
        let mut group = GroupGuard(child.id());
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("chromium ran for {:?} on {url}", self.timeout),
                )
            })??;
        // The browser exited by itself and took its children with it.
        group.0 = None;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail = &stderr[stderr.len().saturating_sub(STDERR_TAIL)..];
            return Err(Error::Client {
                command: format!("chromium {} {url}", extra.join(" ")),
                status: out.status.to_string(),
                stderr: tail.to_owned(),
            });
        }
        Ok(out.stdout)
    }
}

/// Kills Chromium's whole process group (browser, zygote, renderers) when
/// dropped before the browser exited: on a timeout or a cancelled test.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_scripts_before_dumping_the_dom() {
        let chromium = Chromium::new().unwrap();
        let page = "data:text/html,<p id=x>before</p><script>setTimeout(function(){document.getElementById('x').textContent='after'},500)</script>";
        let dom = chromium.dump_dom(page).await.unwrap();
        assert!(dom.contains(r#"<p id="x">after</p>"#), "{dom}");
    }

    #[tokio::test]
    async fn writes_a_png_screenshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shot.png");
        Chromium::new()
            .unwrap()
            .window_size(320, 200)
            .screenshot(
                "data:text/html,<body style='background:red'>x</body>",
                &path,
            )
            .await
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[tokio::test]
    async fn a_hung_run_is_bounded() {
        // A server that accepts connections (the kernel does) and never
        // answers: the page never finishes loading.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let chromium = Chromium::new().unwrap().timeout(Duration::from_secs(2));
        let started = std::time::Instant::now();
        let err = chromium.dump_dom(&url).await.unwrap_err();
        assert!(err.to_string().contains("chromium ran for"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
