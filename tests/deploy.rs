//! Deploying on a city network: HTTPS (self-signed and from files, reloaded on SIGHUP),
//! the HTTP -> HTTPS redirect, clear start-up errors for bad certificates, the shipped
//! systemd unit, logs without terminal codes (and as JSON), and a process that exits
//! when its relay engine panics. Most of these run the real `feiyan` binary, as systemd
//! would.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::served::Served;
use feiyan::config::TlsMode;

/// Accepts any certificate: these tests check *which* certificate is served.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTPS GET of `path` from `addr` naming `host`: the response text and the SHA-256
/// of the certificate the server presented.
async fn https_get(addr: std::net::SocketAddr, host: &str, path: &str) -> (String, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    (
        String::from_utf8_lossy(&response).into_owned(),
        Sha256::digest(leaf.as_ref()).to_vec(),
    )
}

/// One plain HTTP/1.1 request, the raw response.
async fn plain_request(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_https_serves_its_printed_certificate_and_redirects_plain_http() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_path_buf();
    let t = common::start_server_with(|c| {
        c.http.tls = TlsMode::SelfSigned;
        c.http.tls_names = vec!["feiyan.test".into()];
        c.http.redirect_listen = Some("127.0.0.1:0".parse().unwrap());
        c.catalog.state_dir = Some(state_dir);
    })
    .await;
    let addr = t.server.http_addr;
    assert!(t.base.starts_with("https://"), "{}", t.base);
    let prints = t.server.tls.as_ref().expect("TLS is on").fingerprints();
    assert!(state.path().join("tls/self-signed-cert.pem").exists());

    let (response, served) = https_get(addr, "feiyan.test", "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(colon_hex(&served), prints.sha256);

    // Plain HTTP on the HTTPS port: a readable answer, not a TLS alert.
    let response = plain_request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400") && response.contains("https://"),
        "{response}"
    );

    // The redirect keeps host, path and query, and names the HTTPS port.
    let redirect = t.server.redirect_addr.expect("redirect listener");
    let response = plain_request(
        redirect,
        "POST /whip/st-1?title=a HTTP/1.1\r\nHost: feiyan.test:80\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    let location = format!("https://feiyan.test:{}/whip/st-1?title=a", addr.port());
    assert!(
        response
            .to_ascii_lowercase()
            .contains(&format!("location: {}", location.to_ascii_lowercase())),
        "{response}"
    );
    t.server.shutdown().await;
}

/// Starts `feiyan serve` with `extra_http` TOML in the `[http]` table of a loopback
/// configuration in a temporary folder (returned: it holds the catalog too), logging as it
/// would under systemd: neither `RUST_LOG` nor `FEIYAN_LOG_FORMAT` unless `envs` sets them.
fn serve(extra_http: &str, envs: &[(&str, &str)]) -> (Served, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{extra_http}\n\
         [webrtc]\nudp_bind = \"127.0.0.1:0\"\nadvertised_ips = [\"127.0.0.1\"]\n\
         [ingest]\nrtmp_listen = \"127.0.0.1:0\"\n\
         [catalog]\ndatabase_url = \"sqlite://{}/feiyan.db\"\n",
        dir.path().display()
    );
    let path = dir.path().join("feiyan.toml");
    std::fs::write(&path, config).unwrap();
    let mut env = vec![("RUST_LOG", None), ("FEIYAN_LOG_FORMAT", None)];
    env.extend(envs.iter().map(|&(k, v)| (k, Some(v))));
    (Served::start(&path, &env), dir)
}

