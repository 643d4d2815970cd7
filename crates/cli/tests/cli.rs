//! The binary's user contract: help text that lists the services, version, and a clear error
//! for a bad config file; plus one end-to-end run of `upper serve` and `upper ask`.

use appnet_netkit::harness::TempDir;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn appnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_appnet"))
}

#[test]
fn help_lists_services_and_examples() {
    let out = appnet().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("upper"), "{text}");
    assert!(text.contains("Examples:"), "{text}");
    let out = appnet().args(["upper", "serve", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in ["--listen", "--udp", "--max-line", "--idle-timeout", "--max-connections"] {
        assert!(text.contains(flag), "missing {flag} in:\n{text}");
    }
}

#[test]
fn version_is_printed() {
    let out = appnet().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("appnet "));
}

#[test]
fn a_bad_config_file_is_reported_with_its_name() {
    let dir = TempDir::new("cli-test");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[upper]\nlisten = 12\n").unwrap();
    let out = appnet().args(["--config", file.to_str().unwrap(), "upper", "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[upper]"), "{err}");
}

/// Kills the child when the test ends, whatever happens.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_and_ask_end_to_end_with_a_config_file() {
    let dir = TempDir::new("cli-e2e");
    let file = dir.join("appnet.toml");
    std::fs::write(&file, "[upper]\nlisten = \"127.0.0.1:0\"\nmax_line = 10\n").unwrap();
    let mut server = Killed(
        appnet()
            .args(["--config", file.to_str().unwrap(), "upper", "serve"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The server prints its bound address once it listens: that line is the readiness signal.
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.split_whitespace().find(|w| w.starts_with("127.0.0.1:")).expect(&first).to_string();
    let out = appnet().args(["upper", "ask", "hi there", "--server", &addr]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HI THERE\n");
    // The config's max_line applies: 11 bytes is too long.
    let out = appnet().args(["upper", "ask", "eleven byte", "--server", &addr]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line longer than 10 bytes"));
    // SIGTERM is a graceful stop: the server exits 0 on its own, promptly.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut status = None;
    for _ in 0..500 {
        status = server.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(status.expect("exited within 5 s").success());
    drop(server);
}
