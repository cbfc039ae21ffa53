//! A bad network between devices and the relay, made by this test: the
//! relay runs in a network namespace of its own behind a veth pair, with
//! TLS from a throwaway CA, and the link is cut in the middle of a
//! transfer. Three devices of one patient each write 300 entries and sync
//! through it; in the end every device holds all 900 exactly once.
//!
//! The faults: with `tc netem` when the kernel has it (loss 10%, delay
//! 100 ms ± 50 ms, reordering, duplication on both ends of the link).
//! Kernels without `sch_netem` (this project's CI machines: a Firecracker
//! kernel without it) get the same faults another way: 10% random loss and
//! 5% duplication of packets on both ends with iptables (`statistic`,
//! `TEE`; iptables is installed from Debian's packages when missing), and
//! 100 ms ± 50 ms of delay per chunk in both directions from a delaying
//! TCP forwarder the devices connect through; reordering then comes from
//! loss and retransmission only.
//!
//! Needs root and iproute2: the test fails when CI is set (or
//! `SATCHEL_REQUIRE_FIXTURES`) and they are missing, else it is skipped
//! with a note (netns_common/mod.rs, shared with clinic_partition.rs). It
//! only sends traffic to the namespace it made.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use satchel_tests::pki::test_ca;
use satchel_tests::world::{init, rand_suffix, PASS};
use satchel_tests::{link_devices_with, run, satchel, Relay};
use serde_json::{json, Value};

#[path = "netns_common/mod.rs"]
mod netns;

use netns::{must, sh, Namespace};

/// A network namespace with a veth pair to it from this host; the
/// namespace (and with it the pair) is removed on drop.
struct NetNs {
    ns: Namespace,
    host_if: String,
    ns_if: String,
    relay_ip: String,
    /// Whether iptables rules were added on this host (removed on drop).
    host_rules: bool,
}

impl NetNs {
    fn create() -> Option<NetNs> {
        let ns = Namespace::create("netem")?;
        let id = std::process::id() % 100_000;
        let subnet = 20 + std::process::id() % 200;
        let net = NetNs {
            ns,
            host_if: format!("sn{id}h"),
            ns_if: format!("sn{id}n"),
            relay_ip: format!("10.77.{subnet}.2"),
            host_rules: false,
        };
        let host_ip = format!("10.77.{subnet}.1/24");
        let relay_cidr = format!("{}/24", net.relay_ip);
        must(&[
            "ip",
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &net.ns_if,
            "netns",
            net.ns.name(),
        ]);
        must(&["ip", "addr", "add", &host_ip, "dev", &net.host_if]);
        must(&["ip", "link", "set", &net.host_if, "up"]);
        net.ns
            .must(&["ip", "addr", "add", &relay_cidr, "dev", &net.ns_if]);
        net.ns.must(&["ip", "link", "set", &net.ns_if, "up"]);
        Some(net)
    }

    /// The same netem faults on both ends of the link; false when the
    /// kernel has no netem.
    fn netem(&self, spec: &str) -> bool {
        let mut host = vec![
            "tc",
            "qdisc",
            "replace",
            "dev",
            &self.host_if,
            "root",
            "netem",
        ];
        host.extend(spec.split_whitespace());
        if !sh(&host) {
            return false;
        }
        let mut inside = vec![
            "ip",
            "netns",
            "exec",
            self.ns.name(),
            "tc",
            "qdisc",
            "replace",
            "dev",
            &self.ns_if,
            "root",
            "netem",
        ];
        inside.extend(spec.split_whitespace());
        must(&inside);
        true
    }

