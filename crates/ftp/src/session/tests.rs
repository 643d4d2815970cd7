use super::*;
use crate::wire::parse_command;
use std::time::Duration;

fn policy() -> Policy {
    Policy {
        anonymous: true,
        anonymous_root: PathBuf::from("/srv/ftp"),
        write: false,
        max_login_failures: 3,
        login_failure_delay: Duration::from_secs(1),
        tls: false,
        require_tls: false,
    }
}

fn run(s: &mut Session, line: &str) -> Vec<Action> {
    match parse_command(line.as_bytes()) {
        Ok(c) => s.handle(c, Instant::now()),
        Err(e) => s.parse_error(&e),
    }
}

fn code(actions: &[Action]) -> u16 {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Reply(r) => Some(r.code),
            _ => None,
        })
        .expect("a reply")
}

fn peer() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn anon() -> Session {
    let mut s = Session::new(policy(), peer());
    assert_eq!(code(&run(&mut s, "USER anonymous")), 331);
    let a = run(&mut s, "PASS me@example.org");
    assert_eq!(code(&a), 230);
    assert!(matches!(&a[0], Action::SetRoot(Some(u)) if u.home == Path::new("/srv/ftp") && !u.write));
    s
}

use std::path::Path;

#[test]
fn commands_before_login_are_refused_except_the_harmless_ones() {
    let mut s = Session::new(policy(), peer());
    assert_eq!(code(&run(&mut s, "RETR x")), 530);
    assert_eq!(code(&run(&mut s, "PASV")), 530);
    assert_eq!(code(&run(&mut s, "SYST")), 215);
    assert_eq!(code(&run(&mut s, "FEAT")), 211);
    assert_eq!(code(&run(&mut s, "PASS x")), 503);
    assert_eq!(code(&run(&mut s, "FROB")), 500);
}

#[test]
fn anonymous_is_read_only_and_can_be_disabled() {
    let mut s = anon();
    assert_eq!(code(&run(&mut s, "STOR x")), 550);
    assert_eq!(code(&run(&mut s, "DELE x")), 550);
    assert_eq!(code(&run(&mut s, "MKD d")), 550);
    let mut off = Session::new(Policy { anonymous: false, ..policy() }, peer());
    assert_eq!(code(&run(&mut off, "USER ftp")), 530);
}

#[test]
fn failed_logins_are_delayed_then_the_connection_closes() {
    let mut s = Session::new(policy(), peer());
    for round in 1..=3 {
        assert_eq!(code(&run(&mut s, "USER alice")), 331);
        let a = run(&mut s, "PASS wrong");
        assert_eq!(a, vec![Action::Verify { user: "alice".into(), password: "wrong".into() }]);
        let out = s.login_result("alice".into(), None, Instant::now());
        assert_eq!(out[0], Action::Delay(Duration::from_secs(1)));
        if round < 3 {
            assert_eq!(code(&out), 530);
        } else {
            assert_eq!(code(&out), 421);
            assert_eq!(out.last(), Some(&Action::Close));
        }
    }
}

#[test]
fn port_to_another_host_or_a_privileged_port_is_refused() {
    let mut s = anon();
    assert_eq!(code(&run(&mut s, "PORT 10,0,0,1,117,48")), 500);
    assert_eq!(code(&run(&mut s, "EPRT |1|192.0.2.1|30000|")), 500);
    assert_eq!(code(&run(&mut s, "PORT 127,0,0,1,0,25")), 500);
    assert_eq!(code(&run(&mut s, "RETR f")), 425, "a refused PORT sets nothing up");
    assert_eq!(code(&run(&mut s, "PORT 127,0,0,1,117,48")), 200);
    let a = run(&mut s, "RETR f");
    assert!(
        matches!(&a[0], Action::Transfer { target: DataTarget::Active(addr), .. } if addr.port() == 30000)
    );
}

