//! End-to-end performance figures (not a test; run by `scripts/bench-e2e`):
//!
//! (a) latency, SMTP 250 at alice -> message visible in bob's POP3, over N
//!     messages, against what the network's parameters predict;
//! (b) draining: 100 blocks waiting at bob's provider, retrieved in how long
//!     versus 100 polling intervals;
//! (c) daemon CPU while idle with decoys off;
//! (d) daemon RSS with 1,000 messages in flight (their provider down).
//!
//! `bench_e2e [--messages N] [--idle-secs S] [--in-flight M] [--only a,b,c,d]`

use std::time::{Duration, Instant};

use mailproxy_e2e::mail::{self, Smtp};
use mailproxy_e2e::{net, wait_for, DaemonOptions, DaemonSpec, World};

const ALICE: &str = "alice@provider1";
const BOB: &str = "bob@provider2";

struct Args {
    messages: usize,
    idle_secs: u64,
    in_flight: usize,
    only: String,
}

fn args() -> Args {
    let mut a = Args {
        messages: 100,
        idle_secs: 30,
        in_flight: 1000,
        only: "a,b,c,d".into(),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--messages" => a.messages = val.parse().expect("--messages N"),
            "--idle-secs" => a.idle_secs = val.parse().expect("--idle-secs S"),
            "--in-flight" => a.in_flight = val.parse().expect("--in-flight M"),
            "--only" => a.only = val,
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (mean, q(0.5), q(0.9))
}

/// E[min(⌊Exp(mu)⌋ + 1, max)] in ms: the mean of one sampled NodeDelay.
fn mean_node_delay(mu: f64, max: u64) -> f64 {
    let max = if max == 0 { 100_000 } else { max };
    1.0 + (1..max).map(|k| (-(k as f64) * mu).exp()).sum::<f64>()
}

/// Mean wait from a random moment to the next tick of a renewal process
/// whose intervals are Exp(lambda) capped at `max` ms: E[T²] / 2E[T].
fn mean_residual_tick(lambda: f64, max: u64) -> f64 {
    let m = if max == 0 { f64::INFINITY } else { max as f64 };
    let e1 = (1.0 - (-lambda * m).exp()) / lambda;
    let e2 = 2.0 / (lambda * lambda) * (1.0 - (-lambda * m).exp() * (1.0 + lambda * m));
    e2 / (2.0 * e1)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn proc_stat_cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/pid/stat");
    // Fields after the ")" of the command name; utime and stime are 14 and 15.
    let rest = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/pid/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn main() {
    let args = args();
    let params = net::params(4.0); // the demo's LambdaP: 4 packets/s
    let mut world = World::builder()
        .params(params)
        .daemon(DaemonSpec::new(&[ALICE]).options(DaemonOptions {
            log_level: "NOTICE",
            ..DaemonOptions::default()
        }))
        .daemon(DaemonSpec::new(&[BOB]).options(DaemonOptions {
            log_level: "NOTICE",
            ..DaemonOptions::default()
        }))
        .build();
    let p = world.net.params();
    let a = world.daemon_index(ALICE);
    let b = world.daemon_index(BOB);
    let poll_ms = DaemonOptions::default().polling_interval as f64 * 1000.0;
    println!(
        "network.toml: Mu = {} /ms (MuMaxDelay {} ms), LambdaP = {} /ms (max {} ms), {} layers; daemons: PollingInterval {} s, decoys off; binaries: {}",
        p.document.mu,
        p.document.mu_max_delay,
        p.document.lambda_p,
        p.document.lambda_p_max_delay,
        p.layers,
        poll_ms / 1000.0,
        mailproxy_e2e::bins::target_dir().display()
    );

    if args.only.contains('a') {
        // Forward path: provider, one mix per layer, provider; with a SURB
        // every hop, the last too, carries a NodeDelay.
        let hops = p.layers + 2;
        let hop_ms = mean_node_delay(p.document.mu, p.document.mu_max_delay);
        let tick_ms = mean_residual_tick(p.document.lambda_p, p.document.lambda_p_max_delay);
        let poll_wait_ms = poll_ms / 2.0;
        let predicted = hops as f64 * hop_ms + tick_ms + poll_wait_ms;
        let smtp_addr = world.daemons[a].smtp;
        let pop3 = world.daemons[b].pop3;
        let mut lat = Vec::new();
        let mut smtp = Smtp::connect(smtp_addr, &world.login(ALICE)).expect("SMTP");
        // Each send waits a random fraction of a polling interval first, so
        // its phase against bob's polls is uniform (sending right after the
        // previous message appeared would always hit the poll just done).
        let mut x = std::process::id() as u64 | 1;
        for i in 0..args.messages {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::thread::sleep(Duration::from_millis(x % poll_ms as u64));
            let m = mail::message(ALICE, &[BOB], &format!("latency {i}"), "x");
            smtp.send(ALICE, &[BOB], &m).expect("send");
            let t0 = Instant::now();
            wait_for(
                "the message in bob's POP3",
                Duration::from_secs(120),
                Duration::from_millis(5),
                || (mail::pop3_count(pop3, &world.login(BOB)) > i).then_some(()),
            );
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = smtp.quit();
        let (mean, median, p90) = stats(&mut lat);
        println!("(a) latency over {} messages sent at random phases, SMTP 250 -> visible in POP3 (POP3 polled every ~5 ms):", args.messages);
        println!("    measured  mean {mean:.0} ms, median {median:.0} ms, p90 {p90:.0} ms");
        println!(
            "    predicted mean {predicted:.0} ms = {hops} hops x {hop_ms:.1} ms (Mu) + {tick_ms:.0} ms (LambdaP wait) + {poll_wait_ms:.0} ms (half a PollingInterval)"
        );
        println!(
            "    overhead: mean/predicted = {:.3} ({:+.1}%)",
            mean / predicted,
            (mean / predicted - 1.0) * 100.0
        );
    }

    if args.only.contains('b') {
        world.daemons[b].stop();
        let before = world.net.spool_len("provider2", "bob");
        let mut smtp = Smtp::connect(world.daemons[a].smtp, &world.login(ALICE)).expect("SMTP");
        for i in 0..100 {
            let m = mail::message(ALICE, &[BOB], &format!("drain {i}"), "y");
            smtp.send(ALICE, &[BOB], &m).expect("send");
        }
        let _ = smtp.quit();
        let pop3_before = mail::pop3_count(world.daemons[b].pop3, &world.login(BOB));
        wait_for(
            "100 blocks at provider2",
            Duration::from_secs(600),
            Duration::from_millis(200),
            || (world.net.spool_len("provider2", "bob") >= before + 100).then_some(()),
        );
        // Let retransmissions settle.
        std::thread::sleep(Duration::from_secs(3));
        let waiting = world.net.spool_len("provider2", "bob");
        let t0 = Instant::now();
        world.daemons[b].start();
        let started = t0.elapsed();
        let drained = wait_for(
            "the spool drained",
            Duration::from_secs(600),
            Duration::from_millis(5),
            || (world.net.spool_len("provider2", "bob") == 0).then(|| t0.elapsed()),
        );
        let pop3 = world.daemons[b].pop3;
        let visible = wait_for(
            "100 messages in POP3",
            Duration::from_secs(600),
            Duration::from_millis(20),
            || {
                (mail::pop3_count(pop3, &world.login(BOB)) >= pop3_before + 100)
                    .then(|| t0.elapsed())
            },
        );
        println!("(b) draining {waiting} spooled blocks (100 one-block messages, retransmission copies included):");
        println!(
            "    daemon start {:.2} s; spool empty after {:.2} s; all 100 in POP3 after {:.2} s; 100 polling intervals = 100 s -> {:.1}x faster",
            started.as_secs_f64(),
            drained.as_secs_f64(),
            visible.as_secs_f64(),
            100.0 / visible.as_secs_f64()
        );
    }

    if args.only.contains('c') {
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: sysconf only reads a system constant.
        let hz = clock_ticks_per_sec();
        let pids: Vec<u32> = [a, b]
            .iter()
            .map(|&i| world.daemons[i].pid().expect("running"))
            .collect();
        let t0: Vec<u64> = pids.iter().map(|&p| proc_stat_cpu_ticks(p)).collect();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(args.idle_secs));
        let secs = start.elapsed().as_secs_f64();
        println!("(c) idle CPU over {secs:.0} s, decoys off, PollingInterval 1 s:");
        for (name, (&p, t)) in ["alice's daemon", "bob's daemon"]
            .iter()
            .zip(pids.iter().zip(t0))
        {
            let cpu = (proc_stat_cpu_ticks(p) - t) as f64 / hz;
            println!(
                "    {name}: {:.3} s CPU = {:.2}% of a core ({:.2} ms per polling interval)",
                cpu,
                cpu / secs * 100.0,
                cpu * 1000.0 / secs
            );
        }
    }

    if args.only.contains('d') {
        let pid = world.daemons[a].pid().expect("running");
        let rss0 = proc_status_kib(pid, "VmRSS:");
        world.net.stop_node("provider2");
        let t0 = Instant::now();
        let mut smtp = Smtp::connect(world.daemons[a].smtp, &world.login(ALICE)).expect("SMTP");
        let body = "z".repeat(1000);
        for i in 0..args.in_flight {
            let m = mail::message(ALICE, &[BOB], &format!("in flight {i}"), &body);
            smtp.send(ALICE, &[BOB], &m).expect("send");
        }
        let _ = smtp.quit();
        let queued = t0.elapsed();
        let ticks0 = proc_stat_cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(15));
        let cpu = (proc_stat_cpu_ticks(pid) - ticks0) as f64 / clock_ticks_per_sec();
        let rss = proc_status_kib(pid, "VmRSS:");
        let hwm = proc_status_kib(pid, "VmHWM:");
        println!(
            "(d) {} messages in flight (provider2 down; queued over SMTP in {:.1} s), alice's daemon 15 s later:",
            args.in_flight,
            queued.as_secs_f64()
        );
        println!(
            "    VmRSS {rss} KiB, VmHWM {hwm} KiB; idle before: VmRSS {rss0} KiB -> {:+} KiB ({:.2} KiB per message), ratio {:.2}",
            rss as i64 - rss0 as i64,
            (rss as f64 - rss0 as f64) / args.in_flight as f64,
            rss as f64 / rss0 as f64
        );
        println!(
            "    CPU over those 15 s (sending, retransmitting, scanning the queue): {cpu:.2} s = {:.1}% of a core",
            cpu / 15.0 * 100.0
        );
    }
}
