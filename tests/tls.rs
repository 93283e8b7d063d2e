//! TLS and authentication, end to end with certificates generated in the test:
//!
//! - endpoints: a private CA (`tls.ca_file`) and a client certificate (`tls.client_cert_file`
//!   and `tls.client_key_file`) against a real HTTPS receiver (tokio-rustls), which requires
//!   the client certificate in the mTLS case; a renewed CA file applied by a reload; wrong
//!   files fail the load with exit 78;
//! - Redis over TLS: a real `redis-server --tls-port` with `rediss://` and `[redis]
//!   tls_ca_file` (and a client certificate when the server demands one);
//! - Redis AUTH: `requirepass` through the registry's `REDIS_AUTH_TOKEN`, an ACL user and
//!   password in the URL, and a wrong password (not ready, and never logged).

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Uri;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio_rustls::rustls;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// A test CA that issues server and client certificates, all written as PEM files.
struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's file.
    ca_file: PathBuf,
}

/// A certificate and its key, as PEM files.
struct Issued {
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = TempDir::new().expect("tempdir for certificates");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca.pem()).expect("write CA file");
        Self { dir, ca, ca_file }
    }

    /// A certificate for `sans` (DNS names or IP addresses) with `usage`, signed by the CA.
    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.ca).expect("sign leaf");
        let cert_file = self.dir.path().join(format!("{name}.crt"));
        let key_file = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Issued {
            cert_file,
            key_file,
        }
    }

    fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, name: &str) -> Issued {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

fn p(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}

// ---------------------------------------------------------------------------------------
// HTTPS receiver
// ---------------------------------------------------------------------------------------

/// One request the HTTPS receiver answered.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    body: Bytes,
}

/// A real HTTPS server on 127.0.0.1 (tokio-rustls + axum) that records requests and counts
/// failed TLS handshakes; with `client_ca`, a client certificate from that CA is required.
struct TlsReceiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    handshake_failures: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// axum's listener over already-handshaken TLS streams, handed over by the accept task.
struct TlsStreams {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsStreams {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl TlsReceiver {
    async fn start(server: &Issued, client_ca: Option<&Path>) -> Self {
        install_provider();
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(&server.cert_file)
            .expect("server cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("server cert PEM");
        let key = PrivateKeyDer::from_pem_file(&server.key_file).expect("server key");
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).expect("client CA") {
                    roots.add(c.expect("client CA PEM")).expect("client CA");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .expect("server TLS config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the HTTPS receiver");
        let addr = tcp.local_addr().expect("receiver address");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let handshake_failures = Arc::new(AtomicUsize::new(0));
        let failures = handshake_failures.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(SECS(10), acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = {
            let seen = seen.clone();
            move |uri: Uri, body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(Seen {
                        path: uri.path().to_string(),
                        body,
                    });
                    "ok"
                }
            }
        };
        let app = axum::Router::new().fallback(record);
        let serve_task = tokio::spawn(async move {
            let _ = axum::serve(TlsStreams { rx, addr }, app).await;
        });
        Self {
            port: addr.port(),
            seen,
            handshake_failures,
            tasks: vec![accept_task, serve_task],
        }
    }

