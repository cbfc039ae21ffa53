//! How the demo plays a party: it runs this very `satchel` binary as a
//! child process in that party's home (`--home NAME`, relative to the demo
//! directory), prints the command line and what the party sees, and hands
//! back the output so the story can check its expectation. Also a direct
//! sync between two parties (`satchel nearby listen` / `nearby sync` over
//! loopback, no relay), and the embedded relay the parties meet at, which
//! the story can take down and bring back.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The passphrase every demo home is created with (printed at the end, so a
/// user can carry on by hand with `--keep`).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Runs `satchel` commands in the demo directory.
pub struct Cli {
    exe: PathBuf,
    dir: PathBuf,
    server: RefCell<String>,
    columns: String,
}

impl Cli {
    pub fn new(dir: &Path, server: &str) -> Result<Cli> {
        Ok(Cli {
            exe: std::env::current_exe().context("cannot find the satchel binary")?,
            dir: dir.to_path_buf(),
            server: RefCell::new(server.to_string()),
            columns: std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<u16>().ok())
                .map_or(180, |c| c.saturating_sub(4))
                .to_string(),
        })
    }

    /// Point every later command at the relay's new address.
    pub fn set_server(&self, server: &str) {
        *self.server.borrow_mut() = server.to_string();
    }

    /// The demo directory, where every command runs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, home: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.current_dir(&self.dir)
            .arg("--home")
            .arg(home)
            .args(args)
            .env("SATCHEL_PASSPHRASE", PASSPHRASE)
            .env("SATCHEL_SERVER", self.server.borrow().as_str())
            // Children print into a pipe: size their tables to this
            // terminal when it says how wide it is, else wide enough for
            // the list table's every column.
            .env("COLUMNS", &self.columns)
            .stdin(Stdio::null());
        cmd
    }

    /// Print the command line as a shell would take it (long one-time
    /// codes shortened: they are single-use anyway).
    fn echo(home: &str, args: &[&str]) -> Result<()> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.len() > 48 && !a.contains(' ') {
                    format!("{}…", a.chars().take(40).collect::<String>())
                } else if a.is_empty()
                    || a.contains(|c: char| !(c.is_ascii_alphanumeric() || "-_./,:=@+".contains(c)))
                {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    (*a).to_string()
                }
            })
            .collect();
        outln!("  $ satchel --home {home} {}", shown.join(" "));
        Ok(())
    }

    fn output(&self, home: &str, args: &[&str]) -> Result<Output> {
        self.command(home, args)
            .output()
            .with_context(|| format!("could not run `satchel {}`", args.join(" ")))
    }

    /// Run, print the command and what it printed; fail if it failed.
    pub fn show(&self, home: &str, args: &[&str]) -> Result<String> {
        Self::echo(home, args)?;
        let out = self.output(home, args)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines() {
            outln!("    {line}");
        }
        if !out.status.success() {
            bail!(
                "`satchel {}` in {home} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }

    /// Run a `--json` command without printing it; its parsed output.
    pub fn json(&self, home: &str, args: &[&str]) -> Result<Value> {
        let out = self.output(home, args)?;
        if !out.status.success() {
            bail!(
                "`satchel {}` in {home} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("`satchel {}` did not print JSON", args.join(" ")))
    }

    /// Run a command that must be refused; prints the command and the
    /// refusal, returns the message.
    pub fn refused(&self, home: &str, args: &[&str]) -> Result<String> {
        Self::echo(home, args)?;
        let out = self.output(home, args)?;
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        for line in err.lines() {
            outln!("    {line}");
        }
        if out.status.success() {
            bail!("`satchel {}` in {home} was not refused", args.join(" "));
        }
        Ok(err)
    }

    /// `link-device` on `from` and `join-device` on `to`, at the same time
    /// (the first prints a one-time code and waits for the second).
    pub fn link(&self, from: &str, to: &str) -> Result<()> {
        let offer_args = ["link-device", "--timeout", "60"];
        Self::echo(from, &offer_args)?;
        let mut offer = self
            .command(from, &offer_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("could not start link-device")?;
        let stdout = offer.stdout.take().context("link-device has no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep reading so the child never writes into a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(pos) = line.find("satchel-link:") {
                    let _ = tx.send(line[pos..].trim().to_string());
                }
            }
        });
        let code = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(code) => code,
            Err(_) => {
                let _ = offer.kill();
                bail!("link-device printed no code within a minute");
            }
        };
        outln!(
            "    one-time code: {}…",
            code.chars().take(40).collect::<String>()
        );
        self.show(to, &["join-device", &code, "--timeout", "60"])?;
        let done = offer.wait_with_output()?;
        if !done.status.success() {
            bail!(
                "link-device failed: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            );
        }
        Ok(())
    }
}

/// A child process killed if the demo gives up on it (so no listener
/// outlives a failed step).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Cli {
    /// One direct sync, no relay: `nearby listen` on `listener` (loopback
    /// only; it shows a pairing code and waits), then `nearby sync CODE`
    /// on `syncer` with `sync_args` (printed, as the party sees it). The
    /// listener's report (`nearby listen --json`, its last line).
    pub fn nearby(&self, listener: &str, syncer: &str, sync_args: &[&str]) -> Result<Value> {
        let listen_args = [
            "nearby",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--address",
            "127.0.0.1",
            "--timeout",
            "60",
            "--json",
        ];
        Self::echo(listener, &listen_args)?;
        let mut child = Child(
            self.command(listener, &listen_args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("could not start nearby listen")?,
        );
        let stdout = child
            .0
            .stdout
            .take()
            .context("nearby listen has no stdout")?;
        let stderr = child
            .0
            .stderr
            .take()
            .context("nearby listen has no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep reading both pipes so the child never writes into a full one.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let errors = std::thread::spawn(move || -> std::io::Result<String> {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text)?;
            Ok(text)
        });
        let errors = move || -> Result<String> {
            errors
                .join()
                .map_err(|_| anyhow!("the reader of nearby listen's errors panicked"))?
                .context("cannot read nearby listen's errors")
        };
        let Ok(first) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.0.kill();
            child.0.wait()?;
            bail!(
                "nearby listen in {listener} printed no pairing code: {}",
                errors()?.trim()
            );
        };
        let code: Value =
            serde_json::from_str(&first).context("nearby listen --json printed no JSON code")?;
        let code = code["code"]
            .as_str()
            .context("nearby listen --json printed no code")?
            .to_string();
        outln!(
            "    pairing code (shown as a QR code on the device): {}…",
            code.chars().take(40).collect::<String>()
        );
        let mut args = vec!["nearby", "sync", code.as_str()];
        args.extend_from_slice(sync_args);
        self.show(syncer, &args)?;
        let status = child.0.wait()?;
        let err = errors()?;
        if !status.success() {
            bail!("nearby listen in {listener} failed: {}", err.trim());
        }
        let last = rx
            .iter()
            .last()
            .context("nearby listen printed no result")?;
        serde_json::from_str(&last).context("nearby listen --json printed no JSON result")
    }
}

