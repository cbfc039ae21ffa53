//! End-to-end test support: locating (and building, once) the workspace's
//! binaries, running them in throwaway homes, and scanning files for bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod pki;
pub mod world;

/// Path to a workspace binary (`satchel`, `satchel-sync`), built on first use
/// with the same cargo and profile as the running tests.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The whole workspace's binaries, as scripts/test.sh builds them:
        // building only two packages resolves features differently and
        // would relink both binaries for every test process.
        cmd.args(["build", "--workspace", "--bins"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build could not start");
        assert!(status.success(), "building the workspace binaries failed");
    });
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-exe> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    dir.join(name)
}

/// A `satchel` command for `home`, unlocking with `passphrase`.
pub fn satchel(home: &Path, passphrase: &str) -> Command {
    let mut cmd = Command::new(bin("satchel"));
    cmd.arg("--home")
        .arg(home)
        .env("SATCHEL_PASSPHRASE", passphrase)
        .env_remove("SATCHEL_HOME");
    cmd
}

/// Run and return output; panics with stderr when `expect_success` disagrees.
pub fn run(cmd: &mut Command, expect_success: bool) -> Output {
    let out = cmd.output().expect("command could not start");
    if out.status.success() != expect_success {
        panic!(
            "command {:?} {} (exit {:?})\nstdout:\n{}\nstderr:\n{}",
            cmd,
            if expect_success {
                "failed"
            } else {
                "unexpectedly succeeded"
            },
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Every file under `dir`, recursively, with its bytes, sorted by path.
pub fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("readable file");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    snapshot_files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p)
        .collect()
}

/// A `satchel-sync` relay running as a child process on loopback, with its
/// SQLite database and its log in a directory of the test's. Killed on drop.
pub struct Relay {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
    /// The extra flags it was started with (kept for a restart).
    extra: Vec<String>,
}

impl Relay {
    /// Start a relay on a free port.
    pub fn start(dir: &Path) -> Relay {
        Self::start_on(dir, "127.0.0.1:0", &[])
    }

    /// Start a relay on `listen` with extra flags.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Relay {
        Self::spawn(&bin("satchel-sync"), dir, listen, extra)
    }

    /// Start the relay binary `exe` (e.g. a release build for benchmarks).
    pub fn spawn(exe: &Path, dir: &Path, listen: &str, extra: &[&str]) -> Relay {
        Self::spawn_via(Command::new(exe), dir, listen, extra)
    }

    /// Start the relay through `launcher`: a command that runs the relay
    /// with the arguments appended to it (e.g. a shell that lowers a
    /// resource limit, then `exec`s [`bin`]`("satchel-sync")`).
    pub fn spawn_via(mut launcher: Command, dir: &Path, listen: &str, extra: &[&str]) -> Relay {
        use std::io::BufRead;
        std::fs::create_dir_all(dir).expect("relay directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("relay.log"))
            .expect("relay log");
        let mut child = launcher
            .arg("--listen")
            .arg(listen)
            .arg("--db")
            .arg(dir.join("relay.db"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("satchel-sync could not start");
        let stdout = child.stdout.take().expect("relay stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("relay printed its address");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from satchel-sync: {line:?}"));
        Relay {
            child,
            addr,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The relay's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The relay's base URL over TLS, by the name `localhost` (for a relay
    /// started with `--tls-cert` for that name).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The relay's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("relay.log")).unwrap_or_default()
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the relay with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Restart on the same address, with the same flags, after a kill.
    pub fn restart(&mut self) {
        let addr = self.addr.to_string();
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        for _ in 0..50 {
            let started = std::panic::catch_unwind(|| Self::start_on(&self.dir, &addr, &extra));
            if let Ok(relay) = started {
                *self = relay;
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the relay did not restart on {addr}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Validate FHIR R4 resources with PyPI `fhir.resources==6.4.0` (run by
/// `scripts/fhir_validate.py` in the venv `scripts/setup.sh` installs; the
/// command comes from `$SATCHEL_FHIR_VALIDATOR`, which `scripts/test.sh`
/// sets). Returns the validator's report; panics with it when any resource
/// is invalid. Without the validator the test fails when
/// `SATCHEL_REQUIRE_FIXTURES` is set (CI), else it is skipped with a note
/// and `None` is returned.
pub fn validate_fhir(resources: &[serde_json::Value]) -> Option<String> {
    let Ok(command) = std::env::var("SATCHEL_FHIR_VALIDATOR") else {
        assert!(
            std::env::var_os("SATCHEL_REQUIRE_FIXTURES").is_none(),
            "SATCHEL_FHIR_VALIDATOR is not set (run the tests with bash scripts/test.sh)"
        );
        println!("note: SATCHEL_FHIR_VALIDATOR not set; FHIR validation skipped");
        return None;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("resources.json");
    std::fs::write(
        &file,
        serde_json::to_vec(resources).expect("serialisable resources"),
    )
    .expect("write resources");
    let mut parts = command.split_whitespace();
    let program = parts.next().expect("validator command");
    let out = Command::new(program)
        .args(parts)
        .arg(&file)
        .output()
        .expect("the FHIR validator could not start");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fhir.resources refused what we exported:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("{} valid, 0 invalid", resources.len())),
        "validator did not check every resource:\n{report}"
    );
    Some(report)
}

/// Link a second device through the CLI: `link-device` on `a` prints a
/// one-time code, `join-device CODE` on `b` uses it. Both run with
/// `passphrase` against the relay at `relay_url`.
pub fn link_devices(a: &Path, b: &Path, passphrase: &str, relay_url: &str) {
    link_devices_with(a, b, passphrase, relay_url, &[]);
}

/// [`link_devices`] with extra global flags for both commands (e.g.
/// `--relay-ca FILE`).
pub fn link_devices_with(a: &Path, b: &Path, passphrase: &str, relay_url: &str, extra: &[&str]) {
    let mut offer = satchel(a, passphrase);
    offer
        .args(extra)
        .args(["link-device", "--server", relay_url, "--timeout", "60"]);
    let mut join = satchel(b, passphrase);
    join.args(extra);
    link_devices_via(offer, join);
}

/// Link a second device of the patient with any commands: `offer` runs
/// `link-device` for the existing device (with the flags it needs: relay,
/// `--timeout`, and a launcher such as `ip netns exec` around it) and
/// prints a one-time code; `join-device CODE` is appended to `join` (a
/// command for the new device). Both must succeed.
pub fn link_devices_via(mut offer: Command, mut join: Command) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut offer = offer
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("link-device could not start");
    let stdout = offer.stdout.take().expect("link-device stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining link-device's output so it never writes to a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pos) = line.find("satchel-link:") {
                let _ = tx.send(line[pos..].trim().to_string());
            }
        }
    });
    let code = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("link-device printed a code");
    run(join.args(["join-device", &code, "--timeout", "60"]), true);
    let out = offer.wait_with_output().expect("link-device exit status");
    assert!(
        out.status.success(),
        "link-device failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
