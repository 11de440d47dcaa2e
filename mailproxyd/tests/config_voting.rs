//! `[VotingAuthority.<Name>]` and accounts naming it: the 2019 Go
//! mailproxy's own config for a voting network loads as it is, and
//! nonvoting and voting accounts coexist. (`mailproxyd --check-config` on
//! that file and the refusals, as bad-config fixtures, are in
//! config_errors.rs.)

use std::path::PathBuf;

use base64::Engine as _;
use mailproxyd::config::{AuthorityKind, Config};

fn vector(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/katzenpost-2019")
        .join(name);
    assert!(p.exists(), "missing test vector file {}", p.display());
    p
}

fn b64(s: &str) -> [u8; 32] {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn the_go_voting_config_loads_as_it_is() {
    let c = Config::load(&vector("voting_mailproxy.toml")).expect("voting_mailproxy.toml");
    assert!(c.authorities.is_empty());
    assert_eq!(c.voting_authorities.len(), 1);
    let v = &c.voting_authorities["vtestnet"];
    assert_eq!(v.name, "vtestnet");
    // The peers and their keys are those of voting_peers.json.
    let peers: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vector("voting_peers.json")).unwrap()).unwrap();
    let want = peers["authorities"].as_array().unwrap();
    assert_eq!(v.peers.len(), want.len());
    for (p, w) in v.peers.iter().zip(want) {
        assert_eq!(
            p.identity_public_key,
            b64(w["identity_public_key_b64"].as_str().unwrap())
        );
        assert_eq!(
            p.link_public_key,
            b64(w["link_public_key_b64"].as_str().unwrap())
        );
        assert_eq!(p.addresses, [w["address"].as_str().unwrap()]);
    }
    let ids: Vec<&str> = c.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["alice@vprov1", "bob@vprov2"]);
    for a in &c.accounts {
        assert_eq!(a.authority, "vtestnet");
        assert_eq!(a.authority_kind, AuthorityKind::Voting);
        assert!(a.insecure_key_discovery);
    }
}

const NONVOTING: &str = "[NonvotingAuthority.Old]\nAddress = \"127.0.0.1:62472\"\nPublicKey = \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\n";
const VOTING: &str = "[VotingAuthority.New]\nPeers = [\n { IdentityPublicKey = \"50cd35ea60945cce23567959945a270e0f6ad127cfe03141aed686d1e5d0bf62\", LinkPublicKey = \"90c604af91ede9f0de1c0f8894e1ef503db13fbaa3d872d3b08dd110a75d9b27\", Addresses = [\"127.0.0.1:31000\", \"example.onion:31000\"] },\n { IdentityPublicKey = \"TarZwrstj1hmPi7OmiAvKoQmW2VaY7BOkDjTjmu6XiA=\", LinkPublicKey = \"cI+tC2sgB2giu5xlYzgV2mqx3E6qSjQt+B6K1bnEcyQ=\", Addresses = [\"127.0.0.1:31001\"] },\n]\n";

fn config(body: &str) -> Result<Config, String> {
    Config::parse(&format!(
        "[Proxy]\nDataDir = \"/tmp/x\"\n{NONVOTING}{VOTING}{body}"
    ))
    .map_err(|e| e.to_string())
}

#[test]
fn nonvoting_and_voting_accounts_coexist() {
    let c = config(
        "[[Account]]\nUser = \"a\"\nProvider = \"p\"\nNonvotingAuthority = \"Old\"\n\
         [[Account]]\nUser = \"b\"\nProvider = \"p\"\nVotingAuthority = \"New\"\n\
         [[Account]]\nUser = \"c\"\nProvider = \"p\"\nAuthority = \"New\"\n\
         [[Account]]\nUser = \"d\"\nProvider = \"p\"\nAuthority = \"Old\"\n",
    )
    .unwrap();
    let kinds: Vec<(&str, &str, AuthorityKind)> = c
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a.authority.as_str(), a.authority_kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a@p", "Old", AuthorityKind::Nonvoting),
            ("b@p", "New", AuthorityKind::Voting),
            ("c@p", "New", AuthorityKind::Voting),
            ("d@p", "Old", AuthorityKind::Nonvoting),
        ]
    );
    // Hex and base64 keys decode alike; several addresses are kept in order.
    let v = &c.voting_authorities["New"];
    assert_eq!(
        v.peers[0].addresses,
        ["127.0.0.1:31000", "example.onion:31000"]
    );
    assert_eq!(
        v.peers[0].identity_public_key,
        b64("UM016mCUXM4jVnlZlFonDg9q0SfP4DFBrtaG0eXQv2I=")
    );
    assert_eq!(
        v.peers[0].link_public_key,
        b64("kMYEr5Ht6fDeHA+IlOHvUD2xP7qj2HLTsI3REKddmyc=")
    );
}

#[test]
fn the_only_voting_authority_is_the_default() {
    let c = Config::parse(&format!(
        "[Proxy]\nDataDir = \"/tmp/x\"\n{VOTING}[[Account]]\nUser = \"a\"\nProvider = \"p\"\n"
    ))
    .unwrap();
    assert_eq!(c.accounts[0].authority, "New");
    assert_eq!(c.accounts[0].authority_kind, AuthorityKind::Voting);
    // With one of each, the account must say which.
    let e = config("[[Account]]\nUser = \"a\"\nProvider = \"p\"\n").unwrap_err();
    assert!(e.contains("Authority: missing"), "{e}");
}

#[test]
fn voting_keys_are_case_insensitive_like_every_other_key() {
    let c = Config::parse(&format!(
        "[Proxy]\nDataDir = \"/tmp/x\"\n{}[[Account]]\nUser = \"a\"\nProvider = \"p\"\nvotingauthority = \"New\"\n",
        VOTING
            .replace("IdentityPublicKey", "identitypublickey")
            .replace("Peers", "peers")
    ))
    .unwrap();
    assert_eq!(c.voting_authorities["New"].peers.len(), 2);
    assert_eq!(c.accounts[0].authority_kind, AuthorityKind::Voting);
}
