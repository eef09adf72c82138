//! The real `feiyan` binary, run as systemd would: `feiyan serve --config FILE` as a child
//! process, its standard error kept in a file the test can read at any time.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `feiyan serve` child; killed on drop.
pub struct Served {
    child: Child,
    /// Lines of standard output, passed on by a thread that keeps reading, so the server
    /// never blocks on a full pipe.
    stdout: mpsc::Receiver<String>,
    /// Standard error goes to this file; removed on drop.
    log: tempfile::NamedTempFile,
}

/// What `feiyan serve` printed by the time it was running.
pub struct Running {
    /// The HTTP(S) base URL without the trailing slash, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    /// The address of `base`.
    pub addr: SocketAddr,
    /// Every line printed so far: the "feiyan is running" line is followed at once by the
    /// certificate lines when HTTPS is on.
    pub printed: Vec<String>,
}

impl Served {
    /// Starts `feiyan serve --config config` in the configuration's folder. `env` is
    /// applied in order: `Some` sets a variable, `None` removes it from what the test has.
    pub fn start(config: &Path, env: &[(&str, Option<&str>)]) -> Served {
        let log = tempfile::NamedTempFile::new().expect("stderr file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_feiyan"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(config.parent().expect("the configuration's folder"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("stderr file"));
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command.spawn().expect("feiyan starts");
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served { child, stdout, log }
    }

    /// Waits (up to 30 s) for the "feiyan is running: URL" line.
    pub fn wait_running(&mut self) -> Running {
        off_the_runtime(|| {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut printed = Vec::new();
            while Instant::now() < deadline {
                if let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(200)) {
                    if let Some(rest) = line.strip_prefix("feiyan is running: ") {
                        let url = rest.split_whitespace().next().unwrap();
                        let base = url.trim_end_matches('/').to_string();
                        let addr = base.split("://").nth(1).unwrap().parse().unwrap();
                        printed.push(line);
                        // The certificate lines follow at once.
                        while let Ok(more) = self.stdout.recv_timeout(Duration::from_millis(300)) {
                            printed.push(more);
                        }
                        return Running {
                            base,
                            addr,
                            printed,
                        };
                    }
                    printed.push(line);
                }
                if let Some(status) = self.exited() {
                    panic!("feiyan exited with {status}: {}", self.stderr());
                }
            }
            panic!("feiyan did not start: {}", self.stderr());
        })
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The file standard error goes to.
    pub fn log(&self) -> &Path {
        self.log.path()
    }

    /// Names of the process's threads now (`/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        super::threads_of(&self.child.id().to_string())
    }

    /// Sends `signal` (`libc::SIGTERM`, `SIGHUP`, `SIGKILL`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        off_the_runtime(|| {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if let Some(status) = self.exited() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("feiyan's standard error:\n{}", self.stderr());
        }
    }
}

/// Runs the blocking `f`; inside a multi-threaded tokio test, lets the runtime move its
/// other tasks (the test's publishers and viewers) to another worker meanwhile.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