    /// `https://<host>:<port><path>`.
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    fn handshake_failures(&self) -> usize {
        self.handshake_failures.load(Ordering::SeqCst)
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The common `[redis]`…`[log]` tables, with the endpoint retries fast.
fn config_for(redis: &RedisServer, prefix: &str) -> String {
    base_toml(redis, prefix)
}

/// Waits (10 s at most) until `endpoint` failed at least `n` attempts; `what` names the wait.
async fn wait_failed(bridge: &Bridge, endpoint: &str, n: u64, what: &str) {
    wait_until(PATIENCE, what, || async {
        bridge.endpoint_status(endpoint).await["failed"]
            .as_u64()
            .unwrap_or(0)
            >= n
    })
    .await;
}

/// Waits until `endpoint` failed 3 attempts, then asserts that it delivered nothing and
/// dead-lettered nothing (its attempts are retried); returns its `/status`.
async fn failing_and_retried(bridge: &Bridge, endpoint: &str, what: &str) -> serde_json::Value {
    wait_failed(bridge, endpoint, 3, what).await;
    let ep = bridge.endpoint_status(endpoint).await;
    assert_eq!(ep["delivered"], 0, "{ep}");
    assert_eq!(ep["dead_lettered"], 0, "retried, not dead-lettered: {ep}");
    ep
}

// ---------------------------------------------------------------------------------------
// Endpoint TLS
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_a_private_ca_is_delivered_only_when_the_ca_is_configured() {
    let pki = Pki::new("endpoint");
    let server = pki.server("receiver");
    let rx = TlsReceiver::start(&server, None).await;
    let redis = RedisServer::start();
    let config = config_for(&redis, "t-tls-ca")
        + &endpoint_toml(
            "trusted",
            &rx.url("localhost", "/trusted"),
            &format!("tls = {{ ca_file = \"{}\" }}", p(&pki.ca_file)),
        )
        + &endpoint_toml(
            "untrusted",
            &rx.url("127.0.0.1", "/untrusted"),
            "max_retries = 50\nretry_delay = \"100ms\"\nmax_retry_delay = \"200ms\"",
        );
    let bridge = Bridge::start(&config).await;

    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;

    wait_until(PATIENCE, "the trusted endpoint got the message", || async {
        bridge.endpoint_status("trusted").await["delivered"] == 1
    })
    .await;
    let got = rx.seen_at("/trusted");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body, message("model.ready", 1).as_bytes());

    // Without the CA the server's certificate is unknown: every attempt fails in the
    // handshake and is retried; nothing is delivered and nothing is dead-lettered yet.
    let ep = failing_and_retried(
        &bridge,
        "untrusted",
        "the untrusted endpoint failed 3 attempts",
    )
    .await;
    let last_error = ep["last_error"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(
        last_error.contains("certificate") || last_error.contains("issuer"),
        "the error says why: {ep}"
    );
    assert!(rx.seen_at("/untrusted").is_empty());
    assert!(
        rx.handshake_failures() >= 3,
        "the receiver saw the aborted handshakes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_delivers_with_the_client_certificate_and_the_receiver_rejects_a_client_without() {
    let server_pki = Pki::new("server");
    let client_pki = Pki::new("clients");
    let server = server_pki.server("receiver");
    let client = client_pki.client("bridge");
    let rx = TlsReceiver::start(&server, Some(&client_pki.ca_file)).await;
    let redis = RedisServer::start();
    let config = config_for(&redis, "t-mtls")
        + &endpoint_toml(
            "with-cert",
            &rx.url("localhost", "/with-cert"),
            &format!(
                "tls = {{ ca_file = \"{}\", client_cert_file = \"{}\", client_key_file = \"{}\" }}",
                p(&server_pki.ca_file),
                p(&client.cert_file),
                p(&client.key_file)
            ),
        )
        + &endpoint_toml(
            "without-cert",
            &rx.url("localhost", "/without-cert"),
            &format!(
                "tls = {{ ca_file = \"{}\" }}\nmax_retries = 50\nretry_delay = \"100ms\"\nmax_retry_delay = \"200ms\"",
                p(&server_pki.ca_file)
            ),
        );
    let bridge = Bridge::start(&config).await;

    let out = bridge.cli(&["check-config"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&p(&client.key_file)) && !shown.contains("PRIVATE KEY"),
        "check-config names the key file but never prints the key: {shown}"
    );

    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 7))
        .await;
    wait_until(
        PATIENCE,
        "the endpoint with a client certificate got it",
        || async { bridge.endpoint_status("with-cert").await["delivered"] == 1 },
    )
    .await;
    assert_eq!(rx.seen_at("/with-cert").len(), 1);

    failing_and_retried(
        &bridge,
        "without-cert",
        "the endpoint without failed 3 attempts",
    )
    .await;
    assert!(
        rx.seen_at("/without-cert").is_empty(),
        "the receiver never handled a request without a client certificate"
    );
    assert!(
        rx.handshake_failures() >= 3,
        "the receiver refused the handshakes without a client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_ca_file_is_used_after_a_reload_without_a_restart() {
    let old_ca = Pki::new("old");
    let new_ca = Pki::new("new");
    let server = new_ca.server("receiver");
    let rx = TlsReceiver::start(&server, None).await;
    let dir = TempDir::new().unwrap();
    let ca_file = dir.path().join("endpoint-ca.pem");
    std::fs::copy(&old_ca.ca_file, &ca_file).unwrap();
    let redis = RedisServer::start();
    let config = config_for(&redis, "t-tls-reload")
        + &endpoint_toml(
            "hook",
            &rx.url("localhost", "/hook"),
            &format!(
                "tls = {{ ca_file = \"{}\" }}\nmax_retries = 100\nretry_delay = \"100ms\"\nmax_retry_delay = \"300ms\"",
                p(&ca_file)
            ),
        );
    let bridge = Bridge::start(&config).await;
    let before = bridge.cli(&["check-config"], &[]);
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 5))
        .await;
    wait_failed(&bridge, "hook", 2, "attempts fail against the old CA").await;
    assert!(rx.seen().is_empty());

