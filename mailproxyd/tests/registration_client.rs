//! `mailproxyd -r` against a testnet provider's registration endpoint: the
//! account is registered with the keys written into the new data dir and
//! the config written loads; a second run refuses to overwrite; a taken
//! name, a missing option and a server certificate from an unknown CA get
//! one clear line, and a refused registration leaves nothing behind; HTTPS
//! works with the testnet's CA named by `-registrationCA`. With `-onion` the
//! registration goes through the SOCKS5 proxy (microsocks standing in for
//! Tor), and not at all while it is down.

mod socks_support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use mailproxyd::config::{Config, UpstreamProxyAddress, UpstreamProxyKind};
use mailproxyd::keys::AccountKeys;
use testnet::network::{Network, Shape};

/// Runs `mailproxyd -r` with the original's one-dash options for `user` at
/// provider1 into `data_dir`, plus `extra`.
async fn register(net: &Network, user: &str, data_dir: &Path, extra: &[&str]) -> Output {
    let spec = &net.spec;
    let provider = spec.node("provider1").unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailproxyd"));
    cmd.arg("-r")
        .args(["-account", user, "-provider", "provider1"])
        .args(["-providerKey", &provider.identity_public])
        .args(["-authority", &spec.authority.address.to_string()])
        .args(["-authorityKey", &spec.authority.identity_public])
        .args([
            "-registrationAddr",
            &provider.registration.unwrap().to_string(),
        ])
        .arg("-dataDir")
        .arg(data_dir)
        .args(extra);
    cmd.output().await.unwrap()
}

fn stderr_line(out: &Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(e.lines().count(), 1, "one line: {e:?}");
    assert!(!out.status.success());
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailproxyd_r_registers_an_account_and_refuses_clearly() {
    let netdir = tempfile::tempdir().unwrap();
    let shape = Shape {
        registration: true,
        ..Shape::default()
    };
    let net = Network::launch(netdir.path(), &shape, false, Duration::from_secs(30))
        .await
        .unwrap();
    let provider = net.node("provider1").unwrap().provider.as_ref().unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let alice_dir = dirs.path().join("alice");
    let plain = ["-registrationWithoutHttps"];

    let out = register(&net, "alice", &alice_dir, &plain).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("registered alice@provider1"), "{stdout}");
    let config = Config::load(&alice_dir.join("mailproxy.toml")).unwrap();
    assert_eq!(config.accounts[0].id, "alice@provider1");
    assert_eq!(config.accounts[0].authority, "PlaygroundAuthority");
    assert!(config.accounts[0].insecure_key_discovery);
    assert!(config.accounts[0].provider_key_pin.is_some());
    assert_eq!(config.upstream_proxy, None);
    let (keys, generated) =
        AccountKeys::load_or_generate(&alice_dir.join("alice@provider1")).unwrap();
    assert!(!generated, "-r wrote the keys");
    let user = provider.user("alice").expect("alice registered");
    assert_eq!(user.link_key, keys.link_public());
    assert_eq!(user.identity_key, Some(keys.identity_public()));

    // Again into the same data dir: refused, nothing changed.
    let e = stderr_line(&register(&net, "alice", &alice_dir, &plain).await);
    assert!(
        e.contains("mailproxy.toml already exists; refusing to overwrite it"),
        "{e}"
    );
    // The name is taken: the provider's answer, and nothing left behind.
    let other = dirs.path().join("other");
    let e = stderr_line(&register(&net, "alice", &other, &plain).await);
    assert!(
        e.contains("the provider refused (409): the user name 'alice' is taken"),
        "{e}"
    );
    assert!(!other.join("mailproxy.toml").exists());
    assert!(!other.join("alice@provider1").exists());
    assert_eq!(provider.user("alice").unwrap().link_key, keys.link_public());
    // HTTPS: the testnet's CA is not a system root.
    let bob = dirs.path().join("bob");
    let e = stderr_line(&register(&net, "bob", &bob, &[]).await);
    assert!(
        e.contains("TLS: invalid peer certificate: UnknownIssuer"),
        "{e}"
    );
    assert!(provider.user("bob").is_none());
    assert!(!bob.join("mailproxy.toml").exists());
    // With the CA `testnet info` names, HTTPS registration works.
    let ca = netdir.path().join(testnet::registration::CA_FILE);
    let ca_arg = ca.display().to_string();
    let out = register(&net, "bob", &bob, &["-registrationCA", &ca_arg]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(provider.user("bob").is_some());
    // -onion: through the proxy only. Down: nothing reaches the provider.
    let proxy = socks_support::free_port();
    let tor = ["-registrationWithoutHttps", "-onion", "-torSocksAddr"];
    let proxy_text = proxy.to_string();
    let onion: Vec<&str> = tor.iter().copied().chain([proxy_text.as_str()]).collect();
    let carol = dirs.path().join("carol");
    let e = stderr_line(&register(&net, "carol", &carol, &onion).await);
    assert!(
        e.contains(&format!("upstream proxy {proxy} is unreachable")),
        "{e}"
    );
    assert!(provider.user("carol").is_none());
    assert!(!carol.join("mailproxy.toml").exists());
    let _socks = socks_support::microsocks(proxy).await;
    let out = register(&net, "carol", &carol, &onion).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(provider.user("carol").is_some());
    let config = Config::load(&carol.join("mailproxy.toml")).unwrap();
    let upstream = config.upstream_proxy.expect("a tor+socks5 proxy");
    assert_eq!(upstream.kind, UpstreamProxyKind::TorSocks5);
    assert_eq!(upstream.address, UpstreamProxyAddress::Tcp(proxy));
    assert_eq!(config.prefered_transports, ["onion"]);

    // A missing option.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
        .args(["-r", "-account", "bob"])
        .output()
        .await
        .unwrap();
    let e = stderr_line(&out);
    assert!(e.contains("-provider is required with -r"), "{e}");
    net.shutdown().await;
}
