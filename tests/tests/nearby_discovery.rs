//! Discovery of nearby members' devices over real mDNS
//! (`satchel_core::nearby::discovery`), in network namespaces this test
//! makes, so no multicast leaves the machine and no other mDNS responder
//! takes part:
//!
//! - `discovery_in_one_network_namespace`: an advertiser and browsers in
//!   one process, on the loopback interface of a namespace of their own:
//!   the member finds the device with its name, identity and port; a
//!   browser with another record's key finds nothing.
//! - `discovery_across_network_namespaces`: the advertiser in one
//!   namespace, browsers in another, joined by a veth pair: the member
//!   finds the device at its address; another record's browser finds
//!   nothing; a bystander (a plain DNS-SD browser) sees an opaque instance
//!   and host name and one TXT entry, and no record id, device name or
//!   identity id.
//! - `nearby_discover_lists_members_devices`: `satchel nearby discover`
//!   (table and `--json`) in a namespace where a device advertises for the
//!   home's record: it lists that device with the record's owner, says its
//!   identity is not in the access log, and leaves out the home's own
//!   device.
//!
//! Each namespace runs a child copy of this test binary (`ip netns exec`),
//! selected by `SATCHEL_DISCOVERY_ROLE` through the ignored test
//! `discovery_child`. Needs root and iproute2: without them the tests fail
//! when `CI` is set and are skipped with a note otherwise. Namespaces are
//! removed on drop, also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use satchel_core::ids::{IdentityId, RecordId};
use satchel_core::nearby::discovery::{
    browse, discovery_key_for, Advertiser, DeviceAdvert, DiscoveryKey,
};
use satchel_tests::world::{init, PASS};
use satchel_tests::{bin, run, satchel};
use serde_json::Value;

const ROLE: &str = "SATCHEL_DISCOVERY_ROLE";
const KEYS: &str = "SATCHEL_DISCOVERY_KEYS";
/// For role `advertise-home`: the record id and its creator, hex.
const HOME_RECORD: &str = "SATCHEL_DISCOVERY_RECORD";
const HOME_CREATOR: &str = "SATCHEL_DISCOVERY_CREATOR";
const PORT: u16 = 47_123;
const DEVICE_NAME: &str = "Hall phone";
const BROWSE: Duration = Duration::from_secs(4);
/// How long a child may take to start advertising, or to stop.
const STARTUP: Duration = Duration::from_secs(30);
/// The longest an advertising child lives if its parent never closes its stdin.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

fn record(byte: u8) -> RecordId {
    RecordId([byte; 16])
}

fn creator() -> IdentityId {
    IdentityId([0x22; 32])
}

fn device() -> DeviceAdvert {
    DeviceAdvert {
        identity: IdentityId([0x44; 32]),
        name: DEVICE_NAME.to_string(),
    }
}

fn key(byte: u8) -> (RecordId, DiscoveryKey) {
    (
        record(byte),
        discovery_key_for(&record(byte), &creator()).unwrap(),
    )
}

/// Network namespaces made by this test; removed on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let ok = Command::new("ip")
                .args(["netns", "del", name])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("warning: could not remove network namespace {name}");
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Namespaces {
    /// Make namespaces `tag-0`, `tag-1`, ... (`count` of them) and run
    /// `setup` on them; `None` (after a note) when this machine cannot, and
    /// a failure instead when `CI` is set.
    fn make(
        tag: &str,
        count: usize,
        setup: impl FnOnce(&[String]) -> Result<(), String>,
    ) -> Option<Namespaces> {
        let mut made = Namespaces { names: Vec::new() };
        let result = (|| {
            for i in 0..count {
                let name = format!("satchel-{tag}-{}-{i}", std::process::id());
                ip(&["netns", "add", &name])?;
                made.names.push(name);
            }
            setup(&made.names)
        })();
        match result {
            Ok(()) => Some(made),
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot make network namespaces for the discovery test (needs root and iproute2): {why}"
                );
                println!("note: discovery test skipped, no network namespaces here: {why}");
                None
            }
        }
    }
}

/// Namespaces `names[0]` and `names[1]` joined by a veth pair with
/// addresses `a_ip` and `b_ip` (/24), loopback up, multicast routed over
/// the pair.
fn veth_pair(names: &[String], a_ip: &str, b_ip: &str) -> Result<(), String> {
    let (a, b) = (&names[0], &names[1]);
    ip(&[
        "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
    ])?;
    for (ns, dev, addr) in [(a, "va", a_ip), (b, "vb", b_ip)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev])?;
    }
    Ok(())
}

/// Loopback up, with multicast, and a route for it.
fn loopback_multicast(ns: &str) -> Result<(), String> {
    ip(&["-n", ns, "link", "set", "lo", "multicast", "on"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "lo"])
}