#[test]
fn rest_applies_to_the_next_transfer_only() {
    let mut s = anon();
    assert_eq!(code(&run(&mut s, "REST 100")), 350);
    assert_eq!(run(&mut s, "EPSV"), vec![Action::OpenPassive { extended: true }]);
    let a = run(&mut s, "RETR /pub/../f");
    assert_eq!(
        a,
        vec![Action::Transfer {
            transfer: Transfer::Retr { path: vec!["f".into()], offset: 100 },
            target: DataTarget::Passive,
            ascii: true
        }]
    );
    run(&mut s, "TYPE I");
    run(&mut s, "PASV");
    let a = run(&mut s, "RETR f");
    assert!(matches!(
        &a[0],
        Action::Transfer { transfer: Transfer::Retr { offset: 0, .. }, ascii: false, .. }
    ));
}

#[test]
fn cwd_follows_the_file_system_answer_and_rename_needs_rnfr() {
    let mut s = Session::new(Policy { write: true, ..policy() }, peer());
    run(&mut s, "USER ftp");
    run(&mut s, "PASS x");
    let a = run(&mut s, "CWD pub");
    assert_eq!(a, vec![Action::Fs(FsOp::Cwd(vec!["pub".into()]))]);
    let r = s.fs_done(FsOp::Cwd(vec!["pub".into()]), Ok(FsOutcome::Done), 0);
    assert_eq!(code(&r), 250);
    let pwd = run(&mut s, "PWD");
    assert_eq!(pwd, vec![reply(257, "\"/pub\" is the current directory.")]);
    assert_eq!(code(&s.fs_done(FsOp::Cwd(vec!["nope".into()]), Err(FsError::NotFound), 0)), 550);
    assert_eq!(s.cwd(), ["pub".to_string()]);
    assert_eq!(code(&run(&mut s, "RNTO b")), 503);
    let a = run(&mut s, "RNFR a");
    let op = match &a[0] {
        Action::Fs(op) => op.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(code(&s.fs_done(op, Ok(FsOutcome::Done), 0)), 350);
    let a = run(&mut s, "RNTO /b");
    assert_eq!(a, vec![Action::Fs(FsOp::Rename(vec!["pub".into(), "a".into()], vec!["b".into()]))]);
    assert_eq!(code(&run(&mut s, "RMD /")), 550, "the root cannot be removed");
}

#[test]
fn tls_commands_follow_rfc_4217_order() {
    let mut s = Session::new(Policy { tls: true, ..policy() }, peer());
    assert_eq!(code(&run(&mut s, "PROT P")), 503);
    assert_eq!(run(&mut s, "AUTH TLS"), vec![reply(234, "Proceed with TLS negotiation."), Action::StartTls]);
    assert_eq!(code(&run(&mut s, "PROT P")), 503);
    assert_eq!(code(&run(&mut s, "PBSZ 0")), 200);
    assert_eq!(code(&run(&mut s, "PROT P")), 200);
    assert!(s.prot_private());
    let mut plain = Session::new(policy(), peer());
    assert_eq!(code(&run(&mut plain, "AUTH TLS")), 502);
}

#[test]
fn require_tls_refuses_clear_logins_and_clear_data() {
    let mut s = Session::new(Policy { tls: true, require_tls: true, ..policy() }, peer());
    assert_eq!(code(&run(&mut s, "USER anonymous")), 530);
    run(&mut s, "AUTH TLS");
    assert_eq!(code(&run(&mut s, "USER anonymous")), 331);
    assert_eq!(code(&run(&mut s, "PASS x")), 230);
    run(&mut s, "EPSV");
    assert_eq!(
        run(&mut s, "NLST"),
        vec![Action::DropPassive, reply(521, "Data connections must be encrypted: send PBSZ 0 and PROT P.")]
    );
    run(&mut s, "PBSZ 0");
    run(&mut s, "PROT P");
    run(&mut s, "EPSV");
    assert!(matches!(&run(&mut s, "NLST")[0], Action::Transfer { .. }));
}
