//! Link sessions between our own initiator and responder over real TCP
//! sockets (127.0.0.1, port 0) and in-memory pipes, including every failure
//! path: each must end in an error, never a panic or a hang.

use std::sync::Arc;
use std::time::Duration;

use katzenpost::wire::framing::{FrameError, FrameSender, MAX_COMMAND_LEN, NOOP};
use katzenpost::wire::handshake::{
    ed25519_secret_to_x25519, x25519_public, AcceptAny, AuthError, ExpectPeer, HandshakeError,
    Initiator, LocalIdentity, PeerCredentials, Responder, MSG1_LEN, MSG3_LEN,
};
use katzenpost::wire::session::{LinkError, Role, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PROVIDER_IDENTITY: [u8; 32] = [0x11; 32];
const PROVIDER_LINK_PRIVATE: [u8; 32] = [0x22; 32];
const CLIENT_LINK_PRIVATE: [u8; 32] = [0x33; 32];
const SHORT: Duration = Duration::from_millis(300);

fn client_config(expect: ExpectPeer) -> SessionConfig {
    let id = LocalIdentity::new(CLIENT_LINK_PRIVATE, b"alice".to_vec()).unwrap();
    let mut c = SessionConfig::new(id, Arc::new(expect));
    c.handshake_timeout = Duration::from_secs(20);
    c.io_timeout = Duration::from_secs(20);
    c
}

fn provider_config() -> SessionConfig {
    let id = LocalIdentity::new(PROVIDER_LINK_PRIVATE, PROVIDER_IDENTITY.to_vec()).unwrap();
    let client_link = x25519_public(&CLIENT_LINK_PRIVATE);
    // The provider's policy: "alice" with her registered link key.
    let users = move |p: &PeerCredentials| {
        if p.additional_data != b"alice" {
            return Err(AuthError::UnknownPeer);
        }
        if p.static_key != client_link {
            return Err(AuthError::WrongLinkKey);
        }
        Ok(())
    };
    let mut c = SessionConfig::new(id, Arc::new(users));
    c.handshake_timeout = Duration::from_secs(20);
    c.io_timeout = Duration::from_secs(20);
    c
}

fn right_provider() -> ExpectPeer {
    ExpectPeer::new(PROVIDER_IDENTITY, x25519_public(&PROVIDER_LINK_PRIVATE))
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (c.unwrap(), s.unwrap().0)
}

async fn connect(
    client: SessionConfig,
    server: SessionConfig,
) -> (
    Result<Session<TcpStream>, LinkError>,
    Result<Session<TcpStream>, LinkError>,
) {
    let (c, s) = tcp_pair().await;
    let server_task = tokio::spawn(async move { Session::accept(s, &server).await });
    let client = Session::initiate(c, &client).await;
    (client, server_task.await.unwrap())
}

fn command(id: u8, body: &[u8]) -> Vec<u8> {
    let mut c = vec![id, 0];
    c.extend_from_slice(&(body.len() as u32).to_be_bytes());
    c.extend_from_slice(body);
    c
}

#[tokio::test]
async fn tcp_session_carries_commands_both_ways() {
    let (c, s) = connect(client_config(right_provider()), provider_config()).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.info().role, Role::Initiator);
    assert_eq!(s.info().role, Role::Responder);
    assert_eq!(c.peer().additional_data, PROVIDER_IDENTITY);
    assert_eq!(s.peer().additional_data, b"alice");
    assert_eq!(s.peer().static_key, x25519_public(&CLIENT_LINK_PRIVATE));
    assert_eq!(c.info().handshake_hash, s.info().handshake_hash);
    let skew = c.clock_skew().expect("initiator knows the skew");
    assert!(skew.abs() <= 2, "same clock, skew {skew}");
    assert_eq!(s.clock_skew(), None);

    // GetConsensus / Consensus.
    let get = command(0x12, &27708u64.to_be_bytes());
    c.send(&get).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), get);
    let mut body = vec![0u8];
    body.extend_from_slice(b"TANSTAAFL");
    let cons = command(0x13, &body);
    s.send(&cons).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), cons);

    // A full SendPacket (51,676-byte Sphinx packet).
    let packet: Vec<u8> = (0..51_676u32).map(|i| (i * 7) as u8).collect();
    let send_packet = command(2, &packet);
    for _ in 0..3 {
        c.send(&send_packet).await.unwrap();
        assert_eq!(s.recv().await.unwrap(), send_packet);
    }

    // The largest command, exactly, in both directions; one byte over is
    // refused without harming the session.
    let doc: Vec<u8> = (0..MAX_COMMAND_LEN - 7).map(|i| (i % 251) as u8).collect();
    let biggest = command(0x13, &[&[0u8][..], &doc].concat());
    assert_eq!(biggest.len(), MAX_COMMAND_LEN);
    s.send(&biggest).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), biggest);
    c.send(&biggest).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), biggest);
    let too_big = vec![0u8; MAX_COMMAND_LEN + 1];
    match s.send(&too_big).await {
        Err(LinkError::Frame(FrameError::CommandTooLarge(n))) => assert_eq!(n, MAX_COMMAND_LEN + 1),
        other => panic!("expected CommandTooLarge, got {other:?}"),
    }
    s.send(&NOOP).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), NOOP);

    // Clean Disconnect.
    c.close().await.unwrap();
    let e = s.recv().await.unwrap_err();
    assert!(matches!(e, LinkError::PeerDisconnected), "{e:?}");
    assert!(e.is_clean_close());
    assert!(matches!(s.recv().await, Err(LinkError::Unusable)));
}

