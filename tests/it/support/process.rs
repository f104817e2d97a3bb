//! Runs the real `telemetron` binary as a child process in a temporary working directory,
//! so it never reads a stray `config.toml` and its dead-letter file is removed afterwards.
//! Log lines are read from the child's stderr, which needs `[log] format = "json"` (or
//! `TELEMETRON_LOG__FORMAT=json`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Maximum wait for the binary to log a line or to exit. A healthy debug build needs well
/// under a second for either, so reaching this means the binary hangs.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(15);

/// Pause between checks of whether the child has exited.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(5);

const BINARY: &str = env!("CARGO_BIN_EXE_telemetron");

/// A temporary working directory for one run of the binary.
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    /// Creates an empty directory.
    pub fn new() -> WorkDir {
        WorkDir {
            dir: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    /// Returns the path of the `telemetron` binary under test.
    pub fn binary() -> &'static Path {
        Path::new(BINARY)
    }

    /// Returns the directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `relative_path` inside the directory, creating parent directories,
    /// and returns the full path.
    pub fn write(&self, relative_path: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(relative_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the config file's directory");
        }
        std::fs::write(&path, text).expect("write the config file");
        path
    }

    /// Builds a command that runs the binary with `args` and `env` in this directory.
    /// `TELEMETRON_` variables inherited from the test's environment are removed, and
    /// `RUST_LOG` is set to `info` so the lifecycle lines the tests wait for are logged.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.command_for(Path::new(BINARY), args, env)
    }

    /// Like [`WorkDir::command`], for another program built on the library, such as an
    /// example that registers its own plugins.
    fn command_for(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(program);
        command.args(args).current_dir(self.dir.path()).env("RUST_LOG", "info");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TELEMETRON_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().copied());
        command
    }

    /// Runs the binary with `args` and `env` to its exit and returns its status and
    /// output. Kills the child and fails the test if it still runs after
    /// [`PROCESS_DEADLINE`], which happens when a configuration expected to fail starts the
    /// service instead.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Finished {
        let mut child = self
            .command(args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the telemetron binary");
        let stdout = read_all_in_thread(child.stdout.take().expect("stdout is piped"));
        let stderr = read_all_in_thread(child.stderr.take().expect("stderr is piped"));

        let status = wait_with_deadline(&mut child, Instant::now() + PROCESS_DEADLINE);
        let status = match status {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = stderr.join().expect("stderr reader thread");
                panic!("telemetron still ran after {PROCESS_DEADLINE:?} and was killed; stderr:\n{stderr}");
            }
        };
        Finished {
            status,
            stdout: stdout.join().expect("stdout reader thread"),
            stderr: stderr.join().expect("stderr reader thread"),
        }
    }

    /// Starts the binary with `args` and `env` and waits for the `telemetron listening` log
    /// line, which gives the bound address. The directory moves into the returned process,
    /// so it outlives the child. Fails the test if the child exits or stays silent before
    /// that line.
    pub fn spawn(self, args: &[&str], env: &[(&str, &str)]) -> ServiceProcess {
        self.spawn_program(Path::new(BINARY), args, env)
    }

    /// Like [`WorkDir::spawn`], for another program built on the library.
    pub fn spawn_program(self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> ServiceProcess {
        self.spawn_adjusted(program, args, env, |_| {})
    }

    /// Like [`WorkDir::spawn_program`], after `adjust` has changed the command, for example
    /// its user id.
    pub fn spawn_adjusted(
        self,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> ServiceProcess {
        let mut command = self.command_for(program, args, env);
        adjust(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the telemetron binary");
        let lines = send_lines_from(child.stderr.take().expect("stderr is piped"));
        let mut service = ServiceProcess {
            child,
            lines,
            stderr: Vec::new(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            _dir: self,
        };

        let listening = service.wait_for_log("telemetron listening");
        let address = listening["address"].as_str().unwrap_or_else(|| {
            panic!("the listening line has no address field: {listening}")
        });
        service.addr = address
            .parse()
            .unwrap_or_else(|error| panic!("listening address {address:?} is not a socket address: {error}"));
        service
    }
}

/// Exit status and output of a finished run.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Returns the stderr lines that are not JSON log lines: the messages written for a
    /// person, such as `telemetron: invalid configuration: ...`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter(|line| parse_log_line(line).is_none())
            .collect()
    }
}

/// A running `telemetron` child process. Dropping it kills the child if it still runs and
/// reaps it, so no test leaves a process behind, even when it fails.
pub struct ServiceProcess {
    child: Child,
    lines: Receiver<String>,
    stderr: Vec<String>,
    /// The address from the `telemetron listening` line.
    pub addr: SocketAddr,
    _dir: WorkDir,
}

impl ServiceProcess {
    /// Returns the child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (such as `libc::SIGTERM`) to the child's PID.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a PID fits in pid_t");
        // SAFETY: kill(2) takes plain integers and touches no memory of this process. The
        // PID cannot have been reused by another process, because the child is reaped only
        // in `wait_for_exit` or `drop`, and until then an exited child stays a zombie that
        // keeps its PID.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            result,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Returns the first JSON log line whose `message` starts with `message_start`, reading
    /// more stderr lines as needed. Lines read earlier are searched first, so a line logged
    /// before `telemetron listening` is still found. Fails the test if the child closes
    /// stderr or stays silent for [`PROCESS_DEADLINE`] first.
    pub fn wait_for_log(&mut self, message_start: &str) -> serde_json::Value {
        if let Some(found) = self.stderr.iter().find_map(|line| log_line_starting(line, message_start)) {
            return found;
        }
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    let found = log_line_starting(&line, message_start);
                    self.stderr.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no log line starting with {message_start:?} within {PROCESS_DEADLINE:?}; stderr so far:\n{}",
                    self.stderr_text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "telemetron closed stderr ({:?}) before logging {message_start:?}; stderr:\n{}",
                    self.child.try_wait(),
                    self.stderr_text()
                ),
            }
        }
    }

    /// Waits for the child to exit and returns its status. Fails the test after
    /// [`PROCESS_DEADLINE`].
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        self.wait_for_exit_within(PROCESS_DEADLINE).unwrap_or_else(|| {
            panic!(
                "telemetron did not exit within {PROCESS_DEADLINE:?}; stderr so far:\n{}",
                self.stderr_text()
            )
        })
    }

    /// Waits up to `timeout` for the child to exit, and returns `None` if it still runs.
    /// The stderr lines logged so far are then in [`ServiceProcess::stderr_text`].
    pub fn wait_for_exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_with_deadline(&mut self.child, Instant::now() + timeout);
        self.stderr.extend(self.lines.try_iter());
        status
    }

    /// Returns every stderr line read so far, for failure messages.
    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        // After SIGKILL this returns at once, so it needs no deadline.
        let _ = self.child.wait();
    }
}

/// Parses one stderr line as a JSON log object.
fn parse_log_line(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .filter(serde_json::Value::is_object)
}

fn log_line_starting(line: &str, message_start: &str) -> Option<serde_json::Value> {
    let value = parse_log_line(line)?;
    let matches = value["message"]
        .as_str()
        .is_some_and(|message| message.starts_with(message_start));
    matches.then_some(value)
}

/// Polls `try_wait` until the child exits or `deadline` passes. Returns `None` on timeout.
fn wait_with_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("check whether telemetron exited") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(EXIT_POLL_INTERVAL);
    }
}

/// Reads a pipe to its end on a thread, so a full pipe buffer never blocks the child.
fn read_all_in_thread(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Forwards stderr line by line on a thread, so readers can wait with a deadline and the
/// pipe keeps draining while no test reads it. The channel disconnects when stderr closes.
fn send_lines_from(stderr: ChildStderr) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}
