//! Network namespaces made by a test (shared by netem_faults.rs and
//! clinic_partition.rs): a namespace per run with a unique name, removed
//! on drop (also when the test panics), veth links between namespaces or
//! to this host, and relays and `satchel` commands run inside one with
//! `ip netns exec`.
//!
//! Needs root and iproute2. When a namespace cannot be made the test fails
//! if CI (or `SATCHEL_REQUIRE_FIXTURES`) is set, and is skipped with a note
//! otherwise: [`Namespace::create`] returns `None`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use satchel_tests::{bin, satchel, Relay};

/// Run a command; whether it started and succeeded (output discarded).
pub fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run a command that must succeed; panics with its stderr otherwise.
pub fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a missing fixture (here: network namespaces) fails the test
/// instead of skipping it.
pub fn fixtures_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("SATCHEL_REQUIRE_FIXTURES").is_some()
}

/// A network namespace made by this test, with loopback up; deleted on
/// drop (with the veth ends inside it, which removes their peers too).
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// A namespace named `satchel-{tag}-{pid}-{n}` (unique per process and
    /// call). `None` when namespaces cannot be made here and neither CI nor
    /// `SATCHEL_REQUIRE_FIXTURES` is set (the caller skips); under CI that
    /// is a failure.
    pub fn create(tag: &str) -> Option<Namespace> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "satchel-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // A leftover of a killed run that had this process id is stale.
        if Path::new("/run/netns").join(&name).exists() {
            sh(&["ip", "netns", "del", &name]);
        }
        if !sh(&["ip", "netns", "add", &name]) {
            assert!(
                !fixtures_required(),
                "cannot create a network namespace: this test needs root and iproute2 (CI is set, so this is a failure, not a skip)"
            );
            println!("note: no network namespaces here (not root?); test skipped");
            return None;
        }
        let ns = Namespace { name };
        ns.must(&["ip", "link", "set", "lo", "up"]);
        Some(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` run inside this namespace (`ip netns exec NAME program`;
    /// `ip` execs it, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Run `args` inside; panics with stderr on failure.
    pub fn must(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        must(&all);
    }

    /// Run `args` inside; whether it succeeded.
    pub fn sh(&self, args: &[&str]) -> bool {
        let mut all = vec!["ip", "netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// A `satchel-sync` relay inside, listening on `listen`, keeping its
    /// database and log in `dir`.
    pub fn relay(&self, dir: &Path, listen: &str, extra: &[&str]) -> Relay {
        Relay::spawn_via(self.command(bin("satchel-sync")), dir, listen, extra)
    }

    /// [`satchel_tests::satchel`] for `home`, run inside this namespace.
    pub fn satchel(&self, home: &Path, passphrase: &str) -> Command {
        let inner = satchel(home, passphrase);
        let mut cmd = self.command(inner.get_program());
        cmd.args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.name]);
    }
}

/// A veth pair from `a` (interface `a_if`, address `a_cidr`) to `b`
/// (`b_if`, `b_cidr`), both ends up. The interfaces are made inside the
/// namespaces, so their names only need to be unique there.
pub fn veth(a: &Namespace, a_if: &str, a_cidr: &str, b: &Namespace, b_if: &str, b_cidr: &str) {
    must(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, iface, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        ns.must(&["ip", "addr", "add", cidr, "dev", iface]);
        ns.must(&["ip", "link", "set", iface, "up"]);
    }
}