fn write_certificate(dir: &Path, name: &str) -> Vec<u8> {
    let made = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    Sha256::digest(made.cert.der().as_ref()).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_served_and_replaced_on_sighup() {
    let certs = tempfile::tempdir().unwrap();
    let first = write_certificate(certs.path(), "one.test");
    let (mut served, _dir) = serve(
        &format!(
            "tls = \"files\"\ntls_cert = \"{0}/cert.pem\"\ntls_key = \"{0}/key.pem\"\n",
            certs.path().display()
        ),
        &[],
    );
    let running = served.wait_running();
    let (addr, printed) = (running.addr, running.printed);
    assert!(
        printed
            .iter()
            .any(|l| l.contains("SHA-256 fingerprint") && l.contains(&colon_hex(&first))),
        "{printed:?}"
    );
    let (response, seen) = https_get(addr, "one.test", "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(seen, first);

    let second = write_certificate(certs.path(), "two.test");
    served.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, seen) = https_get(addr, "two.test", "/healthz").await;
        if seen == second {
            break;
        }
        assert_eq!(seen, first, "neither certificate");
        assert!(
            Instant::now() < deadline,
            "not reloaded: {}",
            served.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file at the next reload: the server says so and keeps the last good one.
    std::fs::write(certs.path().join("cert.pem"), "not a certificate").unwrap();
    served.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served.stderr().contains("not reloaded") {
        assert!(Instant::now() < deadline, "{}", served.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served.stderr().contains("cert.pem"), "{}", served.stderr());
    let (_, seen) = https_get(addr, "two.test", "/healthz").await;
    assert_eq!(seen, second);
    served.signal(libc::SIGTERM);
    let status = served.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status}: {}", served.stderr());
}

#[test]
fn bad_certificate_settings_stop_the_start_with_the_file_named() {
    let certs = tempfile::tempdir().unwrap();
    let missing = certs.path().join("missing.pem");
    std::fs::write(certs.path().join("junk.pem"), "hello\n").unwrap();
    let cases = [
        (
            format!(
                "tls = \"files\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                missing.display(),
                missing.display()
            ),
            vec!["missing.pem", "No such file"],
        ),
        (
            format!(
                "tls = \"files\"\ntls_cert = \"{0}/junk.pem\"\ntls_key = \"{0}/junk.pem\"\n",
                certs.path().display()
            ),
            vec!["junk.pem", "not a PEM certificate", "BEGIN CERTIFICATE"],
        ),
        ("tls = \"files\"\n".to_string(), vec!["tls_cert", "tls_key"]),
        (
            "tls = \"on\"\n".to_string(),
            vec!["off", "self-signed", "files"],
        ),
    ];
    for (http, expected) in cases {
        let (mut served, _dir) = serve(&http, &[]);
        let status = served
            .wait_exit(Duration::from_secs(20))
            .expect("feiyan exits at once");
        assert!(!status.success(), "{http}");
        let stderr = served.stderr();
        for needle in expected {
            assert!(stderr.contains(needle), "{http}: no {needle:?} in {stderr}");
        }
    }
}

#[test]
fn logs_in_a_file_have_no_terminal_codes_and_json_lines_parse() {
    for format in ["text", "json"] {
        let (mut served, _dir) = serve("", &[("FEIYAN_LOG_FORMAT", format)]);
        served.wait_running();
        served.signal(libc::SIGTERM);
        let status = served.wait_exit(Duration::from_secs(15)).expect("exits");
        assert!(status.success(), "{status}");
        let mut bytes = Vec::new();
        std::fs::File::open(served.log())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("feiyan listening"), "{format}: {text}");
        assert!(!bytes.contains(&0x1b), "{format}: ESC in {text:?}");
        if format == "json" {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let value: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(value["level"].is_string(), "{line}");
                assert!(value["timestamp"].is_string(), "{line}");
            }
        }
    }
}

#[test]
fn a_relay_engine_panic_ends_the_process_non_zero_within_two_seconds() {
    let (mut served, _dir) = serve("", &[("FEIYAN_FAULT", "engine-panic@300")]);
    served.wait_running();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !served.stderr().contains("panicked") {
        assert!(served.exited().is_none(), "exited before the panic");
        assert!(Instant::now() < deadline, "no panic: {}", served.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    let panicked = Instant::now();
    let status = served
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("still running 2 s after the panic: {}", served.stderr()));
    assert!(!status.success(), "exit status {status}");
    assert!(
        served.stderr().contains("relay engine panicked"),
        "{}",
        served.stderr()
    );
    eprintln!("exited {:?} after the panic", panicked.elapsed());
}

#[test]
fn the_shipped_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/feiyan.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/feiyan serve"));
    let unit = unit.replace("/usr/local/bin/feiyan", env!("CARGO_BIN_EXE_feiyan"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feiyan.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/deps.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Warnings about this unit (unknown keys, bad values) fail it too.
    assert!(
        !stderr.contains("feiyan.service"),
        "systemd-analyze verify: {stderr}"
    );
}
