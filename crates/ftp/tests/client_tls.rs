//! The client's explicit FTPS (RFC 4217) against appnet's server with a lab-CA certificate:
//! AUTH TLS on the control connection, PROT P, and TLS on every data connection, passive and
//! active; a client that does not trust the CA fails the handshake instead of going on in clear.

use appnet_ftp::client::{ClientConfig, DataMode, FtpClient, ListKind, TraceEvent};
use appnet_ftp::{FtpConfig, FtpServer};
use appnet_netkit::harness::{self, TempDir};
use appnet_netkit::tls_client::{Trust, client_config};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn ftps_encrypts_the_control_and_every_data_connection() {
    let dir = TempDir::new("ftp-client-tls");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("file.bin"), &body).unwrap();
    let ca = dir.join("ca");
    let server_config = FtpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        root,
        anonymous: true,
        tls: true,
        ca_dir: Some(ca.clone()),
        ..FtpConfig::default()
    };
    let server = harness::start(FtpServer::bind(server_config).await.unwrap());

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let trust = Trust { system: false, lab_ca_dir: Some(ca.clone()), extra: Vec::new() };
    let config = ClientConfig {
        timeout: Duration::from_secs(10),
        trace: Some(Arc::new(move |e: &TraceEvent| sink.lock().unwrap().push(e.clone()))),
        tls: Some(client_config(&trust, &[]).unwrap()),
        ..ClientConfig::default()
    };
    let mut client = FtpClient::connect(server.addr(), config.clone()).await.unwrap();
    client.login_anonymous().await.unwrap();
    client.binary().await.unwrap();
    let listing = client.list(ListKind::Names, None).await.unwrap();
    assert!(String::from_utf8_lossy(&listing).contains("file.bin"));
    let mut got = Vec::new();
    client.retr("file.bin", 0, &mut got).await.unwrap();
    assert_eq!(got, body);
    client.set_mode(DataMode::Active);
    let mut got = Vec::new();
    client.retr("file.bin", 100_000, &mut got).await.unwrap();
    assert_eq!(got, &body[100_000..]);
    client.quit().await.unwrap();

    let events = events.lock().unwrap().clone();
    let sent: Vec<&str> = events
        .iter()
        .filter_map(|e| if let TraceEvent::Sent(s) = e { Some(s.as_str()) } else { None })
        .collect();
    assert_eq!(&sent[..4], ["AUTH TLS", "USER anonymous", "PASS ****", "PBSZ 0"], "{sent:?}");
    assert!(sent.contains(&"PROT P"));
    assert_eq!(events.iter().filter(|e| matches!(e, TraceEvent::TlsStarted { .. })).count(), 1);
    assert_eq!(events.iter().filter(|e| matches!(e, TraceEvent::DataTls { .. })).count(), 3, "{events:?}");

    // A client that trusts another CA stops at the handshake.
    let other = dir.join("other-ca");
    appnet_netkit::tls::LabCa::open(&other).unwrap();
    let trust = Trust { system: false, lab_ca_dir: Some(other), extra: Vec::new() };
    let strict = ClientConfig { tls: Some(client_config(&trust, &[]).unwrap()), trace: None, ..config };
    let err = FtpClient::connect(server.addr(), strict).await.err().expect("untrusted certificate");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    server.stop().await.unwrap();
}