    // The certificate authority is renewed in place; the config file itself is unchanged.
    std::fs::copy(&new_ca.ca_file, &ca_file).unwrap();
    let after = bridge.cli(&["check-config"], &[]);
    let sha = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("files_sha256"))
            .map(String::from)
            .unwrap_or_else(|| panic!("check-config shows files_sha256: {}", show(out)))
    };
    assert_ne!(
        sha(&before),
        sha(&after),
        "the fingerprint follows the file"
    );
    bridge.sighup();
    wait_until(
        PATIENCE,
        "the message is delivered with the new CA",
        || async { bridge.endpoint_status("hook").await["delivered"] == 1 },
    )
    .await;
    assert_eq!(rx.seen_at("/hook").len(), 1);
}

/// Runs `check-config` and `run` with `config` and expects exit 78 naming `key` and `file`.
async fn exits_78_naming(config: &str, key: &str, file: &Path, also: &str) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    for cmd in ["check-config", "run"] {
        let out = run_cli(&["--config", &p(&path), cmd], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {}", show(&out));
        assert!(stderr.contains(key), "{cmd} names `{key}`: {}", show(&out));
        assert!(
            stderr.contains(&p(file)),
            "{cmd} names the file {}: {}",
            file.display(),
            show(&out)
        );
        assert!(stderr.contains(also), "{cmd} says `{also}`: {}", show(&out));
        assert!(
            !stderr.contains("PRIVATE KEY"),
            "{cmd} never prints key material: {}",
            show(&out)
        );
    }
}

#[tokio::test]
async fn a_client_key_that_does_not_match_the_certificate_exits_78_naming_the_key() {
    let pki = Pki::new("mismatch");
    let a = pki.client("a");
    let b = pki.client("b");
    let config = format!(
        "[[endpoints]]\nname = \"x\"\nurl = \"https://example.com/hook\"\nsecrets = [\"s\"]\n\
         tls = {{ client_cert_file = \"{}\", client_key_file = \"{}\" }}\n",
        p(&a.cert_file),
        p(&b.key_file)
    );
    exits_78_naming(
        &config,
        "endpoints[0].tls.client_key_file",
        &b.key_file,
        "does not belong to the certificate",
    )
    .await;
}

