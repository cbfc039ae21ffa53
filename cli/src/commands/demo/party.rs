//! How the demo plays a party: it runs this very `satchel` binary as a
//! child process in that party's home (`--home NAME`, relative to the demo
//! directory), prints the command line and what the party sees, and hands
//! back the output so the story can check its expectation. Also the
//! embedded relay the parties meet at.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The passphrase every demo home is created with (printed at the end, so a
/// user can carry on by hand with `--keep`).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Runs `satchel` commands in the demo directory.
pub struct Cli {
    exe: PathBuf,
    dir: PathBuf,
    server: String,
    columns: String,
}

impl Cli {
    pub fn new(dir: &Path, server: &str) -> Result<Cli> {
        Ok(Cli {
            exe: std::env::current_exe().context("cannot find the satchel binary")?,
            dir: dir.to_path_buf(),
            server: server.to_string(),
            columns: std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<u16>().ok())
                .map_or(180, |c| c.saturating_sub(4))
                .to_string(),
        })
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
            .env("SATCHEL_SERVER", &self.server)
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

/// A `satchel-sync` relay (embedded SQLite) on a free loopback port, in a
/// thread of this process; stopped gracefully on drop.
pub struct Relay {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Relay {
    pub fn start(db: &Path) -> Result<Relay> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot open a loopback port for the relay")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = satchel_sync_server::Config::sqlite(db);
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
        Ok(Relay {
            url,
            stop: Some(stop),
            thread: Some(thread),
        })
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