/// This test binary as a child in namespace `ns`, playing `role`.
fn child(ns: &str, role: &str, keys: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(exe)
        .args([
            "--ignored",
            "--exact",
            "discovery_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(KEYS, keys);
    cmd
}

/// A child process that is killed if the test ends first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run a child to the end; its stdout, or a failure with all it said.
fn run_child(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "child failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What a child printed, line by line, without the `test discovery_child
/// ... ` that libtest writes before the first of them.
fn said(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .map(|l| l.strip_prefix("test discovery_child ... ").unwrap_or(l))
        .collect()
}

/// The `found ...` lines a browsing child printed.
fn found(stdout: &str) -> Vec<&str> {
    said(stdout)
        .into_iter()
        .filter(|l| l.starts_with("found "))
        .collect()
}

/// The start of the line a member's browse prints for the device.
fn expected_prefix() -> String {
    format!(
        "found {} {} {} {}",
        record(1),
        device().identity,
        DEVICE_NAME.replace(' ', "_"),
        PORT
    )
}

/// Start an advertising child (it runs until its stdin closes) and wait
/// until it advertises; its later stdout lines come through the receiver.
fn start_advertiser(mut cmd: Command) -> (Running, Receiver<String>) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut advertiser = Running(cmd.spawn().unwrap());
    let stdout = advertiser.0.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // libtest prints `test discovery_child ... ` before the child's own line.
    loop {
        let line = lines
            .recv_timeout(STARTUP)
            .expect("the advertiser did not start in time");
        if line.ends_with("advertising") {
            break;
        }
    }
    (advertiser, lines)
}

#[test]
fn discovery_in_one_network_namespace() {
    let Some(ns) = Namespaces::make("disc1", 1, |names| loopback_multicast(&names[0])) else {
        return;
    };
    let out = run_child(child(&ns.names[0], "both", "1"));
    assert!(out.contains("both: ok"), "{out}");
}

#[test]
fn discovery_across_network_namespaces() {
    let subnet = 30 + std::process::id() % 200;
    let a_ip = format!("10.78.{subnet}.1");
    let b_ip = format!("10.78.{subnet}.2");
    let Some(ns) = Namespaces::make("disc2", 2, |names| veth_pair(names, &a_ip, &b_ip)) else {
        return;
    };
    let (a, b) = (&ns.names[0], &ns.names[1]);

    let (mut advertiser, lines) = start_advertiser(child(a, "advertise", "1"));

    // A member of record 1 finds the device, at its address in the other
    // namespace, with the advertised port.
    let member = run_child(child(b, "browse", "1,2"));
    let hits = found(&member);
    assert_eq!(hits.len(), 1, "{member}");
    assert!(hits[0].starts_with(&expected_prefix()), "{member}");
    assert!(hits[0].contains(&a_ip), "address missing: {member}");

    // A member of another record only finds nothing.
    let other = run_child(child(b, "browse", "2,3"));
    assert!(found(&other).is_empty(), "{other}");
    assert!(other.contains("browse: 0 found"), "{other}");

    // A bystander sees an opaque name, an opaque host and one TXT entry.
    let bystander = run_child(child(b, "bystander", ""));
    let seen: Vec<&str> = said(&bystander)
        .into_iter()
        .filter(|l| l.starts_with("seen "))
        .collect();
    assert!(!seen.is_empty(), "the bystander saw nothing: {bystander}");
    for line in &seen {
        // seen INSTANCE HOST TXT-KEYS
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 4, "{line}");
        let (instance, host, txt) = (parts[1], parts[2], parts[3]);
        assert_eq!(instance.len(), 36, "{line}");
        assert!(instance
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(host, format!("{instance}.local."), "{line}");
        assert_eq!(txt, "i", "{line}");
    }
    for secret in [
        record(1).to_hex(),
        device().identity.to_hex(),
        DEVICE_NAME.to_string(),
        "Hall".to_string(),
        creator().to_hex(),
    ] {
        assert!(!bystander.contains(&secret), "bystander saw {secret}");
    }

    drop(advertiser.0.stdin.take());
    let mut rest = String::new();
    while let Ok(line) = lines.recv_timeout(STARTUP) {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = advertiser.0.wait().unwrap();
    assert!(status.success(), "advertiser failed: {rest}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn nearby_discover_lists_members_devices() {
    let Some(ns) = Namespaces::make("disc3", 1, |names| loopback_multicast(&names[0])) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("ada");
    init(&home, "Ada Lovelace");
    let who: Value =
        serde_json::from_slice(&run(satchel(&home, PASS).args(["whoami", "--json"]), true).stdout)
            .unwrap();
    let record_id = who["record_id"].as_str().unwrap().to_string();
    let own_device = who["identity"]["signing_key"].as_str().unwrap().to_string();

    // A device advertising for Ada's record, and Ada's own device too.
    let mut cmd = child(&ns.names[0], "advertise-home", "");
    cmd.env(HOME_RECORD, &record_id)
        .env(HOME_CREATOR, &own_device);
    let (_advertiser, _lines) = start_advertiser(cmd);

    let discover = |json: bool| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.names[0]])
            .arg(bin("satchel"))
            .arg("--home")
            .arg(&home)
            .args(["nearby", "discover", "--timeout", "3"])
            .env("SATCHEL_PASSPHRASE", PASS)
            .env_remove("SATCHEL_HOME");
        if json {
            cmd.arg("--json");
        }
        String::from_utf8(run(&mut cmd, true).stdout).unwrap()
    };

    let listed: Value = serde_json::from_str(&discover(true)).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let d = &listed[0];
    assert_eq!(d["record"], record_id.as_str());
    assert_eq!(d["owner"], "Ada Lovelace");
    assert_eq!(d["device"]["name"], DEVICE_NAME);
    assert_eq!(d["device"]["identity"], device().identity.to_hex().as_str());
    assert_eq!(d["fingerprint"], Value::Null);
    assert_eq!(d["member"], false);
    assert_eq!(d["port"], PORT);
    assert!(!d["addresses"].as_array().unwrap().is_empty());

    let table = discover(false);
    for expected in [
        DEVICE_NAME,
        "not in the access log",
        "Ada Lovelace",
        &record_id[..8],
        &format!(":{PORT}"),
    ] {
        assert!(table.contains(expected), "{expected} missing:\n{table}");
    }
    assert!(!table.contains("Own laptop"), "{table}");
}

/// The child side of the tests above (run by them in a namespace; does
/// nothing when run on its own).
#[test]
#[ignore = "a child process of the discovery tests, run by them inside a network namespace"]
fn discovery_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let keys: Vec<(RecordId, DiscoveryKey)> = std::env::var(KEYS)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| key(s.parse().unwrap()))
        .collect();
    let now = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    match role.as_str() {
        "advertise" => {
            let records: Vec<_> = keys.into_iter().map(|(_, k)| (k, device())).collect();
            let advertiser = Advertiser::start(&records, PORT, now()).unwrap();
            println!("advertising");
            // Until the parent closes stdin (or, if it never does, a while).
            let (tx, closed) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
                let _ = tx.send(());
            });
            let _ = closed.recv_timeout(CHILD_LIFETIME);
            advertiser.stop().unwrap();
            println!("stopped");
        }
        "advertise-home" => {
            let record: RecordId = std::env::var(HOME_RECORD).unwrap().parse().unwrap();
            let creator: IdentityId = std::env::var(HOME_CREATOR).unwrap().parse().unwrap();
            let key = discovery_key_for(&record, &creator).unwrap();
            let own = DeviceAdvert {
                identity: creator,
                name: "Own laptop".into(),
            };
            let advertiser =
                Advertiser::start(&[(key.clone(), device()), (key, own)], PORT, now()).unwrap();
            println!("advertising");
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            advertiser.stop().unwrap();
        }
        "browse" => {
            let devices = browse(&keys, BROWSE).unwrap();
            for d in &devices {
                let addresses: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
                println!(
                    "found {} {} {} {} {}",
                    d.record,
                    d.device.identity,
                    d.device.name.replace(' ', "_"),
                    d.port,
                    addresses.join(",")
                );
            }
            println!("browse: {} found", devices.len());
        }
        "bystander" => {
            let daemon = mdns_sd::ServiceDaemon::new().unwrap();
            let events = daemon.browse("_satchel._tcp.local.").unwrap();
            let deadline = std::time::Instant::now() + BROWSE;
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                if let Ok(mdns_sd::ServiceEvent::ServiceResolved(s)) = events.recv_timeout(left) {
                    let instance = s
                        .fullname
                        .strip_suffix("._satchel._tcp.local.")
                        .unwrap_or(&s.fullname)
                        .to_string();
                    let txt: Vec<String> = s
                        .txt_properties
                        .iter()
                        .map(|p| p.key().to_string())
                        .collect();
                    println!("seen {instance} {} {}", s.host, txt.join(","));
                    // Everything it could read, for the test to search.
                    for p in s.txt_properties.iter() {
                        println!("txt {}={}", p.key(), p.val_str());
                    }
                }
            }
            daemon.shutdown().unwrap();
        }
        "both" => {
            let (_, k) = key(1);
            let advertiser = Advertiser::start(&[(k, device())], PORT, now()).unwrap();
            let devices = browse(&keys, BROWSE).unwrap();
            assert_eq!(devices.len(), 1, "{devices:?}");
            assert_eq!(devices[0].record, record(1));
            assert_eq!(devices[0].device, device());
            assert_eq!(devices[0].port, PORT);
            assert!(!devices[0].addresses.is_empty());
            let none = browse(&[key(2)], BROWSE).unwrap();
            assert!(none.is_empty(), "{none:?}");
            advertiser.stop().unwrap();
            println!("both: ok");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Two devices of one patient in two network namespaces joined by a veth
/// pair, no relay reachable: the tablet finds the phone by mDNS and they
/// sync with the real `satchel nearby listen --advertise` and `satchel
/// nearby sync` (the devices were linked earlier through a relay).
#[test]
fn direct_sync_over_network_namespaces() {
    use satchel_tests::world::{add, list, med};
    use satchel_tests::{link_devices, Relay};
    let dir = tempfile::tempdir().unwrap();
    let (phone, tablet) = (dir.path().join("phone"), dir.path().join("tablet"));
    init(&phone, "Pat");
    {
        let relay = Relay::start(&dir.path().join("relay"));
        link_devices(&phone, &tablet, PASS, &relay.url());
    }
    // Offline now: the phone records a medicine.
    add(&phone, &med("amoxicillin 500 mg"));
    assert!(list(&tablet).is_empty());

    let subnet = 30 + (std::process::id() + 7) % 200;
    let a_ip = format!("10.79.{subnet}.1");
    let b_ip = format!("10.79.{subnet}.2");
    let Some(ns) = Namespaces::make("direct", 2, |names| veth_pair(names, &a_ip, &b_ip)) else {
        return;
    };
    let in_ns = |ns: &str, home: &std::path::Path| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(bin("satchel"))
            .arg("--home")
            .arg(home)
            .env("SATCHEL_PASSPHRASE", PASS)
            .env_remove("SATCHEL_HOME");
        cmd
    };
    let mut listen = in_ns(&ns.names[0], &phone);
    listen
        .args([
            "nearby",
            "listen",
            "--advertise",
            "--json",
            "--timeout",
            "60",
        ])
        .args(["--address", &a_ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut listener = Running(listen.spawn().unwrap());
    let mut out = BufReader::new(listener.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let shown: Value = serde_json::from_str(&first).unwrap();
    assert!(shown["code"]
        .as_str()
        .unwrap()
        .starts_with("satchel-nearby:10.79."));

    let synced = run(
        in_ns(&ns.names[1], &tablet).args(["nearby", "sync", "--json", "--timeout", "5"]),
        true,
    );
    let reports: Value = serde_json::from_slice(&synced.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0]["received"]["stored"].as_u64().unwrap() >= 1,
        "{reports:?}"
    );
    assert_eq!(reports[0]["received"]["refused"], 0);

    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = listener.0.wait().unwrap();
    assert!(status.success(), "listen failed: {rest}");
    let served: Value = serde_json::from_str(rest.trim()).unwrap();
    assert!(served["sent"].as_u64().unwrap() >= 1, "{served}");
    let meds = list(&tablet);
    assert_eq!(meds.len(), 1, "{meds:?}");
}

/// `satchel nearby listen` shows a pairing code; `satchel nearby sync CODE`
/// on the other device syncs once (loopback, no mDNS); a wrong token is
/// refused and the listener goes on serving.
#[test]
fn nearby_listen_and_sync_with_a_pairing_code() {
    use satchel_tests::world::{add, list, med};
    use satchel_tests::{link_devices, Relay};
    let dir = tempfile::tempdir().unwrap();
    let (phone, tablet) = (dir.path().join("phone"), dir.path().join("tablet"));
    init(&phone, "Pat");
    {
        let relay = Relay::start(&dir.path().join("relay"));
        link_devices(&phone, &tablet, PASS, &relay.url());
    }
    add(&phone, &med("metformin 500 mg"));
    let mut listener = Running(
        satchel(&phone, PASS)
            .args([
                "nearby",
                "listen",
                "--bind",
                "127.0.0.1:0",
                "--address",
                "127.0.0.1",
            ])
            .args(["--json", "--timeout", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(listener.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let code = serde_json::from_str::<Value>(&first).unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    // A code with another token: refused, nothing changed.
    let (head, token) = code.rsplit_once('/').unwrap();
    let wrong = format!("{head}/{}", "0".repeat(token.len()));
    let refused = run(
        satchel(&tablet, PASS).args(["nearby", "sync", &wrong]),
        false,
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("pairing code is wrong"), "{err}");
    assert!(list(&tablet).is_empty());
    // The real code.
    let synced = run(satchel(&tablet, PASS).args(["nearby", "sync", &code]), true);
    let text = String::from_utf8_lossy(&synced.stdout);
    assert!(text.contains("Synced directly with"), "{text}");
    assert!(listener.0.wait().unwrap().success());
    assert_eq!(list(&tablet).len(), 1);
}