#[tokio::test]
async fn end_of_stream_between_frames_is_closed() {
    let (c, s) = connect(client_config(right_provider()), provider_config()).await;
    let (c, mut s) = (c.unwrap(), s.unwrap());
    drop(c);
    assert!(matches!(s.recv().await, Err(LinkError::Closed)));
}

#[tokio::test]
async fn split_halves_work_concurrently() {
    let (c, s) = connect(client_config(right_provider()), provider_config()).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    let (mut cr, mut cw, _) = c.into_split();
    let (mut sr, mut sw, _) = s.into_split();
    let n = 50u32;
    let echo = tokio::spawn(async move {
        for _ in 0..n {
            let cmd = sr.recv().await.unwrap();
            sw.send(&cmd).await.unwrap();
        }
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(cr.recv().await.unwrap());
        }
        got
    });
    let mut sent = Vec::new();
    for i in 0..n {
        let cmd = command(2, &vec![i as u8; 51_676]);
        cw.send(&cmd).await.unwrap();
        sent.push(cmd);
    }
    echo.await.unwrap();
    assert_eq!(reader.await.unwrap(), sent);
}

#[tokio::test]
async fn client_rejects_wrong_provider_keys_naming_the_check() {
    let cases = [
        (
            ExpectPeer::new([0x99; 32], x25519_public(&PROVIDER_LINK_PRIVATE)),
            AuthError::WrongIdentityKey,
        ),
        (
            ExpectPeer::new(PROVIDER_IDENTITY, [0x99; 32]),
            AuthError::WrongLinkKey,
        ),
        (
            right_provider().with_pin(Some([0x98; 32])),
            AuthError::PinMismatch,
        ),
    ];
    for (expect, want) in cases {
        let (c, s) = connect(client_config(expect), provider_config()).await;
        match c {
            Err(LinkError::Handshake(HandshakeError::Auth(got))) => assert_eq!(got, want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
        // The provider sees the connection end during the handshake.
        let e = s.unwrap_err();
        assert!(
            matches!(e, LinkError::Truncated(_) | LinkError::Io(_)),
            "{e:?}"
        );
    }
    // The pin equal to the identity key is accepted.
    let (c, _) = connect(
        client_config(right_provider().with_pin(Some(PROVIDER_IDENTITY))),
        provider_config(),
    )
    .await;
    assert!(c.is_ok());
}

#[tokio::test]
async fn provider_rejects_unknown_user_and_wrong_link_key() {
    // Wrong user name.
    let id = LocalIdentity::new(CLIENT_LINK_PRIVATE, b"mallory".to_vec()).unwrap();
    let mut cfg = SessionConfig::new(id, Arc::new(right_provider()));
    cfg.handshake_timeout = Duration::from_secs(20);
    let (c, s) = connect(cfg, provider_config()).await;
    assert!(
        matches!(
            s,
            Err(LinkError::Handshake(HandshakeError::Auth(
                AuthError::UnknownPeer
            )))
        ),
        "{s:?}"
    );
    // The client sees the provider close after the handshake: not accepted
    // (what an account not registered at its provider sees).
    assert!(
        matches!(c, Err(LinkError::NotAccepted | LinkError::Io(_))),
        "client must not see an established session: {c:?}"
    );

    // Right name, wrong link key.
    let id = LocalIdentity::new([0x44; 32], b"alice".to_vec()).unwrap();
    let cfg = SessionConfig::new(id, Arc::new(right_provider()));
    let (c, s) = connect(cfg, provider_config()).await;
    assert!(
        matches!(
            s,
            Err(LinkError::Handshake(HandshakeError::Auth(
                AuthError::WrongLinkKey
            )))
        ),
        "{s:?}"
    );
    let e = c.unwrap_err();
    assert!(
        matches!(e, LinkError::NotAccepted | LinkError::Io(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("did not accept our link key") || matches!(e, LinkError::Io(_)));
}

#[tokio::test]
async fn client_to_authority_with_converted_ed25519_key() {
    let seed = [0x5a; 32];
    let ed_public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let authority_id =
        LocalIdentity::new(*ed25519_secret_to_x25519(&seed), ed_public.to_vec()).unwrap();
    let authority = SessionConfig::new(authority_id, Arc::new(AcceptAny));
    let client_id = LocalIdentity::ephemeral(&mut rand_core::OsRng, Vec::new()).unwrap();
    let client = SessionConfig::new(
        client_id,
        Arc::new(ExpectPeer::authority(&ed_public).unwrap()),
    );
    let (c, s) = connect(client, authority).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    assert!(s.peer().additional_data.is_empty());
    let get = command(0x12, &1u64.to_be_bytes());
    c.send(&get).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), get);
}

/// A responder driven by hand over a raw stream, so tests can misbehave after
/// a correct handshake.
async fn raw_responder(mut s: TcpStream) -> (TcpStream, FrameSender) {
    let id = LocalIdentity::new(PROVIDER_LINK_PRIVATE, PROVIDER_IDENTITY.to_vec()).unwrap();
    let mut msg1 = vec![0u8; MSG1_LEN];
    s.read_exact(&mut msg1).await.unwrap();
    let (resp, msg2) = Responder::read_message1(&id, &msg1, 0, &mut rand_core::OsRng).unwrap();
    s.write_all(&msg2).await.unwrap();
    let mut msg3 = vec![0u8; MSG3_LEN];
    s.read_exact(&mut msg3).await.unwrap();
    let est = resp.read_message3(&msg3, &AcceptAny).unwrap();
    (s, FrameSender::new(est.send))
}

async fn client_with_raw_responder<F, Fut>(
    cfg: SessionConfig,
    behave: F,
) -> (
    Result<Session<TcpStream>, LinkError>,
    tokio::task::JoinHandle<()>,
)
where
    F: FnOnce(TcpStream, FrameSender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (c, s) = tcp_pair().await;
    let task = tokio::spawn(async move {
        let (s, tx) = raw_responder(s).await;
        behave(s, tx).await;
    });
    (Session::initiate(c, &cfg).await, task)
}

#[tokio::test]
async fn first_command_must_be_noop() {
    let (c, task) = client_with_raw_responder(
        client_config(right_provider()),
        |mut s, mut tx| async move {
            s.write_all(&tx.seal(&command(0x13, &[0])).unwrap())
                .await
                .unwrap();
            let _ = s.read(&mut [0u8; 1]).await;
        },
    )
    .await;
    assert!(matches!(c, Err(LinkError::ExpectedNoOp)), "{c:?}");
    task.await.unwrap();
}

#[tokio::test]
async fn clock_skew_reflects_responder_time() {
    // The raw responder claims Unix time 0: the skew is our whole clock.
    let (c, task) = client_with_raw_responder(
        client_config(right_provider()),
        |mut s, mut tx| async move {
            s.write_all(&tx.seal(&NOOP).unwrap()).await.unwrap();
            let _ = s.read(&mut [0u8; 1]).await;
        },
    )
    .await;
    let c = c.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((c.clock_skew().unwrap() - now).abs() <= 2);
    drop(c);
    task.await.unwrap();
}

#[tokio::test]
async fn bad_mac_after_handshake_makes_session_unusable() {
    let (c, task) = client_with_raw_responder(
        client_config(right_provider()),
        |mut s, mut tx| async move {
            s.write_all(&tx.seal(&NOOP).unwrap()).await.unwrap();
            let mut f = tx.seal(&command(0x13, &[0])).unwrap();
            let last = f.len() - 1;
            f[last] ^= 0x80;
            s.write_all(&f).await.unwrap();
            let _ = s.read(&mut [0u8; 1]).await;
        },
    )
    .await;
    let mut c = c.unwrap();
    let e = c.recv().await.unwrap_err();
    assert!(matches!(e, LinkError::Frame(FrameError::Body(_))), "{e:?}");
    assert!(matches!(c.recv().await, Err(LinkError::Unusable)));
    drop(c);
    task.await.unwrap();
}

#[tokio::test]
async fn truncated_frame_times_out_then_reports_truncation() {
    let mut cfg = client_config(right_provider());
    cfg.io_timeout = SHORT;
    let (go_on_tx, go_on_rx) = tokio::sync::oneshot::channel::<()>();
    let (c, task) = client_with_raw_responder(cfg.clone(), |mut s, mut tx| async move {
        s.write_all(&tx.seal(&NOOP).unwrap()).await.unwrap();
        let f = tx.seal(&command(2, &[7; 1000])).unwrap();
        s.write_all(&f[..500]).await.unwrap();
        let _ = go_on_rx.await;
    })
    .await;
    let mut c = c.unwrap();
    let e = c.recv().await.unwrap_err();
    assert!(matches!(e, LinkError::Timeout(_)), "{e:?}");
    assert!(matches!(c.recv().await, Err(LinkError::Unusable)));
    drop(go_on_tx);
    task.await.unwrap();

    // End of stream mid-frame.
    let (c, task) = client_with_raw_responder(cfg, |mut s, mut tx| async move {
        s.write_all(&tx.seal(&NOOP).unwrap()).await.unwrap();
        let f = tx.seal(&command(2, &[7; 1000])).unwrap();
        s.write_all(&f[..30]).await.unwrap();
    })
    .await;
    let mut c = c.unwrap();
    let e = c.recv().await.unwrap_err();
    assert!(matches!(e, LinkError::Truncated("frame")), "{e:?}");
    task.await.unwrap();
}

#[tokio::test]
async fn idle_timeout_is_not_fatal() {
    let mut cfg = client_config(right_provider());
    cfg.idle_timeout = Some(SHORT);
    let (c, s) = connect(cfg, provider_config()).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    assert!(matches!(c.recv().await, Err(LinkError::Timeout(_))));
    s.send(&NOOP).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), NOOP);
}

