//! Maildir++ storage: UIDs that persist, two sessions seeing each other's changes, flags by
//! rename, append, copy and expunge, and a Dovecot tree served as it is.

use appnet_mail::maildir::{self, flags, folder::Folder};
use appnet_netkit::harness::TempDir;

#[test]
fn uids_persist_and_sessions_see_each_others_changes() {
    let dir = TempDir::new("maildir-uids");
    let root = dir.path();
    for i in 0..3 {
        maildir::deliver(
            root,
            "hamburger.edu",
            "bob",
            format!("Subject: {i}\r\n\r\nbody {i}\r\n").as_bytes(),
        )
        .unwrap();
    }
    let inbox = maildir::user_dir(root, "hamburger.edu", "bob");
    let mut a = Folder::open(&inbox).unwrap();
    let (snap, recent) = a.scan(true).unwrap();
    assert_eq!(snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(recent, vec![1, 2, 3]);
    assert!(snap.messages.iter().all(|m| !m.in_new), "taken from new/ into cur/");
    let validity = snap.validity;
    assert_eq!(snap.next_uid, 4);

    // A second session (a new process: a fresh Folder) sees the same UIDs.
    let mut b = Folder::open(&inbox).unwrap();
    let (snap_b, recent_b) = b.scan(true).unwrap();
    assert_eq!(snap_b.messages, snap.messages);
    assert!(recent_b.is_empty());
    assert_eq!(snap_b.validity, validity);

    // b flags and expunges; a sees it on its next scan.
    let first = snap_b.messages[0].clone();
    let now = b.set_info(&first, &flags::apply(&first.info, b"S", flags::Mode::Add)).unwrap().unwrap();
    assert_eq!(now.info, "S");
    b.expunge(&snap_b.messages[1]).unwrap();
    maildir::deliver(root, "hamburger.edu", "bob", b"Subject: 4\n\nx\n").unwrap();
    let (snap, recent) = a.scan(true).unwrap();
    assert_eq!(
        snap.messages.iter().map(|m| (m.uid, m.info.as_str())).collect::<Vec<_>>(),
        vec![(1, "S"), (3, ""), (4, "")]
    );
    assert_eq!(recent, vec![4]);
    // a reads a message b renamed under it.
    let data = a.read(&first, 1 << 20).unwrap().unwrap();
    assert_eq!(data, b"Subject: 0\n\nbody 0\n");
    assert_eq!(a.size(&first).unwrap(), 22);

    // Append and copy assign the next UIDs at once; expunge of a vanished file is fine.
    let uid = a.append(b"Subject: appended\n\nhi\n", "DS", None).unwrap();
    assert_eq!(uid, 5);
    let sent = inbox.join(".Sent");
    maildir::create(&sent).unwrap();
    let mut sent = Folder::open(&sent).unwrap();
    let copied = sent.copy_from(&a, &first, "S").unwrap().unwrap();
    assert_eq!(copied, 1);
    let (s, _) = sent.scan(false).unwrap();
    assert_eq!(s.messages.len(), 1);
    a.expunge(&snap_b.messages[1]).unwrap();

    // After a "restart", the UIDs and UIDVALIDITY are the same.
    let mut c = Folder::open(&inbox).unwrap();
    let (snap_c, _) = c.scan(false).unwrap();
    assert_eq!(snap_c.validity, validity);
    assert_eq!(snap_c.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3, 4, 5]);
    assert_eq!(snap_c.next_uid, 6);
}

#[test]
fn a_dovecot_tree_keeps_its_uids() {
    let dir = TempDir::new("maildir-dovecot");
    let inbox = dir.join("mail/crepes.fr/alice");
    maildir::create(&inbox).unwrap();
    std::fs::write(inbox.join("cur/1700000000.M1P1.host,S=10,W=12:2,S"), "a: b\n\nbody\n").unwrap();
    std::fs::write(inbox.join("cur/1700000001.M2P1.host:2,FS"), "c: d\n\nbody\n").unwrap();
    std::fs::write(
        inbox.join("dovecot-uidlist"),
        "3 V1234 N43 Gabc\n41 :1700000000.M1P1.host,S=10,W=12\n42 W12 :1700000001.M2P1.host\n",
    )
    .unwrap();
    std::fs::write(inbox.join("dovecot-keywords"), "0 Junk\n").unwrap();
    std::fs::write(inbox.join("new/1700000002.M3P1.host"), "e: f\n\nnew\n").unwrap();
    let mut f = Folder::open(&inbox).unwrap();
    let (snap, recent) = f.scan(true).unwrap();
    assert_eq!(snap.validity, 1234);
    assert_eq!(snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![41, 42, 43]);
    assert_eq!(recent, vec![43]);
    assert_eq!(snap.keywords.0, vec!["Junk".to_string()]);
    assert_eq!(f.size(&snap.messages[0]).unwrap(), 12);
    assert_eq!(f.size(&snap.messages[1]).unwrap(), 14, "no W=: computed from the file");
    let text = std::fs::read_to_string(inbox.join("dovecot-uidlist")).unwrap();
    assert!(text.starts_with("3 V1234 N44\n"), "{text}");
}

#[test]
fn junk_uidlists_and_names_do_not_break_scans() {
    let dir = TempDir::new("maildir-junk");
    let inbox = dir.join("box");
    maildir::create(&inbox).unwrap();
    std::fs::write(inbox.join("dovecot-uidlist"), "garbage\n\u{0}\n").unwrap();
    std::fs::write(inbox.join("cur/x:2,"), "a\n").unwrap();
    std::fs::write(inbox.join("cur/.hidden"), "a\n").unwrap();
    std::fs::create_dir(inbox.join("cur/adir")).unwrap();
    let mut f = Folder::open(&inbox).unwrap();
    let (snap, _) = f.scan(true).unwrap();
    assert_eq!(snap.messages.len(), 1);
    assert!(snap.validity > 1);
    assert!(Folder::open(&dir.join("nope")).is_err());
}

#[test]
fn header_reads_stop_at_the_empty_line() {
    let dir = TempDir::new("maildir-header");
    let inbox = dir.join("box");
    maildir::create(&inbox).unwrap();
    let body = "x".repeat(20_000);
    for (name, text) in [
        ("a:2,", format!("A: 1\nB: 2\n\n{body}")),
        ("b:2,", format!("A: 1\r\n\r\n{body}")),
        ("c:2,", "A: no body".to_string()),
    ] {
        std::fs::write(inbox.join("cur").join(name), text).unwrap();
    }
    let mut f = Folder::open(&inbox).unwrap();
    let (snap, _) = f.scan(false).unwrap();
    let heads: Vec<Vec<u8>> =
        snap.messages.iter().map(|e| f.read_header(e).unwrap().unwrap().to_vec()).collect();
    assert_eq!(heads, vec![b"A: 1\nB: 2\n\n".to_vec(), b"A: 1\r\n\r\n".to_vec(), b"A: no body".to_vec()]);
}