    /// Random loss and duplication of packets on both ends of the link
    /// with iptables (rules in the namespace, and on this host scoped to
    /// the test's own veth end and removed on drop).
    fn lossy(&mut self, loss: &str, duplicate: &str) {
        if !sh(&["iptables", "-V"]) {
            let _ = Command::new("sh")
                .args(["-c", "apt-get install -y -qq iptables || (apt-get update -qq && apt-get install -y -qq iptables)"])
                .status();
        }
        must(&["iptables", "-V"]);
        let host_ip = self
            .relay_ip
            .rsplit_once('.')
            .map(|(net, _)| format!("{net}.1"))
            .unwrap();
        let rules: Vec<Vec<String>> = vec![
            self.rule(
                false,
                &[
                    "-A",
                    "INPUT",
                    "-i",
                    "IF",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    loss,
                    "-j",
                    "DROP",
                ],
            ),
            self.rule(
                false,
                &[
                    "-A",
                    "OUTPUT",
                    "-o",
                    "IF",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    loss,
                    "-j",
                    "DROP",
                ],
            ),
            self.rule(
                false,
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "IF",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    duplicate,
                    "-j",
                    "TEE",
                    "--gateway",
                    &host_ip,
                ],
            ),
            self.rule(
                true,
                &[
                    "-A",
                    "INPUT",
                    "-i",
                    "IF",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    loss,
                    "-j",
                    "DROP",
                ],
            ),
            self.rule(
                true,
                &[
                    "-A",
                    "OUTPUT",
                    "-o",
                    "IF",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    loss,
                    "-j",
                    "DROP",
                ],
            ),
            self.rule(
                true,
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "IF",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    duplicate,
                    "-j",
                    "TEE",
                    "--gateway",
                    &self.relay_ip,
                ],
            ),
        ];
        for rule in rules {
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            must(&args);
        }
        self.host_rules = true;
    }

    /// An iptables command for the namespace side (`host` false) or this
    /// host's side of the link; `IF` names the interface.
    fn rule(&self, host: bool, args: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = if host {
            vec!["iptables".into()]
        } else {
            ["ip", "netns", "exec", self.ns.name(), "iptables"]
                .map(String::from)
                .to_vec()
        };
        let iface = if host { &self.host_if } else { &self.ns_if };
        out.extend(args.iter().map(|a| {
            if *a == "IF" {
                iface.clone()
            } else {
                a.to_string()
            }
        }));
        out
    }

    /// Cut (or restore) the link.
    fn link(&self, up: bool) {
        must(&[
            "ip",
            "link",
            "set",
            &self.host_if,
            if up { "up" } else { "down" },
        ]);
    }

    fn relay(&self, dir: &Path, extra: &[&str]) -> Relay {
        self.ns.relay(dir, &format!("{}:0", self.relay_ip), extra)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.host_rules {
            for (table, chain, flag) in [
                ("filter", "INPUT", "-i"),
                ("filter", "OUTPUT", "-o"),
                ("mangle", "POSTROUTING", "-o"),
            ] {
                // Delete this test's rules (they name its interface) until none is left.
                loop {
                    let out = Command::new("iptables")
                        .args(["-t", table, "-S", chain])
                        .output();
                    let Ok(out) = out else { break };
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    let Some(line) = text
                        .lines()
                        .find(|l| l.contains(&format!("{flag} {}", self.host_if)))
                    else {
                        break;
                    };
                    let mut args = vec!["-t".to_string(), table.to_string()];
                    args.extend(
                        line.replacen("-A", "-D", 1)
                            .split_whitespace()
                            .map(String::from),
                    );
                    if !Command::new("iptables")
                        .args(&args)
                        .status()
                        .is_ok_and(|s| s.success())
                    {
                        break;
                    }
                }
            }
        }
        sh(&["ip", "link", "del", &self.host_if]);
        // The namespace itself is deleted when `self.ns` drops, after this.
    }
}

/// A TCP forwarder on 127.0.0.1 to `target` that, while `delay_ms` is
/// non-zero, holds every chunk for `delay_ms` ± half of it in both
/// directions (each direction keeps its order: TCP would restore it).
fn delay_proxy(target: SocketAddr, delay_ms: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(10)) else {
                continue;
            };
            for (from, to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let delay = Arc::clone(&delay_ms);
                std::thread::spawn(move || pipe(from, to, &delay, seed));
            }
        }
    });
    addr
}

fn pipe(mut from: TcpStream, to: TcpStream, delay_ms: &AtomicU64, mut rng: u64) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut to = to;
        for (at, bytes) in rx {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let base = delay_ms.load(Ordering::Relaxed);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let ms = if base == 0 {
            0
        } else {
            base / 2 + rng % (base + 1)
        };
        let at = (Instant::now() + Duration::from_millis(ms)).max(last);
        last = at;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
}