#[tokio::test]
async fn wrong_prologue_is_rejected_at_once() {
    let (mut c, s) = tcp_pair().await;
    let server = tokio::spawn(async move { Session::accept(s, &provider_config()).await });
    c.write_all(&[0x01]).await.unwrap();
    let r = server.await.unwrap();
    assert!(
        matches!(
            r,
            Err(LinkError::Handshake(HandshakeError::WrongPrologue(1)))
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn truncated_handshake_messages() {
    // Responder: half of message 1, then end of stream.
    let (mut c, s) = tcp_pair().await;
    let server = tokio::spawn(async move { Session::accept(s, &provider_config()).await });
    let id = LocalIdentity::new(CLIENT_LINK_PRIVATE, b"alice".to_vec()).unwrap();
    let (_, msg1) = Initiator::start(&id, &mut rand_core::OsRng);
    c.write_all(&msg1[..900]).await.unwrap();
    c.shutdown().await.unwrap();
    let r = server.await.unwrap();
    assert!(matches!(r, Err(LinkError::Truncated(_))), "{r:?}");

    // Initiator: the peer answers with a few bytes and closes.
    let (c, mut s) = tcp_pair().await;
    let client =
        tokio::spawn(async move { Session::initiate(c, &client_config(right_provider())).await });
    let mut msg1 = vec![0u8; MSG1_LEN];
    s.read_exact(&mut msg1).await.unwrap();
    s.write_all(&[1, 2, 3]).await.unwrap();
    drop(s);
    let r = client.await.unwrap();
    assert!(matches!(r, Err(LinkError::Truncated(_))), "{r:?}");
}

#[tokio::test]
async fn silent_peers_time_out() {
    // A responder that accepts the TCP connection and says nothing.
    let mut cfg = client_config(right_provider());
    cfg.handshake_timeout = SHORT;
    let (c, _s) = tcp_pair().await;
    let r = Session::initiate(c, &cfg).await;
    assert!(matches!(r, Err(LinkError::Timeout(_))), "{r:?}");

    // An initiator that connects and says nothing.
    let mut cfg = provider_config();
    cfg.handshake_timeout = SHORT;
    let (_c, s) = tcp_pair().await;
    let r = Session::accept(s, &cfg).await;
    assert!(matches!(r, Err(LinkError::Timeout(_))), "{r:?}");

    // In-memory duplex works the same.
    let (a, _b) = tokio::io::duplex(1 << 16);
    let mut cfg = client_config(right_provider());
    cfg.handshake_timeout = SHORT;
    let r = Session::initiate(a, &cfg).await;
    assert!(matches!(r, Err(LinkError::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn in_memory_duplex_session() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move { Session::accept(b, &provider_config()).await });
    let mut c = Session::initiate(a, &client_config(right_provider()))
        .await
        .unwrap();
    let mut s = server.await.unwrap().unwrap();
    let cmd = command(2, &[9; 51_676]);
    c.send(&cmd).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), cmd);
    s.close().await.unwrap();
    assert!(matches!(c.recv().await, Err(LinkError::PeerDisconnected)));
}