#[tokio::test]
async fn unreadable_or_non_pem_tls_files_exit_78_naming_the_key_and_the_file() {
    let pki = Pki::new("bad-files");
    let client = pki.client("c");
    let missing = pki.path("no-such-ca.pem");
    let not_pem = pki.path("not-pem.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let endpoint = |tls: &str| {
        format!(
            "[[endpoints]]\nname = \"x\"\nurl = \"https://example.com/hook\"\nsecrets = [\"s\"]\ntls = {{ {tls} }}\n"
        )
    };

    exits_78_naming(
        &endpoint(&format!("ca_file = \"{}\"", p(&missing))),
        "endpoints[0].tls.ca_file",
        &missing,
        "cannot read",
    )
    .await;
    exits_78_naming(
        &endpoint(&format!("ca_file = \"{}\"", p(&not_pem))),
        "endpoints[0].tls.ca_file",
        &not_pem,
        "not a PEM",
    )
    .await;
    exits_78_naming(
        &endpoint(&format!(
            "client_cert_file = \"{}\", client_key_file = \"{}\"",
            p(&not_pem),
            p(&client.key_file)
        )),
        "endpoints[0].tls.client_cert_file",
        &not_pem,
        "certificate",
    )
    .await;
    exits_78_naming(
        &endpoint(&format!(
            "client_cert_file = \"{}\", client_key_file = \"{}\"",
            p(&client.cert_file),
            p(&not_pem)
        )),
        "endpoints[0].tls.client_key_file",
        &not_pem,
        "not a PEM private key",
    )
    .await;
    // A certificate without its key.
    let out_dir = TempDir::new().unwrap();
    let path = out_dir.path().join("c.toml");
    std::fs::write(
        &path,
        endpoint(&format!("client_cert_file = \"{}\"", p(&client.cert_file))),
    )
    .unwrap();
    let out = run_cli(&["--config", &p(&path), "check-config"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("endpoints[0].tls.client_key_file"),
        "{}",
        show(&out)
    );
    // The Redis files are checked the same way.
    let out = run_cli(
        &["check-config"],
        &[
            ("BRIDGE_REDIS__URL", "rediss://127.0.0.1:6380"),
            ("BRIDGE_REDIS__TLS_CA_FILE", &p(&not_pem)),
            ("WEBHOOK_URL", "https://example.com/hook"),
            ("WEBHOOK_SECRET", "s"),
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis.tls_ca_file") && stderr.contains(&p(&not_pem)),
        "{}",
        show(&out)
    );
    // TLS files with a plain redis:// URL are a mistake, not silently ignored.
    let out = run_cli(
        &["check-config"],
        &[
            ("BRIDGE_REDIS__URL", "redis://:pw-in-url@127.0.0.1:6380"),
            ("BRIDGE_REDIS__TLS_CA_FILE", &p(&pki.ca_file)),
            ("WEBHOOK_URL", "https://example.com/hook"),
            ("WEBHOOK_SECRET", "s"),
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis.url") && stderr.contains("rediss://"),
        "{}",
        show(&out)
    );
    assert!(
        !stderr.contains("pw-in-url"),
        "the password is redacted: {}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Redis over TLS
// ---------------------------------------------------------------------------------------

/// A `redis-server` that listens only on a TLS port, with certificates from `pki`.
struct TlsRedis {
    port: u16,
    _dir: TempDir,
    child: std::process::Child,
}

impl TlsRedis {
    fn start(pki: &Pki, require_client_cert: bool) -> Self {
        let server = pki.server("redis");
        for _ in 0..5 {
            let dir = TempDir::new().unwrap();
            let port = free_port();
            let log = dir.path().join("redis.log");
            let child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--logfile", ""])
                .args(["--tls-cert-file", &p(&server.cert_file)])
                .args(["--tls-key-file", &p(&server.key_file)])
                .args(["--tls-ca-cert-file", &p(&pki.ca_file)])
                .args([
                    "--tls-auth-clients",
                    if require_client_cert { "yes" } else { "no" },
                ])
                .stdin(Stdio::null())
                .stdout(File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install -y redis-server)"
                ),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            let deadline = Instant::now() + SECS(30);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        !text.contains("TLS") || text.contains("Address already in use"),
                        "redis-server cannot serve TLS (is it built with TLS support?):\n{text}"
                    );
                    break; // the port was taken: try another
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Ready to accept connections") {
                    return Self {
                        port,
                        _dir: dir,
                        child,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server with TLS did not start within 10 s:\n{text}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server with TLS could not start on a free port after 5 tries");
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// A client of the test itself, trusting `pki`'s CA (and presenting `client`, if any).
    fn client(&self, pki: &Pki, client: Option<&Issued>) -> redis::Client {
        install_provider();
        redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: client.map(|c| redis::ClientTlsConfig {
                    client_cert: std::fs::read(&c.cert_file).unwrap(),
                    client_key: std::fs::read(&c.key_file).unwrap(),
                }),
                root_cert: Some(std::fs::read(&pki.ca_file).unwrap()),
            },
        )
        .expect("TLS redis client")
    }

    async fn publish(&self, client: &redis::Client, channel: &str, body: &str) -> i64 {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect over TLS");
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(body)
            .query_async(&mut conn)
            .await
            .expect("PUBLISH over TLS")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[redis]` … `[log]` for a Redis at `url`, with extra `[redis]` lines.
fn config_with_redis(url: &str, redis_extra: &str, prefix: &str) -> String {
    common::common_tables(
        &format!("url = \"{url}\"\nkey_prefix = \"{prefix}\"\n{redis_extra}"),
        "info",
    )
}

/// Publishes until the bridge's subscriber got one (PUBLISH returns the receiver count).
async fn publish_until_heard(mut publish: impl AsyncFnMut() -> i64) {
    let deadline = Instant::now() + PATIENCE;
    while publish().await < 1 {
        assert!(Instant::now() < deadline, "no subscriber heard the message");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_reads_and_journals_through_redis_over_tls() {
    let pki = Pki::new("redis");
    let redis = TlsRedis::start(&pki, false);
    let rx = Receiver::start().await;
    let config = config_with_redis(
        &redis.url(),
        &format!("tls_ca_file = \"{}\"", p(&pki.ca_file)),
        "t-rediss",
    ) + &endpoint_toml("hook", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let client = redis.client(&pki, None);
    let body = message("model.ready", 42);
    publish_until_heard(async || redis.publish(&client, DEFAULT_CHANNEL, &body).await).await;
    let got = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(got[0].body, body.as_bytes());

    // The durable queue lives in the TLS Redis too.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("t-rediss:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the bridge wrote its keys over TLS");
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_requiring_client_certificates_accepts_the_configured_one() {
    let pki = Pki::new("redis-mtls");
    let redis = TlsRedis::start(&pki, true);
    let client_cert = pki.client("bridge");
    let rx = Receiver::start().await;
    let config = config_with_redis(
        &redis.url(),
        &format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            p(&pki.ca_file),
            p(&client_cert.cert_file),
            p(&client_cert.key_file)
        ),
        "t-rediss-mtls",
    ) + &endpoint_toml("hook", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let test_cert = pki.client("test");
    let client = redis.client(&pki, Some(&test_cert));
    let body = message("model.ready", 43);
    publish_until_heard(async || redis.publish(&client, DEFAULT_CHANNEL, &body).await).await;
    let got = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(got[0].body, body.as_bytes());
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_without_the_private_ca_is_not_ready() {
    let pki = Pki::new("redis-unknown-ca");
    let redis = TlsRedis::start(&pki, false);
    let rx = Receiver::start().await;
    let config = config_with_redis(&redis.url(), "", "t-rediss-noca")
        + &endpoint_toml("hook", &rx.url("/hook"), "");
    let bridge = Bridge::spawn(&config, &[]);
    wait_until(
        PATIENCE,
        "the log tells of the unknown certificate",
        || async { bridge.full_logs().contains("UnknownIssuer") },
    )
    .await;
    // It stays up and keeps trying instead of exiting, and is not ready.
    assert!(bridge.exited().is_none(), "{}", bridge.logs());
    assert_not_ready(&bridge).await;
}

/// `/readyz` answers 503 (the admin server starts before the bridge first reaches Redis,
/// so it answers while Redis is still unreachable).
async fn assert_not_ready(bridge: &Bridge) {
    wait_until(PATIENCE, "/readyz to answer 503", || async {
        bridge.readyz().await == Some(503)
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Redis AUTH
// ---------------------------------------------------------------------------------------

/// The common tables without a `[redis] url`: the environment supplies it.
fn config_without_redis_url(prefix: &str) -> String {
    common::common_tables(&format!("key_prefix = \"{prefix}\""), "debug")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_through_the_registrys_redis_auth_token_delivers() {
    const PASSWORD: &str = "legacy-AUTH-token-7c1e";
    let redis = RedisServer::start_with_password(PASSWORD);
    let rx = Receiver::start().await;
    let config =
        config_without_redis_url("t-auth-token") + &endpoint_toml("hook", &rx.url("/hook"), "");
    let port = redis.port.to_string();
    let envs = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_AUTH_TOKEN", PASSWORD),
    ];
    let bridge = Bridge::start_with_env(&config, &envs).await;
    let body = message("model.ready", 1);
    redis.publish(DEFAULT_CHANNEL, &body).await;
    let got = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(got[0].body, body.as_bytes());
    bridge.sigterm();
    bridge.wait_exit(PATIENCE).await;
    assert!(
        !bridge.full_logs().contains(PASSWORD),
        "the token is never logged"
    );
}

/// Creates ACL user `user` with `password` and the rights docs/SECURITY.md recommends for
/// the bridge (its key prefix and the registry's keys and channels, no dangerous commands),
/// then turns the default user off.
async fn acl_user_only(redis: &RedisServer, user: &str, password: &str) {
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                user,
                "on",
                &format!(">{password}"),
                "~t-acl:*",
                "~hokusai:*",
                "&hokusai:*",
                "+@all",
                "-@dangerous",
            ][..],
        )
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"][..])
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER default off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_and_password_in_the_url_delivers_and_a_wrong_password_is_not_ready() {
    const PASSWORD: &str = "acl-PASS-31f9d0";
    const WRONG: &str = "wrong-PASS-88aa01";
    let redis = RedisServer::start();
    acl_user_only(&redis, "bridge", PASSWORD).await;
    let rx = Receiver::start().await;
    let good_url = format!("redis://bridge:{PASSWORD}@127.0.0.1:{}", redis.port);
    let config =
        config_with_redis(&good_url, "", "t-acl") + &endpoint_toml("hook", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    let client = redis::Client::open(good_url.as_str()).unwrap();
    let body = message("model.ready", 2);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let heard: i64 = redis::cmd("PUBLISH")
        .arg(DEFAULT_CHANNEL)
        .arg(&body)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(heard, 1, "the bridge subscribed as the ACL user");
    let got = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(got[0].body, body.as_bytes());
    let status = bridge.status_json().await.to_string();
    assert!(!status.contains(PASSWORD), "{status}");
    drop(bridge);

    let wrong_url = format!("redis://bridge:{WRONG}@127.0.0.1:{}", redis.port);
    let config = config_with_redis(&wrong_url, "", "t-acl-wrong")
        + &endpoint_toml("hook", &rx.url("/hook"), "");
    let wrong = Bridge::spawn(&config, &[]);
    wait_until(PATIENCE, "the log tells of the refused login", || async {
        wrong
            .full_logs()
            .to_ascii_lowercase()
            .contains("authentication failed")
    })
    .await;
    assert!(
        wrong.exited().is_none(),
        "it keeps trying: {}",
        wrong.logs()
    );
    assert_not_ready(&wrong).await;
    let readyz = match http()
        .get(format!("{}/readyz", wrong.admin_url()))
        .send()
        .await
    {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let logs = wrong.full_logs();
    for (what, text) in [("the log", &logs), ("/readyz", &readyz)] {
        assert!(!text.contains(WRONG), "{what} shows the password:\n{text}");
    }
}