fn bundle(device: &str, round: usize, n: usize) -> Value {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"resource": {"resourceType": "Observation", "id": format!("{device}-{round}-{i}"),
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                "display": format!("{device} round {round} reading {i}")}]},
            "effectiveDateTime": "2024-02-03", "valueQuantity": {"value": i, "unit": "/min"}}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

#[test]
fn netem_faults_lose_nothing() {
    let Some(mut net) = NetNs::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(
        &dir.path().join("pki"),
        "netem",
        &[&net.relay_ip, "127.0.0.1"],
    );
    let relay = net.relay(
        &dir.path().join("relay"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // Devices reach the relay through a forwarder on this host (it adds
    // delay where the kernel cannot), then over the faulty link.
    let delay_ms = Arc::new(AtomicU64::new(0));
    let proxy = delay_proxy(relay.addr, Arc::clone(&delay_ms));
    let url = format!("https://{proxy}");
    let ca_flag = ["--relay-ca", ca.to_str().unwrap()];
    let sync_command = |home: &Path| {
        let mut cmd = satchel(home, PASS);
        cmd.args(ca_flag)
            .args(["sync", "--server", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let sync = |home: &Path| sync_command(home).output().unwrap();
    let add = |home: &Path, value: &Value| {
        let file = dir.path().join(format!("input-{}.json", rand_suffix()));
        std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
        run(satchel(home, PASS).arg("add").arg(&file), true);
    };
    // Three devices of one patient, linked while the network is clean.
    let phone = dir.path().join("phone");
    init(&phone, "Pat Example");
    assert!(sync(&phone).status.success());
    let devices = [
        ("phone", phone.clone()),
        ("tablet", dir.path().join("tablet")),
        ("laptop", dir.path().join("laptop")),
    ];
    for (_, home) in &devices[1..] {
        link_devices_with(&phone, home, PASS, &url, &ca_flag);
    }
    // Then the network turns bad, both ways.
    if net.netem("delay 100ms 50ms loss 10% reorder 25% 50% duplicate 5%") {
        println!("faults: tc netem");
    } else {
        println!("faults: no sch_netem in this kernel; iptables loss 10% and duplication 5%, forwarder delay 100 ms ± 50 ms");
        net.lossy("0.10", "0.05");
        delay_ms.store(100, Ordering::Relaxed);
    }
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 30;
    let mut failed = 0;
    for round in 0..ROUNDS {
        for (name, home) in &devices {
            add(home, &bundle(name, round, PER_ROUND));
            if round == ROUNDS / 2 && *name == "phone" {
                // Cut the link in the middle of a transfer.
                let child = sync_command(home).spawn().unwrap();
                std::thread::sleep(Duration::from_millis(700));
                net.link(false);
                std::thread::sleep(Duration::from_secs(3));
                net.link(true);
                let out = child.wait_with_output().unwrap();
                failed += usize::from(!out.status.success());
                continue;
            }
            failed += usize::from(!sync(home).status.success());
        }
    }
    println!("{failed} of {} syncs failed under the faults", ROUNDS * 3);
    // Everyone catches up (faults still on): each device syncs until a
    // round succeeds, twice around so every device sees the others' last.
    for _ in 0..2 {
        for (name, home) in &devices {
            let mut tries = 0;
            loop {
                let out = sync(home);
                if out.status.success() {
                    break;
                }
                tries += 1;
                assert!(
                    tries < 10,
                    "{name} could not sync: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    let expected = ROUNDS * PER_ROUND * devices.len();
    for (name, home) in &devices {
        let out = run(satchel(home, PASS).args(["list", "--json"]), true);
        let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut displays: Vec<String> = entries.iter().map(|e| e["displays"].to_string()).collect();
        displays.sort();
        let before = displays.len();
        displays.dedup();
        assert_eq!(before, displays.len(), "{name}: duplicated entries");
        assert_eq!(entries.len(), expected, "{name}: lost entries");
    }
}