/// A `satchel-sync` relay (embedded SQLite) on a free loopback port, in a
/// thread of this process; it can be taken down and brought back on the
/// same database ([`Relay::pause`], [`Relay::resume`]); stopped gracefully
/// on drop.
pub struct Relay {
    pub url: String,
    db: PathBuf,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Relay {
    pub fn start(db: &Path) -> Result<Relay> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot open a loopback port for the relay")?;
        let addr = listener.local_addr()?;
        let mut relay = Relay {
            url: format!("http://{addr}"),
            db: db.to_path_buf(),
            addr,
            stop: None,
            thread: None,
        };
        relay.serve(listener)?;
        Ok(relay)
    }

    fn serve(&mut self, listener: std::net::TcpListener) -> Result<()> {
        listener.set_nonblocking(true)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = satchel_sync_server::Config::sqlite(&self.db);
        let thread = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                satchel_sync_server::serve(config, listener, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        self.stop = Some(stop);
        self.thread = Some(thread);
        Ok(())
    }

    /// Take the relay down (its port closes: devices find it unreachable);
    /// its database stays.
    pub fn pause(&mut self) -> Result<()> {
        self.shutdown()
    }

    /// Bring the relay back on its database, at its old address. Should
    /// that port have been taken meanwhile, at a new one: the returned
    /// `true` says [`Relay::url`] changed.
    pub fn resume(&mut self) -> Result<bool> {
        if self.thread.is_some() {
            bail!("the demo relay is already running");
        }
        let (listener, moved) = match std::net::TcpListener::bind(self.addr) {
            Ok(listener) => (listener, false),
            Err(_) => (
                std::net::TcpListener::bind("127.0.0.1:0")
                    .context("cannot open a loopback port for the relay")?,
                true,
            ),
        };
        self.addr = listener.local_addr()?;
        self.url = format!("http://{}", self.addr);
        self.serve(listener)?;
        Ok(moved)
    }

    /// Stop and wait for the relay; its error, if it failed.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result.context("the demo relay failed"),
                Err(_) => bail!("the demo relay thread panicked"),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
